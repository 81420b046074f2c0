// SPDX-License-Identifier: Apache-2.0
// The agent API's POST /v1/flows on a UNIX socket: the body's chunks go to the flow store as
// they came (lines spanning chunks included), with the same {accepted, rejected} answer and 413.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startApiServer } from '../../../src/observe/api.ts';
import { FlowStore, type FlowRecord } from '../../../src/observe/flows.ts';

function record(i: number): FlowRecord {
  const side = { enforced: true, verdict: 'allowed' as const, allowedBy: ['CiliumNetworkPolicy/prod/p'], deniedBy: [], reason: 'allowed by CiliumNetworkPolicy/prod/p' };
  return {
    time: new Date(1000 * i).toISOString(),
    verdict: 'FORWARDED',
    dropReason: null,
    source: { namespace: 'prod', name: 'client', identity: 300, ip: '10.0.0.1', port: 1000 + (i % 60000) },
    destination: { namespace: 'kube-system', name: 'dns', identity: 301, ip: '10.0.0.53', port: 53 },
    protocol: 'UDP',
    egress: side,
    ingress: side,
    l7: { type: 'dns', query: `n${i}.caf\u00e9.example.com.`, qtype: 'A', rcode: 'NOERROR', latencyMs: 1 },
  };
}

/** POSTs `pieces`, one write each, with a pause between writes so that they arrive apart. */
function post(sock: string, pieces: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const length = pieces.reduce((n, p) => n + p.length, 0);
    const req = http.request(
      { socketPath: sock, method: 'POST', path: '/v1/flows', agent: false, headers: { 'content-type': 'application/x-ndjson', 'content-length': length } },
      (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      },
    );
    req.on('error', reject);
    const next = (i: number) => {
      if (i === pieces.length) return void req.end();
      req.write(pieces[i]);
      setTimeout(() => next(i + 1), 5);
    };
    next(0);
  });
}

describe('POST /v1/flows', () => {
  let dir: string;
  let sock: string;
  let server: http.Server;
  let store: FlowStore;
  const bodies: Buffer[][] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mbr-api-'));
    sock = path.join(dir, 'agent.sock');
    server = await startApiServer(sock, {
      status: () => ({}),
      flows: (n, filter) => store.last(n, filter),
      subscribe: (fn) => store.subscribe(fn),
      ingest: (body) => {
        bodies.push([...body]);
        return store.addRaw(body);
      },
    });
  });

  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('lines split across writes (inside a UTF-8 character too) are counted and stored whole', async () => {
    store = new FlowStore(100);
    const text = [JSON.stringify(record(1)), '', '  ', 'not a record', JSON.stringify(record(2)), '{broken', JSON.stringify(record(3))].join('\n') + '\n';
    const body = Buffer.from(text);
    const e = body.indexOf('\u00e9', body.indexOf(JSON.stringify(record(2))));
    const pieces = [body.subarray(0, 30), body.subarray(30, e + 1), body.subarray(e + 1)];
    const r = await post(sock, pieces);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { accepted: 4, rejected: 1 });
    assert.deepEqual(store.last(100), [record(1), record(2), record(3)]);
    assert.equal(store.size, 4);
  });

  test('a body of many chunks, as the proxy sends them, is stored record for record', async () => {
    store = new FlowStore(20000);
    const n = 3000;
    const body = Buffer.from(Array.from({ length: n }, (_, i) => JSON.stringify(record(i)) + '\n').join(''));
    bodies.length = 0;
    const r = await post(sock, [body]);
    assert.deepEqual(JSON.parse(r.body), { accepted: n, rejected: 0 });
    assert.ok(bodies[0]!.length > 1, `the body arrived in ${bodies[0]!.length} chunk(s)`);
    const got = store.last(n);
    assert.equal(got.length, n);
    assert.deepEqual(got[0], record(0));
    assert.deepEqual(got[n - 1], record(n - 1));
    assert.ok(got.every((f, i) => f.time === record(i).time));
  });

  test('a body over 16 MiB is answered 413 and nothing of it is stored', async () => {
    store = new FlowStore(100);
    const line = Buffer.from(JSON.stringify(record(1)) + '\n');
    const body = Buffer.alloc((16 << 20) + line.length);
    for (let at = 0; at + line.length <= body.length; at += line.length) line.copy(body, at);
    const r = await post(sock, [body]);
    assert.equal(r.status, 413);
    assert.deepEqual(JSON.parse(r.body), { error: 'too large' });
    assert.equal(store.size, 0);
  });

  test('an empty body is accepted with nothing in it', async () => {
    store = new FlowStore(100);
    const r = await post(sock, []);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { accepted: 0, rejected: 0 });
  });
});
