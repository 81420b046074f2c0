// SPDX-License-Identifier: Apache-2.0
/** FlowStore: datapath records and the proxy's L7 records (kept as the bytes they came in, parsed when read). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowStore, isFlowRecord, type FlowRecord } from '../../../src/observe/flows.ts';

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

/** A body of `lines` (each ended by a newline) as one chunk. */
function ndjson(...lines: string[]): Buffer[] {
  return [Buffer.from(lines.map((l) => l + '\n').join(''))];
}

/** `body` cut into chunks at byte offsets `cuts` (ascending); each chunk is a copy of its own. */
function cut(body: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...cuts, body.length]) {
    out.push(Buffer.from(body.subarray(from, c)));
    from = c;
  }
  return out;
}

/** What the agent did before records were kept as bytes: one string, split, trimmed, parsed. */
function reference(body: Buffer): { accepted: number; rejected: number; records: FlowRecord[] } {
  const lines: string[] = [];
  let rejected = 0;
  for (const line of body.toString('utf8').split('\n')) {
    if (!line.trim()) continue;
    if (line.startsWith('{')) lines.push(line);
    else rejected++;
  }
  const records: FlowRecord[] = [];
  for (const l of lines) {
    try {
      const f: unknown = JSON.parse(l);
      if (isFlowRecord(f)) records.push(f);
    } catch {
      /* skipped when read */
    }
  }
  return { accepted: lines.length, rejected, records };
}

test('L7 lines are kept as sent and read back as records; bad lines are skipped when read', () => {
  const s = new FlowStore(10);
  s.add(record(0, 'DROPPED', null));
  const counts = s.addRaw(ndjson(JSON.stringify(record(1)), '{"not":"a flow"}', '{broken', JSON.stringify(record(2, 'DROPPED'))));
  assert.deepEqual(counts, { accepted: 4, rejected: 0 });
  assert.equal(s.size, 5);
  assert.deepEqual(
    s.last(100).map((f) => f.time),
    [record(0).time, record(1).time, record(2).time],
  );
  assert.deepEqual(
    s.last(100, { verdict: 'dropped' }).map((f) => f.l7?.query ?? null),
    [null, 'n2.example.com.'],
  );
  assert.deepEqual(s.last(1), [record(2, 'DROPPED')]);
  assert.equal(s.last(1)[0], s.last(1)[0], 'parsed once, then kept parsed');
  assert.equal(s.size, 5, 'a bad line keeps its slot, as before');
});

test('blank lines are skipped; lines not starting with { are rejected and counted', () => {
  const s = new FlowStore(10);
  const body = Buffer.from(
    [
      '',
      '   \t',
      '\r',
      '\u00a0\u2028', // Unicode white space is blank too (String#trim)
      JSON.stringify(record(1)),
      JSON.stringify(record(2)) + '\r', // CRLF
      ' ' + JSON.stringify(record(3)), // leading space: not a record line
      'garbage',
      '\ufeff{}', // a BOM in front
      '\u00e9',
      '\u0001',
      JSON.stringify(record(4)), // no newline at the end of the body
    ].join('\n'),
  );
  assert.deepEqual(s.addRaw([body]), { accepted: 3, rejected: 5 });
  assert.deepEqual(
    s.last(10).map((f) => f.source.port),
    [1001, 1002, 1004],
  );
  assert.deepEqual(s.addRaw([]), { accepted: 0, rejected: 0 });
  assert.deepEqual(s.addRaw([Buffer.alloc(0), Buffer.from('\n\n')]), { accepted: 0, rejected: 0 });
  assert.equal(s.size, 3);
});

test('lines split across chunks anywhere (inside a UTF-8 character too) read back as if whole', () => {
  const lines = [
    JSON.stringify(record(1, 'FORWARDED', { type: 'dns', query: 'caf\u00e9.example.com.' })), // 2 bytes
    '',
    'not json',
    JSON.stringify(record(2, 'DROPPED', { type: 'http', url: '/\u65e5\u672c/\u{1f600}' })), // 3 and 4 bytes
    '{broken',
    JSON.stringify(record(3)),
  ];
  const body = Buffer.from(lines.join('\n') + '\n');
  const want = reference(body);
  assert.equal(want.records.length, 3);
  const check = (chunks: Buffer[], what: string) => {
    const s = new FlowStore(100);
    assert.deepEqual(s.addRaw(chunks), { accepted: want.accepted, rejected: want.rejected }, what);
    assert.deepEqual(s.last(100), want.records, what);
  };
  for (let i = 0; i <= body.length; i++) check(cut(body, [i]), `one cut at byte ${i}`);
  for (let i = 0; i + 3 <= body.length; i++) check(cut(body, [i, i + 1, i + 3]), `cuts at ${i}, ${i + 1}, ${i + 3}`);
  check(cut(body, Array.from({ length: body.length - 1 }, (_, i) => i + 1)), 'one byte per chunk');
  const multibyte = body.indexOf('\u{1f600}');
  for (let i = 1; i < 4; i++) check(cut(body, [multibyte + i]), `inside the 4-byte character, after byte ${i}`);
});

test('random bodies cut at random give what the string-based ingestion gave', () => {
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const kinds = [
    (i: number) => JSON.stringify(record(i, 'FORWARDED', { type: 'dns', query: `\u00e9${i}.\u4e2d\u6587.` })),
    (i: number) => JSON.stringify(record(i)),
    () => '',
    () => ' \t\r',
    () => '\u3000',
    () => 'x',
    () => '{"not":"a flow"}',
    () => '{',
    () => ' {}',
  ];
  for (let round = 0; round < 200; round++) {
    const n = rand(12);
    const lines = Array.from({ length: n }, (_, i) => kinds[rand(kinds.length)]!(i));
    const body = Buffer.from(lines.join('\n') + (rand(2) ? '\n' : ''));
    const cuts = [...new Set(Array.from({ length: rand(6) }, () => rand(body.length + 1)))].sort((a, b) => a - b);
    const want = reference(body);
    const s = new FlowStore(5);
    assert.deepEqual(s.addRaw(cut(body, cuts)), { accepted: want.accepted, rejected: want.rejected }, `round ${round}`);
    // capacity 5 counts lines taken, parsed or not
    const kept = body.toString('utf8').split('\n').filter((l) => l.trim() && l.startsWith('{')).slice(-5);
    assert.deepEqual(s.last(100), reference(Buffer.from(kept.join('\n'))).records, `round ${round}`);
  }
});

test('datapath and L7 records keep the order they were added in', () => {
  const s = new FlowStore(100);
  s.add(record(1, 'DROPPED', null));
  s.addRaw(cut(Buffer.from(`${JSON.stringify(record(2))}\n${JSON.stringify(record(3))}\n`), [40]));
  s.add(record(4, 'FORWARDED', null));
  s.addRaw(ndjson(JSON.stringify(record(5))));
  s.add(record(6, 'AUDIT', null));
  assert.deepEqual(
    s.last(100).map((f) => f.source.port),
    [1001, 1002, 1003, 1004, 1005, 1006],
  );
  assert.deepEqual(
    s.last(3).map((f) => f.source.port),
    [1004, 1005, 1006],
  );
});

test('the ring keeps the newest records; subscribers get parsed L7 records', () => {
  const s = new FlowStore(3);
  const seen: number[] = [];
  const off = s.subscribe((f) => seen.push(f.source.port));
  // a batch larger than the ring, cut inside its third line
  const body = Buffer.from([1, 2, 3, 4, 5].map((i) => JSON.stringify(record(i)) + '\n').join(''));
  const third = body.indexOf(JSON.stringify(record(3)));
  assert.deepEqual(s.addRaw(cut(body, [third + 10])), { accepted: 5, rejected: 0 });
  assert.equal(s.size, 3);
  s.addRaw(ndjson('{broken')); // not delivered
  s.add(record(6, 'FORWARDED', null));
  off();
  s.addRaw(ndjson(JSON.stringify(record(7))));
  assert.deepEqual(
    s.last(10).map((f) => f.source.port),
    [1006, 1007],
  );
  assert.equal(s.size, 3);
  assert.deepEqual(seen, [1001, 1002, 1003, 1004, 1005, 1006]);
});

test('a ring of raw records wraps around many times', () => {
  const s = new FlowStore(7);
  let i = 0;
  for (let batch = 0; batch < 20; batch++) {
    const lines = Array.from({ length: 1 + (batch % 11) }, () => JSON.stringify(record(++i)));
    s.addRaw(cut(Buffer.from(lines.join('\n')), [batch * 13]));
    if (batch % 3 === 0) s.last(2); // some slots parsed, the others still bytes
  }
  assert.deepEqual(
    s.last(100).map((f) => f.source.port),
    Array.from({ length: 7 }, (_, k) => 1000 + i - 6 + k),
  );
});
