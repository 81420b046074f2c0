// SPDX-License-Identifier: Apache-2.0
// proxy/core/flow-reporter.ts: the JSON written per request (serialised when its batch is sent,
// with the repeating parts reused) is exactly JSON.stringify of the record l7FlowRecord builds;
// batches reach an agent on its UNIX socket in order, once, also after a failed POST and after
// the agent moved to another socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentFlowReporter, flowRecordJson, l7FlowRecord, type EndpointLookup } from '../../../proxy/core/flow-reporter.ts';
import type { ConnContext, L7FlowInfo, RequestDecision } from '../../../proxy/core/types.ts';

const eps: EndpointLookup = {
  endpointOf: (ip) =>
    ip === '10.0.0.1' ? { ref: 'prod/client', ingressEnforced: false, egressEnforced: true } : ip === '10.0.0.2' ? { ref: 'prod/server', ingressEnforced: true, egressEnforced: false } : undefined,
};
const POLICY = 'CiliumNetworkPolicy/prod/p';
const allowed = (by: string) => ({ allowed: true, by: [by], origins: [by], detail: 'matches rule {"path":"/a\\"b"}' });
const denied = { allowed: false, by: [POLICY], origins: [POLICY], detail: 'HTTP GET /x matches no HTTP rule' };

const decisions: RequestDecision[] = [
  { forward: true, verdict: 'allowed', ingress: allowed(POLICY) },
  { forward: true, verdict: 'allowed', egress: allowed(POLICY), ingress: allowed(POLICY) },
  { forward: false, verdict: 'denied', ingress: denied },
  { forward: true, verdict: 'audit', egress: denied },
  { forward: false, verdict: 'denied', rejected: 'dot-segment in path' },
  { forward: true, verdict: 'allowed' },
];
const ctxs: ConnContext[] = [
  { client: { ip: '10.0.0.1', port: 40000, identity: 1234 }, server: { ip: '10.0.0.2', port: 80, identity: 5678 }, proxyPort: 15001, proto: 6 },
  { client: { ip: '192.0.2.9', port: 1, identity: 2 }, server: { ip: '10.0.0.2', port: 8080, identity: 5678 }, proxyPort: 15001, proto: 6 },
  { client: { ip: '10.0.0.1', port: 2, identity: 1234 }, server: { ip: '198.51.100.1', port: 53, identity: 2 }, proxyPort: 15053, proto: 17 },
];
const infos: L7FlowInfo[] = [
  { type: 'http', method: 'GET', url: '/a?q="x"\\', protocol: 'HTTP/1.1', code: 200, host: 'server:80' },
  { type: 'http', method: 'POST', url: '/shop.Catalog/GetItem', protocol: 'HTTP/2', code: 200, grpcStatus: 7 },
  { type: 'dns', query: 'example.com.', qtypes: ['A'], rcode: 'NOERROR', ips: ['192.0.2.1'], ttl: 30 },
];

test('flowRecordJson is JSON.stringify(l7FlowRecord(…)), also when its parts are reused', () => {
  const now = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
  for (let round = 0; round < 2; round++) {
    for (const ctx of ctxs) {
      for (const d of decisions) {
        for (const info of infos) {
          const src = eps.endpointOf(ctx.client.ip);
          const dst = eps.endpointOf(ctx.server.ip);
          assert.equal(flowRecordJson(ctx, src, dst, info, d, 1.23456, now), JSON.stringify(l7FlowRecord(eps, ctx, info, d, 1.23456, now)));
        }
      }
    }
  }
});

test('a reused part follows a change of endpoints (new policy snapshot)', () => {
  const ctx = ctxs[0]!;
  const d = decisions[0]!;
  const info = infos[0]!;
  const before = flowRecordJson(ctx, eps.endpointOf(ctx.client.ip), eps.endpointOf(ctx.server.ip), info, d, 1, 0);
  const after = flowRecordJson(ctx, undefined, { ref: 'prod/other', ingressEnforced: true, egressEnforced: true }, info, d, 1, 0);
  assert.equal((JSON.parse(before) as { destination: { name: string } }).destination.name, 'server');
  const a = JSON.parse(after) as { source: { name: string | null }; destination: { name: string }; egress: { reason: string } };
  assert.equal(a.source.name, null);
  assert.equal(a.destination.name, 'other');
  assert.match(a.egress.reason, /not a local endpoint/);
});

/** An agent's POST /v1/flows on a UNIX socket: the urls of the records it took, in order. */
async function fakeAgent(sock: string, answer: (n: number) => number): Promise<{ urls: string[]; posts: number; close: () => Promise<void> }> {
  const st = { urls: [] as string[], posts: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const status = answer(++st.posts);
      const body = Buffer.concat(parts).toString('utf8');
      assert.equal(req.method, 'POST');
      assert.equal(req.url, '/v1/flows');
      assert.equal(Number(req.headers['content-length']), Buffer.byteLength(body));
      if (status === 200) for (const line of body.split('\n').filter(Boolean)) st.urls.push((JSON.parse(line) as { l7: { url: string } }).l7.url);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ accepted: status === 200 ? 1 : 0 }));
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  st.close = () => new Promise<void>((r) => server.close(() => r()));
  return st;
}

test('batches reach the agent in order and once: a refused POST is sent again, a new agent socket is followed', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mbr-flows-'));
  const a = await fakeAgent(path.join(dir, 'a.sock'), (n) => (n === 1 ? 500 : 200));
  const b = await fakeAgent(path.join(dir, 'b.sock'), () => 200);
  const r = new AgentFlowReporter({ agentSocket: path.join(dir, 'a.sock'), endpoints: eps, batch: 100, flushMs: 10 });
  const report = (i: number) => r.report(ctxs[0]!, { type: 'http', method: 'GET', url: `/${i}`, protocol: 'HTTP/1.1', code: 200 }, decisions[0]!, 1);
  const until = async (cond: () => boolean) => {
    for (let t = 0; t < 300 && !cond(); t++) await new Promise((res) => setTimeout(res, 10));
  };
  try {
    for (let i = 0; i < 1000; i++) report(i);
    await until(() => r.sent === 1000);
    assert.equal(r.sent, 1000);
    assert.ok(a.posts >= 2, `the refused first POST and more (${a.posts})`);
    assert.deepEqual(a.urls, Array.from({ length: 1000 }, (_, i) => `/${i}`));
    r.agentSocket = path.join(dir, 'b.sock');
    for (let i = 1000; i < 1250; i++) report(i);
    await until(() => r.sent === 1250);
    assert.deepEqual(b.urls, Array.from({ length: 250 }, (_, i) => `/${1000 + i}`));
    assert.equal(r.pending, 0);
  } finally {
    r.close();
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
