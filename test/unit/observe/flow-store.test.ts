// SPDX-License-Identifier: Apache-2.0
/** FlowStore: datapath records and the proxy's L7 records (kept as text, parsed when read). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowStore, type FlowRecord } from '../../../src/observe/flows.ts';

function record(i: number, verdict: FlowRecord['verdict'] = 'FORWARDED', l7: FlowRecord['l7'] = { type: 'dns', query: `n${i}.example.com.` }): FlowRecord {
  const side = { enforced: true, verdict: 'allowed' as const, allowedBy: ['CiliumNetworkPolicy/prod/p'], deniedBy: [], reason: '' };
  return {
    time: new Date(1000 * i).toISOString(),
    verdict,
    dropReason: null,
    source: { namespace: 'prod', name: 'client', identity: 300, ip: '10.0.0.1', port: 1000 + i },
    destination: { namespace: 'kube-system', name: 'dns', identity: 301, ip: '10.0.0.53', port: 53 },
    protocol: 'UDP',
    egress: side,
    ingress: side,
    l7,
  };
}

test('L7 lines are kept as sent and read back as records; bad lines are skipped when read', () => {
  const s = new FlowStore(10);
  s.add(record(0, 'DROPPED', null));
  s.addRaw([JSON.stringify(record(1)), '{"not":"a flow"}', '{broken', JSON.stringify(record(2, 'DROPPED'))]);
  assert.deepEqual(
    s.last(100).map((f) => f.time),
    [record(0).time, record(1).time, record(2).time],
  );
  assert.deepEqual(
    s.last(100, { verdict: 'dropped' }).map((f) => f.l7?.query ?? null),
    [null, 'n2.example.com.'],
  );
  assert.deepEqual(s.last(1), [record(2, 'DROPPED')]);
});

test('the ring keeps the newest records; subscribers get parsed L7 records', () => {
  const s = new FlowStore(3);
  const seen: string[] = [];
  const off = s.subscribe((f) => seen.push(f.time));
  s.addRaw([1, 2, 3, 4, 5].map((i) => JSON.stringify(record(i))));
  off();
  s.addRaw([JSON.stringify(record(6))]);
  assert.deepEqual(
    s.last(10).map((f) => f.source.port),
    [1004, 1005, 1006],
  );
  assert.equal(seen.length, 5);
});
