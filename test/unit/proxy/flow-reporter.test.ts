// SPDX-License-Identifier: Apache-2.0
// proxy/core/flow-reporter.ts: the JSON written per request (serialised when its batch is sent,
// with the repeating parts reused) is exactly JSON.stringify of the record l7FlowRecord builds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flowRecordJson, l7FlowRecord, type EndpointLookup } from '../../../proxy/core/flow-reporter.ts';
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
