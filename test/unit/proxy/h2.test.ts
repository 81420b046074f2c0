// SPDX-License-Identifier: Apache-2.0
/**
 * Plain HTTP/2 (h2c) through serveH2 (proxy/grpc/h2.ts): node:http2 and undici clients, a
 * node:http2 server, decisions from test/peers/fixtures/h2-http-policy.yaml. Covers denial
 * (403, connection kept), flow control with large bodies, trailers both ways, resets both
 * ways, upstream GOAWAY, limits and garbage after the preface.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http2, { constants as H2 } from 'node:http2';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client } from 'undici';
import { fixture, H2_PREFACE, startH2Proxy, type H2Proxy, type H2ProxyOptions } from '../../peers/fixtures/h2-harness.ts';

const MiB = 1024 * 1024;

interface Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers?: http2.IncomingHttpHeaders;
  rstCode?: number;
}

/** Deterministic bytes for large bodies. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
  return b;
}

function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer, trailers?: http2.OutgoingHttpHeaders): Promise<Response> {
  return new Promise((resolve) => {
    const req = session.request(headers, { endStream: !body && !trailers, waitForTrailers: !!trailers });
    if (trailers) req.on('wantTrailers', () => req.sendTrailers(trailers));
    const out: Response = { status: 0, headers: {}, body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      out.headers = h;
      out.status = Number(h[':status']);
    });
    req.on('trailers', (t) => (out.trailers = t));
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('error', () => {});
    req.on('close', () => {
      out.body = Buffer.concat(chunks);
      out.rstCode = req.rstCode;
      resolve(out);
    });
    if (body) req.end(body);
    else if (trailers) req.end();
  });
}

describe('HTTP/2 through serveH2', () => {
  let upstream: http2.Http2Server;
  let upstreamPort: number;
  const upstreamResets: number[] = [];
  const upstreamTrailers: http2.IncomingHttpHeaders[] = [];
  const proxies: H2Proxy[] = [];
  const sessions: http2.ClientHttp2Session[] = [];

  const setup = async (opts: Partial<H2ProxyOptions> = {}) => {
    const proxy = await startH2Proxy({ upstreamPort, policy: fixture('h2-http-policy.yaml'), ...opts });
    proxies.push(proxy);
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
    session.on('error', () => {});
    sessions.push(session);
    return { proxy, session };
  };

  before(async () => {
    upstream = http2.createServer();
    upstream.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      const path = String(headers[':path']);
      if (path.startsWith('/public')) {
        stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-upstream': 'yes' });
        stream.end(`public:${path}`);
      } else if (path === '/upload') {
        const hash = createHash('sha256');
        let bytes = 0;
        stream.on('data', (d: Buffer) => {
          hash.update(d);
          bytes += d.length;
        });
        stream.on('trailers', (t) => upstreamTrailers.push(t));
        stream.on('end', () => {
          // Answer with as much as was sent, and a trailer.
          stream.respond({ ':status': 200 }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sha256': hash.digest('hex') }));
          stream.end(pattern(bytes));
        });
      } else if (path === '/slow') {
        stream.respond({ ':status': 200 });
        stream.write('a');
        setTimeout(() => stream.end('b'), 400);
      } else if (path === '/reset') {
        // waitForTrailers: otherwise node's close() ends the stream (END_STREAM) before its RST_STREAM
        stream.respond({ ':status': 200 }, { waitForTrailers: true });
        stream.write('partial');
        setTimeout(() => stream.close(H2.NGHTTP2_ENHANCE_YOUR_CALM), 20);
      } else if (path === '/hang') {
        stream.on('close', () => upstreamResets.push(stream.rstCode ?? -1));
      } else if (path === '/goaway') {
        stream.respond({ ':status': 200 });
        stream.end('bye');
        stream.session?.close();
      } else if (path === '/headers') {
        stream.respond({ ':status': 200 });
        stream.end(String(headers['x-allowed']));
      } else {
        stream.respond({ ':status': 404 });
        stream.end();
      }
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    upstreamPort = (upstream.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const s of sessions) s.destroy();
    await Promise.all(proxies.map((p) => p.close()));
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  test('allowed 200 and denied 403 on one connection, each reported', async () => {
    const { proxy, session } = await setup();
    const denied = await request(session, { ':path': '/private' });
    assert.equal(denied.status, 403);
    assert.equal(denied.body.toString(), 'Access denied\r\n');
    const ok = await request(session, { ':path': '/public/a?x=1' });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-upstream'], 'yes');
    assert.equal(ok.body.toString(), 'public:/public/a?x=1');
    assert.equal(proxy.accepted, 1);
    const reports = await proxy.waitReports(2);
    assert.deepEqual(
      reports.map((r) => [r.decision.verdict, r.info]),
      [
        ['denied', { type: 'http', method: 'GET', url: '/private', protocol: 'HTTP/2', code: 403, host: `127.0.0.1:${proxy.port}` }],
        ['allowed', { type: 'http', method: 'GET', url: '/public/a?x=1', protocol: 'HTTP/2', code: 200, host: `127.0.0.1:${proxy.port}` }],
      ],
    );
  });

  test('header rules see the request headers', async () => {
    const { session } = await setup();
    assert.equal((await request(session, { ':path': '/headers', 'x-allowed': 'yes' })).body.toString(), 'yes');
    assert.equal((await request(session, { ':path': '/headers', 'x-allowed': 'no' })).status, 403);
  });

  test('undici (h2c) gets 200 allowed and 403 denied', async () => {
    const proxy = await startH2Proxy({ upstreamPort, policy: fixture('h2-http-policy.yaml') });
    proxies.push(proxy);
    const client = new Client(`http://127.0.0.1:${proxy.port}`, { allowH2: true, useH2c: true } as Client.Options);
    try {
      const ok = await client.request({ path: '/public/u', method: 'GET' });
      assert.equal(ok.statusCode, 200);
      assert.equal(await ok.body.text(), 'public:/public/u');
      const denied = await client.request({ path: '/admin', method: 'GET' });
      assert.equal(denied.statusCode, 403);
      assert.equal(await denied.body.text(), 'Access denied\r\n');
      const [r] = await proxy.waitReports(2);
      assert.equal(r!.info.type === 'http' && r!.info.protocol, 'HTTP/2');
    } finally {
      await client.close();
    }
  });

  test('large bodies both ways with trailers both ways (flow control)', async () => {
    const { proxy, session } = await setup();
    const body = pattern(8 * MiB);
    const sum = createHash('sha256').update(body).digest('hex');
    const res = await request(session, { ':method': 'POST', ':path': '/upload' }, body, { 'x-client-sum': sum });
    assert.equal(res.status, 200);
    assert.equal(res.body.length, body.length);
    assert.ok(res.body.equals(body));
    assert.equal(res.trailers?.['x-sha256'], sum, 'response trailers forwarded; the upstream saw the exact bytes');
    assert.equal(upstreamTrailers.at(-1)?.['x-client-sum'], sum, 'request trailers forwarded');
    const [r] = await proxy.waitReports(1);
    assert.equal(r!.info.type === 'http' && r!.info.code, 200);
  });

  test('a stream reset by the upstream resets the client stream with its code', async () => {
    const { session } = await setup();
    const res = await request(session, { ':path': '/reset' });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'partial');
    assert.equal(res.rstCode, H2.NGHTTP2_ENHANCE_YOUR_CALM);
    assert.equal((await request(session, { ':path': '/public' })).status, 200, 'the connection survives');
  });

  test('a stream reset by the client resets the upstream stream; other streams go on', async () => {
    const { session } = await setup();
    const slow = request(session, { ':path': '/slow' });
    const req = session.request({ ':path': '/hang' });
    req.on('error', () => {});
    await new Promise((r) => setTimeout(r, 50));
    req.close(H2.NGHTTP2_CANCEL);
    for (let i = 0; i < 100 && upstreamResets.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(upstreamResets, [H2.NGHTTP2_CANCEL]);
    const s = await slow;
    assert.equal(s.status, 200);
    assert.equal(s.body.toString(), 'ab');
    assert.equal(s.rstCode, H2.NGHTTP2_NO_ERROR);
  });

  test('an upstream GOAWAY does not end the client connection: the next stream opens a new upstream session', async () => {
    const { proxy, session } = await setup();
    assert.equal((await request(session, { ':path': '/goaway' })).body.toString(), 'bye');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await request(session, { ':path': '/public/again' })).status, 200);
    assert.equal(proxy.accepted, 1);
    assert.equal(proxy.upstreamConnections, 2);
  });

  test('limits: max concurrent streams and header list size are advertised and enforced', async () => {
    const { session } = await setup({ limits: { maxConcurrentStreams: 3, maxHeaderBytes: 2048 } });
    await new Promise<void>((r) => (session.remoteSettings.maxConcurrentStreams === 3 ? r() : session.once('remoteSettings', () => r())));
    assert.equal(session.remoteSettings.maxConcurrentStreams, 3);
    assert.equal(session.remoteSettings.maxHeaderListSize, 2048);
    const big = await request(session, { ':path': '/public/big', 'x-big': 'x'.repeat(4096) });
    assert.notEqual(big.status, 200, 'an oversized header block is not forwarded');
    assert.equal((await request(session, { ':path': '/public/small' })).status, 200, 'the connection survives');
  });

  test('an idle connection is closed; one with an open stream is not', async () => {
    const { session } = await setup({ limits: { idleTimeoutMs: 150 } });
    const slow = await request(session, { ':path': '/slow' });
    assert.equal(slow.body.toString(), 'ab', 'a 400 ms response outlives a 150 ms idle timeout');
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('not closed')), 2000);
      session.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
  });

  test('garbage after the preface closes the connection without a throw; the proxy keeps serving', async () => {
    const { proxy } = await setup();
    const sock = net.connect({ host: '127.0.0.1', port: proxy.port });
    sock.on('error', () => {});
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.write(Buffer.concat([H2_PREFACE, Buffer.from('this is not an HTTP/2 frame at all\r\n'.repeat(4))]));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('not closed')), 3000);
      sock.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
    // nghttp2 answered with GOAWAY (type 7) before closing.
    const got = Buffer.concat(chunks);
    assert.ok(got.length > 0);
    const next = http2.connect(`http://127.0.0.1:${proxy.port}`);
    sessions.push(next);
    next.on('error', () => {});
    assert.equal((await request(next, { ':path': '/public/next' })).status, 200);
  });

  test('300 concurrent streams, mixed allowed and denied, over an upstream that allows 4 at a time', async () => {
    const narrow = http2.createServer({ settings: { maxConcurrentStreams: 4 } });
    narrow.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      setTimeout(() => {
        if (stream.closed) return;
        stream.respond({ ':status': 200 });
        stream.end(String(headers[':path']));
      }, 2);
    });
    await new Promise<void>((r) => narrow.listen(0, '127.0.0.1', r));
    try {
      const { proxy, session } = await setup({ upstreamPort: (narrow.address() as net.AddressInfo).port, limits: { maxConcurrentStreams: 50 } });
      // (node's client queues streams beyond the peer's limit only once it knows the limit)
      await new Promise((r) => session.once('remoteSettings', r));
      const paths = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? `/private/${i}` : `/public/${i}`));
      const results = await Promise.all(paths.map((p) => request(session, { ':path': p })));
      results.forEach((r, i) => {
        if (i % 3 === 0) assert.equal(r.status, 403, paths[i]);
        else assert.equal(r.body.toString(), paths[i]);
      });
      const reports = await proxy.waitReports(300);
      assert.equal(reports.length, 300);
      assert.equal(reports.filter((r) => r.decision.verdict === 'denied').length, 100);
      assert.equal(proxy.accepted, 1);
      assert.equal(proxy.upstreamConnections, 1);
      // Closing the client connection closes the proxy's upstream session too.
      session.close();
    } finally {
      await new Promise<void>((r) => narrow.close(() => r()));
    }
  });

  test('h2load: every request answered (allowed 2xx, denied 4xx)', { skip: !existsSync('/usr/bin/h2load') && 'h2load not installed' }, async () => {
    const { proxy } = await setup();
    const out = await new Promise<string>((resolve, reject) =>
      execFile('h2load', ['-n', '2000', '-c', '4', '-m', '16', `http://127.0.0.1:${proxy.port}/public/load`, `http://127.0.0.1:${proxy.port}/private`], (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      ),
    );
    assert.match(out, /requests: 2000 total, 2000 started, 2000 done, 1000 succeeded, 1000 failed, 0 errored, 0 timeout/);
    assert.match(out, /status codes: 1000 2xx, 0 3xx, 1000 4xx, 0 5xx/);
  });

  test('an upstream that does not speak HTTP/2 fails the stream with 503 after headerTimeoutMs', async () => {
    const h1 = net.createServer((sock) => sock.on('error', () => {}).on('data', () => {}));
    const held = new Set<net.Socket>();
    h1.on('connection', (sock) => held.add(sock));
    await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
    try {
      const { proxy, session } = await setup({ upstreamPort: (h1.address() as net.AddressInfo).port, limits: { headerTimeoutMs: 200 } });
      const res = await request(session, { ':path': '/public/x' });
      assert.equal(res.status, 503);
      const [r] = await proxy.waitReports(1);
      assert.equal(r!.info.type === 'http' && r!.info.code, 503);
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => h1.close(() => r()));
    }
  });
});
