// SPDX-License-Identifier: Apache-2.0
// Proxy conformance for HTTP/1.1 (STYLE B5, B7 item 7): partial input → MORE, allow → PASS,
// deny → DROP + the protocol's own denial (403 "Access denied"), garbage → ERROR (400/431),
// never a throw. `runConformance` is written so other protocols can call it the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SnapshotDecider } from '../../../proxy/core/decider.ts';
import type { ConnContext, Verdict } from '../../../proxy/core/types.ts';
import { HttpEnforcer } from '../../../proxy/http/enforcer.ts';
import type { L7PolicySnapshot } from '../../../src/l7/policy.ts';

interface Enforcer {
  onData(data: Buffer): { verdict: Verdict; bytes: number; inject?: Buffer };
}

interface ConformanceCase {
  name: string;
  newEnforcer: () => Enforcer;
  /** A complete message the policy allows. */
  allow: Buffer;
  /** A complete message the policy denies, and what the denial must look like. */
  deny: Buffer;
  denial: (inject: Buffer) => void;
  /** Malformed messages. */
  garbage: Buffer[];
}

function runConformance(c: ConformanceCase): void {
  test(`${c.name}: every strict prefix of a message is MORE`, () => {
    for (const msg of [c.allow, c.deny]) {
      for (let n = 0; n < msg.length; n++) assert.equal(c.newEnforcer().onData(msg.subarray(0, n)).verdict, 'MORE', `prefix of ${n} bytes`);
    }
  });
  test(`${c.name}: allowed → PASS covering the message`, () => {
    const r = c.newEnforcer().onData(c.allow);
    assert.equal(r.verdict, 'PASS');
    assert.equal(r.bytes, c.allow.length);
    assert.equal(r.inject, undefined);
  });
  test(`${c.name}: denied → DROP with the protocol's denial`, () => {
    const r = c.newEnforcer().onData(c.deny);
    assert.equal(r.verdict, 'DROP');
    assert.equal(r.bytes, c.deny.length);
    assert.ok(r.inject);
    c.denial(r.inject);
  });
  test(`${c.name}: garbage → ERROR`, () => {
    for (const g of c.garbage) assert.equal(c.newEnforcer().onData(g).verdict, 'ERROR', JSON.stringify(g.toString('latin1')));
  });
  test(`${c.name}: never a throw (random bytes, mutated messages)`, () => {
    const seen = new Set<Verdict>();
    for (let i = 0; i < 3000; i++) {
      let input: Buffer;
      if (i % 3 === 0) input = randomBytes(1 + (i % 200));
      else {
        input = Buffer.from(i % 2 ? c.allow : c.deny);
        for (let k = 0; k < 1 + (i % 4); k++) input[(i * 7 + k * 13) % input.length] = (i * 31 + k) & 0xff;
      }
      const r = c.newEnforcer().onData(input);
      assert.ok(['MORE', 'PASS', 'DROP', 'ERROR'].includes(r.verdict));
      seen.add(r.verdict);
    }
    assert.ok(seen.has('ERROR'));
  });
}

const POLICY = 'CiliumNetworkPolicy/prod/server-http';
const snapshot: L7PolicySnapshot = {
  revision: 1,
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
      ingress: [
        {
          proto: 6,
          port: 80,
          endPort: 80,
          rules: [{ peers: [1000], parser: 'http', http: [{ rule: { method: 'GET', path: '/public/.*' }, origin: POLICY }], dns: [], kafka: [], wildcardL7: [], derivedFrom: [POLICY] }],
        },
      ],
    },
  ],
};
const decider = new SnapshotDecider();
decider.update(snapshot);
const ctx: ConnContext = { client: { ip: '10.0.0.1', port: 40000, identity: 1000 }, server: { ip: '10.0.0.2', port: 80, identity: 2000 }, proxyPort: 15001, proto: 6 };
const req = (s: string) => Buffer.from(s, 'latin1');

runConformance({
  name: 'HTTP/1.1',
  newEnforcer: () => new HttpEnforcer(decider, ctx, 4096),
  allow: req('GET /public/a.txt HTTP/1.1\r\nHost: server\r\nUser-Agent: t\r\n\r\n'),
  deny: req('GET /admin HTTP/1.1\r\nHost: server\r\n\r\n'),
  denial: (inject) => {
    const text = inject.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 403 /);
    assert.ok(text.endsWith('\r\n\r\nAccess denied\r\n'));
  },
  garbage: [
    req('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'), // a TLS ClientHello
    req('GET /public/a HTTP/1.1\nHost: a\n\n'),
    req('GET /public/a HTTP/2.0\r\n\r\n'),
    req('GET /public/a\r\n\r\n'),
    req('GET  /public/a HTTP/1.1\r\n\r\n'),
    req('GET /public/../admin HTTP/1.1\r\nHost: a\r\n\r\n'),
    req('GET /public/%2e%2e/admin HTTP/1.1\r\nHost: a\r\n\r\n'),
    req('GET /public//a HTTP/1.1\r\nHost: a\r\n\r\n'),
    req('GET http://a/public/a HTTP/1.1\r\nHost: a\r\n\r\n'),
    req('GET /public/a HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n'),
    req('GET /public/a HTTP/1.1\r\nHost : a\r\n\r\n'),
    req('POST /public/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'),
    req('POST /public/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'),
    req(`GET /public/a HTTP/1.1\r\nHost: a\r\nX: ${'x'.repeat(5000)}`),
  ],
});

test('HTTP/1.1: audit mode turns a DROP into a PASS', () => {
  const d = new SnapshotDecider();
  d.update({ ...snapshot, globalAudit: true });
  const r = new HttpEnforcer(d, ctx, 4096).onData(req('GET /admin HTTP/1.1\r\nHost: server\r\n\r\n'));
  assert.equal(r.verdict, 'PASS');
});
