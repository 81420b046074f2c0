// SPDX-License-Identifier: Apache-2.0
/**
 * gRPC through serveH2 (proxy/grpc/h2.ts) between a real @grpc/grpc-js client and server on
 * loopback, with decisions from real policies (test/peers/fixtures/shop-grpc-policy.yaml):
 * every shop.Catalog method but DeleteItem is allowed for frontends (DESIGN §2).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FIXTURES, fixture, startH2Proxy, type H2Proxy } from './fixtures/h2-harness.ts';

const MiB = 1024 * 1024;
const CHANNEL_OPTIONS = { 'grpc.max_receive_message_length': 16 * MiB, 'grpc.max_send_message_length': 16 * MiB };

interface Item {
  id: string;
  name: string;
  blob: Buffer;
}

const definition = protoLoader.loadSync(path.join(FIXTURES, 'shop.proto'), { keepCase: true, longs: String, defaults: true });
const shop = (grpc.loadPackageDefinition(definition) as any).shop;

/** What the server saw, for assertions that a denied call never reached it. */
const seen: string[] = [];
const cancelled: string[] = [];

function startServer(): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(shop.Catalog.service, {
    GetItem(call: grpc.ServerUnaryCall<any, Item>, cb: grpc.sendUnaryData<Item>) {
      seen.push(`GetItem ${call.request.id}`);
      if (call.request.id === 'missing') {
        const md = new grpc.Metadata();
        md.set('x-detail', 'no such item');
        cb({ code: grpc.status.NOT_FOUND, details: 'item missing not found', metadata: md });
        return;
      }
      const initial = new grpc.Metadata();
      initial.set('x-server', 'catalog');
      call.sendMetadata(initial);
      const echo = call.metadata.get('x-client')[0];
      cb(null, { id: call.request.id, name: `item-${call.request.id}${echo ? `-${String(echo)}` : ''}`, blob: call.request.blob });
    },
    DeleteItem(call: grpc.ServerUnaryCall<any, Item>, cb: grpc.sendUnaryData<Item>) {
      seen.push(`DeleteItem ${call.request.id}`);
      cb(null, { id: call.request.id, name: 'deleted', blob: Buffer.alloc(0) });
    },
    ListItems(call: grpc.ServerWritableStream<any, Item>) {
      seen.push(`ListItems ${call.request.count}`);
      for (let i = 0; i < call.request.count; i++) call.write({ id: String(i), name: `item-${i}`, blob: Buffer.alloc(0) });
      call.end();
    },
    Chat(call: grpc.ServerDuplexStream<any, any>) {
      seen.push('Chat');
      call.on('data', (m: { text: string }) => call.write({ text: `echo ${m.text}` }));
      call.on('end', () => call.end());
    },
    Upload(call: grpc.ServerReadableStream<any, Item>, cb: grpc.sendUnaryData<Item>) {
      seen.push('Upload');
      const ids: string[] = [];
      let bytes = 0;
      call.on('data', (m: { id: string; blob: Buffer }) => {
        ids.push(m.id);
        bytes += m.blob.length;
      });
      call.on('end', () => cb(null, { id: ids.join(','), name: `bytes=${bytes}`, blob: Buffer.alloc(0) }));
    },
    Hang(call: grpc.ServerUnaryCall<any, Item>) {
      seen.push(`Hang ${call.request.id}`);
      call.on('cancelled', () => cancelled.push(call.request.id));
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve({ server, port }))),
  );
}

function client(proxy: H2Proxy): any {
  return new shop.Catalog(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

function unary(c: any, method: string, req: object, md = new grpc.Metadata()): Promise<{ res?: Item; err?: grpc.ServiceError; headers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = c[method](req, md, { deadline: Date.now() + 10000 }, (err: grpc.ServiceError | null, res: Item) => resolve(err ? { err, headers } : { res, headers }));
    call.on('metadata', (m: grpc.Metadata) => (headers = m));
  });
}

describe('gRPC through serveH2', () => {
  let upstream: { server: grpc.Server; port: number };
  const proxies: H2Proxy[] = [];
  const clients: any[] = [];
  const setup = async (opts: { globalAudit?: boolean; upstreamPort?: number } = {}) => {
    const proxy = await startH2Proxy({ upstreamPort: opts.upstreamPort ?? upstream.port, policy: fixture('shop-grpc-policy.yaml'), globalAudit: opts.globalAudit });
    proxies.push(proxy);
    const c = client(proxy);
    clients.push(c);
    return { proxy, c };
  };

  before(async () => {
    upstream = await startServer();
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(proxies.map((p) => p.close()));
    upstream.server.forceShutdown();
  });

  test('an allowed unary call succeeds byte-exact, with metadata both ways, and is reported', async () => {
    const { proxy, c } = await setup();
    const blob = randomBytes(4096);
    const md = new grpc.Metadata();
    md.set('x-client', 'abc');
    const { res, err, headers } = await unary(c, 'GetItem', { id: '42', blob }, md);
    assert.equal(err, undefined);
    assert.equal(res!.id, '42');
    assert.equal(res!.name, 'item-42-abc');
    assert.ok(Buffer.from(res!.blob).equals(blob));
    assert.deepEqual(headers!.get('x-server'), ['catalog']);
    const [r] = await proxy.waitReports(1);
    assert.equal(r!.decision.verdict, 'allowed');
    assert.deepEqual(r!.decision.ingress?.by, ['CiliumNetworkPolicy/prod/backend-grpc']);
    assert.deepEqual(r!.info, { type: 'http', method: 'POST', url: '/shop.Catalog/GetItem', protocol: 'HTTP/2', code: 200, host: `127.0.0.1:${proxy.port}`, grpcStatus: 0 });
    assert.ok(r!.latencyMs >= 0);
  });

  test('a denied method gets PERMISSION_DENIED; an allowed call on the same channel still works', async () => {
    const { proxy, c } = await setup();
    const before = seen.length;
    const denied = await unary(c, 'DeleteItem', { id: 'd1' });
    assert.equal(denied.err?.code, grpc.status.PERMISSION_DENIED);
    assert.equal(denied.err?.details, 'Access denied');
    const ok = await unary(c, 'GetItem', { id: 'after-deny' });
    assert.equal(ok.err, undefined);
    assert.equal(ok.res!.id, 'after-deny');
    assert.deepEqual(seen.slice(before), ['GetItem after-deny'], 'the denied call never reached the server');
    assert.equal(proxy.accepted, 1, 'one connection (same channel)');
    const reports = await proxy.waitReports(2);
    const d = reports.find((r) => r.info.type === 'http' && r.info.url === '/shop.Catalog/DeleteItem')!;
    assert.equal(d.decision.verdict, 'denied');
    assert.equal(d.decision.forward, false);
    assert.deepEqual(d.info, { type: 'http', method: 'POST', url: '/shop.Catalog/DeleteItem', protocol: 'HTTP/2', code: 200, host: `127.0.0.1:${proxy.port}`, grpcStatus: 7 });
  });

  test('an error status and its trailer metadata are forwarded', async () => {
    const { proxy, c } = await setup();
    const { err } = await unary(c, 'GetItem', { id: 'missing' });
    assert.equal(err?.code, grpc.status.NOT_FOUND);
    assert.equal(err?.details, 'item missing not found');
    assert.deepEqual(err?.metadata.get('x-detail'), ['no such item']);
    const [r] = await proxy.waitReports(1);
    assert.equal(r!.decision.verdict, 'allowed');
    assert.equal(r!.info.type === 'http' && r!.info.grpcStatus, grpc.status.NOT_FOUND);
  });

  test('server streaming delivers every message in order', async () => {
    const { proxy, c } = await setup();
    const got: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = c.ListItems({ count: 200 });
      call.on('data', (m: Item) => got.push(m.name));
      call.on('error', reject);
      call.on('end', resolve);
    });
    assert.equal(got.length, 200);
    assert.equal(got[0], 'item-0');
    assert.equal(got[199], 'item-199');
    const [r] = await proxy.waitReports(1);
    assert.equal(r!.info.type === 'http' && r!.info.grpcStatus, 0);
  });

  test('bidi streaming interleaves both directions', async () => {
    const { c } = await setup();
    const call = c.Chat();
    const got: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: { text: string }) => {
        got.push(m.text);
        // Ping-pong: the next message goes only after the echo came back.
        if (got.length < 20) call.write({ text: String(got.length) });
        else call.end();
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    call.write({ text: '0' });
    await done;
    assert.deepEqual(
      got,
      Array.from({ length: 20 }, (_, i) => `echo ${i}`),
    );
  });

  test('client streaming sends every message', async () => {
    const { proxy, c } = await setup();
    const res = await new Promise<Item>((resolve, reject) => {
      const call = c.Upload((err: grpc.ServiceError | null, r: Item) => (err ? reject(err) : resolve(r)));
      for (let i = 0; i < 50; i++) call.write({ id: String(i), blob: Buffer.alloc(1000, i) });
      call.end();
    });
    assert.equal(res.id, Array.from({ length: 50 }, (_, i) => i).join(','));
    assert.equal(res.name, 'bytes=50000');
    const [r] = await proxy.waitReports(1);
    assert.equal(r!.info.type === 'http' && r!.info.url, '/shop.Catalog/Upload');
  });

  test('a peer without any rule is denied every call, streaming ones too', async () => {
    const proxy = await startH2Proxy({ upstreamPort: upstream.port, policy: fixture('shop-grpc-policy.yaml'), clientIp: '10.200.1.50' });
    proxies.push(proxy);
    const c = client(proxy);
    clients.push(c);
    const before = seen.length;
    assert.equal((await unary(c, 'GetItem', { id: 'crawl' })).err?.code, grpc.status.PERMISSION_DENIED);
    const chatErr = await new Promise<grpc.ServiceError>((resolve) => {
      const call = c.Chat();
      call.on('data', () => {});
      call.on('error', resolve);
      call.write({ text: 'hi' });
    });
    assert.equal(chatErr.code, grpc.status.PERMISSION_DENIED);
    const upErr = await new Promise<grpc.ServiceError>((resolve) => {
      const call = c.Upload((err: grpc.ServiceError | null) => resolve(err!));
      for (let i = 0; i < 20; i++) call.write({ id: String(i), blob: Buffer.alloc(100000) });
      call.end();
    });
    assert.equal(upErr.code, grpc.status.PERMISSION_DENIED);
    assert.equal(seen.length, before, 'nothing reached the server');
    const reports = await proxy.waitReports(3);
    assert.ok(reports.every((r) => r.decision.verdict === 'denied' && r.info.type === 'http' && r.info.grpcStatus === 7));
    assert.match(reports[0]!.decision.ingress!.detail, /no rule of prod\/backend allows identity/);
  });

  test('a 4 MiB message streams through both ways', async () => {
    const { c } = await setup();
    const blob = randomBytes(4 * MiB);
    const { res, err } = await unary(c, 'GetItem', { id: 'big', blob });
    assert.equal(err, undefined);
    assert.equal(res!.blob.length, blob.length);
    assert.ok(Buffer.from(res!.blob).equals(blob));
  });

  test('audit mode forwards a denied call and reports it as audit', async () => {
    const { proxy, c } = await setup({ globalAudit: true });
    const before = seen.length;
    const { res, err } = await unary(c, 'DeleteItem', { id: 'audited' });
    assert.equal(err, undefined);
    assert.equal(res!.name, 'deleted');
    assert.deepEqual(seen.slice(before), ['DeleteItem audited']);
    const [r] = await proxy.waitReports(1);
    assert.equal(r!.decision.verdict, 'audit');
    assert.equal(r!.decision.forward, true);
    assert.equal(r!.decision.ingress?.allowed, false);
    assert.equal(r!.info.type === 'http' && r!.info.grpcStatus, 0);
  });

  test('a call cancelled by the client resets upstream and leaves other calls alone', async () => {
    const { proxy, c } = await setup();
    const hangErr: Array<grpc.ServiceError | null> = [];
    const hang = c.Hang({ id: 'h1' }, (err: grpc.ServiceError | null) => hangErr.push(err));
    // Wait for the call to reach the server, then cancel it.
    for (let i = 0; i < 200 && !seen.includes('Hang h1'); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(seen.includes('Hang h1'));
    const during = unary(c, 'GetItem', { id: 'during-hang' });
    hang.cancel();
    for (let i = 0; i < 200 && !cancelled.includes('h1'); i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(cancelled, ['h1'], 'the server saw the cancellation');
    assert.equal(hangErr[0]?.code, grpc.status.CANCELLED);
    const ok = await during;
    assert.equal(ok.err, undefined);
    const after = await unary(c, 'GetItem', { id: 'after-cancel' });
    assert.equal(after.err, undefined);
    assert.equal(proxy.accepted, 1);
    const reports = await proxy.waitReports(3);
    const h = reports.find((r) => r.info.type === 'http' && r.info.url === '/shop.Catalog/Hang')!;
    assert.equal(h.info.type === 'http' && h.info.code, 0, 'no response was sent');
  });

  test('an unreachable server answers UNAVAILABLE', async () => {
    // A port with no listener: bind, note the port, close.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const { proxy, c } = await setup({ upstreamPort: deadPort });
    const { err } = await unary(c, 'GetItem', { id: 'x' });
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
    const [r] = await proxy.waitReports(1);
    assert.equal(r!.info.type === 'http' && r!.info.grpcStatus, grpc.status.UNAVAILABLE);
  });
});
