// SPDX-License-Identifier: Apache-2.0
// proxy/core/decider.ts: cached HTTP decisions are the uncached ones, follow a new snapshot, keep
// connections (identities) apart, and are not used when a rule looks at headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotDecider } from '../../../proxy/core/decider.ts';
import type { ConnContext } from '../../../proxy/core/types.ts';
import type { L7PolicySnapshot } from '../../../src/l7/policy.ts';
import type { HttpRuleSpec } from '../../../src/l7/http.ts';

const POLICY = 'CiliumNetworkPolicy/prod/p';
const snapshot = (revision: number, http: HttpRuleSpec[], peers: number[] | 'any' = [1000]): L7PolicySnapshot => ({
  revision,
  globalAudit: false,
  endpoints: [
    {
      ref: 'prod/server',
      ips: ['10.0.0.2'],
      identity: 2000,
      audit: false,
      ingressEnforced: true,
      egressEnforced: false,
      egress: [],
      ingress: [{ proto: 6, port: 80, endPort: 0, rules: [{ peers, parser: 'http', http: http.map((rule) => ({ rule, origin: POLICY })), dns: [], kafka: [], wildcardL7: [], derivedFrom: [POLICY] }] }],
    },
  ],
});
const conn = (identity: number): ConnContext => ({ client: { ip: '10.0.0.1', port: 40000, identity }, server: { ip: '10.0.0.2', port: 80, identity: 2000 }, proxyPort: 15001, proto: 6 });
const get = (path: string, headers: Array<[string, string]> = []) => ({ type: 'http' as const, http: { method: 'GET', path, host: '10.0.0.2', headers } });

test('cached decisions equal fresh ones and follow a new snapshot', () => {
  const d = new SnapshotDecider();
  d.update(snapshot(1, [{ method: 'GET', path: '/a/[0-9]+' }]));
  const ctx = conn(1000);
  const first = d.decide(ctx, get('/a/1'));
  assert.equal(first.verdict, 'allowed');
  assert.equal(d.decide(ctx, get('/a/1')), first, 'the same request on the same connection reuses the decision');
  assert.equal(d.decide(ctx, get('/b')).verdict, 'denied');
  assert.equal(d.decide(conn(1001), get('/a/1')).verdict, 'denied', 'another identity is decided for itself');
  d.update(snapshot(2, [{ method: 'GET', path: '/b' }]));
  assert.equal(d.decide(ctx, get('/a/1')).verdict, 'denied', 'a new snapshot drops the cache');
  assert.equal(d.decide(ctx, get('/b')).verdict, 'allowed');
});

test('nothing is cached when a rule matches headers', () => {
  const d = new SnapshotDecider();
  d.update(snapshot(1, [{ method: 'GET', path: '/a', headers: [{ name: 'X-Token', value: 'yes' }] }], 'any'));
  const ctx = conn(1000);
  assert.equal(d.decide(ctx, get('/a', [['X-Token', 'yes']])).verdict, 'allowed');
  assert.equal(d.decide(ctx, get('/a', [['X-Token', 'no']])).verdict, 'denied');
  assert.equal(d.decide(ctx, get('/a', [['X-Token', 'yes']])).verdict, 'allowed');
});

test('fail closed: a request neither side has policy for (no snapshot yet, unknown endpoint) is denied', () => {
  const d = new SnapshotDecider();
  const dns = { type: 'dns' as const, qname: 'anything.example.com.' };
  const none = d.decide(conn(1000), dns);
  assert.equal(none.forward, false);
  assert.match(none.egress!.detail, /no L7 policy for this flow/);
  assert.equal(d.decide(conn(1000), get('/a/1')).forward, false);
  d.update(snapshot(1, [{ method: 'GET', path: '/a/[0-9]+' }]));
  assert.equal(d.decide(conn(1000), get('/a/1')).forward, true);
  const elsewhere: ConnContext = { ...conn(1000), server: { ip: '10.0.0.99', port: 80, identity: 2 } };
  assert.equal(d.decide(elsewhere, get('/a/1')).forward, false, 'server not in the snapshot, client not enforced');
});
