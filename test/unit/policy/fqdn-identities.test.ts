// SPDX-License-Identifier: Apache-2.0
/**
 * FQDN identities (src/l7/fqdn.ts): the engine and the DNS proxy's resolver must derive the same
 * identity for a learned IP, and sharing identities per selector set must not change what
 * CIDR rules select (reference §2.10, §5.4).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicyText } from '../../../src/api/load.ts';
import { FqdnResolver } from '../../../src/l7/fqdn.ts';
import { PolicyEngine } from '../../../src/policy/engine.ts';
import { traceFlow } from '../../../src/policy/trace.ts';

const POLICY = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: egress, namespace: prod }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toFQDNs: [{ matchName: api.example.com }, { matchPattern: "*.example.com" }]
      toPorts: [{ ports: [{ port: "443", protocol: TCP }] }]
    - toFQDNs: [{ matchName: db.example.org }]
      toPorts: [{ ports: [{ port: "5432", protocol: TCP }] }]
    - toCIDRSet: [{ cidr: 93.0.0.0/8, except: [93.184.0.0/16] }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
`;

function engine(): PolicyEngine {
  const e = new PolicyEngine({ hostIps: ['10.200.0.1'] });
  const loaded = parsePolicyText(POLICY, 'p.yaml');
  assert.deepEqual(loaded.problems.filter((p) => p.severity === 'error'), []);
  e.bulk(() => {
    e.setNamespaces([{ name: 'prod', labels: {} }]);
    e.upsertEndpoint({ namespace: 'prod', name: 'client', labels: { app: 'client' }, ips: ['10.200.1.10'] });
    e.replacePolicyObject('CiliumNetworkPolicy/prod/egress', loaded.rules);
  });
  return e;
}

function verdict(e: PolicyEngine, ip: string, port: number): string {
  const from = { kind: 'endpoint' as const, endpoint: e.endpoint('prod/client')! };
  return traceFlow(e, { from, to: { kind: 'ip', ip }, proto: 6, port }).verdict;
}

test('each toFQDNs selector alone has an identity before any answer (§5.4 pre-allocation)', () => {
  const e = engine();
  const r = new FqdnResolver(e.fqdnTable());
  const one = r.identityOf('198.51.100.7', ['db.example.org']);
  assert.ok('id' in one, JSON.stringify(one));
  // two selectors match api.example.com: that set is allocated when the agent learns it
  assert.ok('missing' in r.identityOf('198.51.100.8', ['api.example.com']));
  assert.deepEqual(r.identityOf('198.51.100.9', ['other.net']), { none: true });
});

test('the resolver and the engine agree on the identity of learned IPs', () => {
  const e = engine();
  e.learnFqdn('db.example.org', ['198.51.100.7']);
  e.learnFqdn('api.example.com', ['198.51.100.8', '93.1.2.3']);
  e.learnFqdn('www.example.com', ['93.184.216.34']);
  const r = new FqdnResolver(e.fqdnTable());
  const ipcache = e.ipcacheEntries();
  const names = e.fqdnNames();
  for (const ip of ['198.51.100.7', '198.51.100.8', '93.1.2.3', '93.184.216.34']) {
    const of = [...names].filter(([, ips]) => ips.includes(ip)).map(([n]) => n);
    const got = r.identityOf(ip, of);
    assert.ok('id' in got, `${ip}: ${JSON.stringify(got)}`);
    assert.equal(got.id, ipcache.get(`${ip}/32`), ip);
  }
  // IPs with the same selector set and base share one identity
  e.learnFqdn('db.example.org', ['198.51.100.70']);
  assert.equal(e.ipcacheEntries().get('198.51.100.70/32'), e.ipcacheEntries().get('198.51.100.7/32'));
});

test('a learned IP keeps what CIDR rules gave it (§2.10 containment and except)', () => {
  const e = engine();
  assert.equal(verdict(e, '93.1.2.3', 8080), 'allowed');
  assert.equal(verdict(e, '93.1.2.3', 443), 'denied');
  e.learnFqdn('api.example.com', ['93.1.2.3', '93.184.216.34']);
  assert.equal(verdict(e, '93.1.2.3', 443), 'allowed', 'toFQDNs');
  assert.equal(verdict(e, '93.1.2.3', 8080), 'allowed', 'still inside 93.0.0.0/8');
  assert.equal(verdict(e, '93.184.216.34', 443), 'allowed', 'toFQDNs');
  assert.equal(verdict(e, '93.184.216.34', 8080), 'denied', 'still in the except');
  e.forgetFqdn('api.example.com');
  assert.equal(verdict(e, '93.1.2.3', 443), 'denied');
  assert.equal(e.ipcacheEntries().has('93.1.2.3/32'), false);
});

test('toFQDNs never gives a cluster IP an FQDN identity (§2.10)', () => {
  const e = engine();
  const before = e.ipcacheEntries().get('10.200.1.10/32');
  e.learnFqdn('db.example.org', ['10.200.1.10']);
  assert.equal(e.ipcacheEntries().get('10.200.1.10/32'), before);
});

test('learnFqdnFast gives the same ipcache as learnFqdn, and declines when an identity is missing', () => {
  const fast = engine();
  const slow = engine();
  const batches = [
    [{ name: 'db.example.org', ips: ['198.51.100.7', '198.51.100.8'] }],
    [{ name: 'x.example.com', ips: ['93.1.2.3'] }], // *.example.com alone, but with base 93.0.0.0/8: not allocated yet
    [{ name: 'api.example.com', ips: ['198.51.100.9'] }], // two selectors: not allocated yet
    [{ name: 'api.example.com', ips: ['198.51.100.10'] }, { name: 'DB.example.org', ips: ['10.200.1.10'] }], // now it is; a cluster IP is skipped
  ];
  const declined: number[] = [];
  for (const [i, batch] of batches.entries()) {
    for (const b of batch) slow.learnFqdn(b.name, b.ips);
    if (!fast.learnFqdnFast(batch)) {
      declined.push(i);
      for (const b of batch) fast.learnFqdn(b.name, b.ips);
    }
    assert.deepEqual(fast.ipcacheEntries(), slow.ipcacheEntries(), `after batch ${i}`);
  }
  assert.deepEqual(declined, [1, 2]);
  assert.deepEqual(fast.fqdnNames(), slow.fqdnNames());
  fast.forgetFqdn('api.example.com');
  slow.forgetFqdn('api.example.com');
  assert.deepEqual(fast.ipcacheEntries(), slow.ipcacheEntries());
});
