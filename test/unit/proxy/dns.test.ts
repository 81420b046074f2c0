// SPDX-License-Identifier: Apache-2.0
/**
 * The DNS proxy's pure parts: message handling (reference §5.2, §5.3), the FQDN cache (§5.5)
 * and the upstream id multiplexing. The whole path with real peers is test/e2e/dns-proxy.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { AgentFqdnLink } from '../../../proxy/dns/agent-link.ts';
import { CacheJournal, readCacheFile } from '../../../proxy/dns/cache-file.ts';
import { FqdnCache } from '../../../proxy/dns/fqdn-cache.ts';
import { errorResponse, formatError, parseAnswer, parseQuery } from '../../../proxy/dns/message.ts';
import { PendingQueries, TcpFramer, tcpFrame } from '../../../proxy/dns/upstream.ts';

const query = (name: string, id = 4242) =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }] } as dnsPacket.Packet);

const answer = (name: string, answers: dnsPacket.Answer[], rcode = 0, id = 1) =>
  dnsPacket.encode({ type: 'response', id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode, questions: [{ type: 'A', name }], answers } as dnsPacket.Packet);

describe('DNS messages', () => {
  test('a query: id, first question (as sent) and types', () => {
    const q = parseQuery(query('Api.Example.COM'))!;
    assert.equal(q.id, 4242);
    assert.equal(q.qname, 'Api.Example.COM');
    assert.deepEqual(q.qtypes, ['A']);
  });

  test('malformed input never throws: null, and FORMERR only when a query header is readable', () => {
    for (const bad of [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(12, 0xff), query('a.example.com').subarray(0, 20)]) {
      assert.equal(parseQuery(bad), null, bad.toString('hex'));
    }
    assert.equal(formatError(Buffer.from('hi')), null);
    const truncated = query('a.example.com', 777).subarray(0, 20);
    const fe = dnsPacket.decode(formatError(truncated)!);
    assert.equal(fe.id, 777);
    assert.equal((fe as unknown as { rcode: string }).rcode, 'FORMERR');
    // a response is not answered
    assert.equal(formatError(answer('a.example.com', [])), null);
  });

  test('denials echo id, RD and the question with the chosen rcode (§5.3 step 5)', () => {
    for (const rcode of ['REFUSED', 'NXDOMAIN', 'SERVFAIL'] as const) {
      const r = dnsPacket.decode(errorResponse(parseQuery(query('evil.org', 9))!, rcode)) as dnsPacket.DecodedPacket & { rcode: string };
      assert.equal(r.id, 9);
      assert.equal(r.type, 'response');
      assert.equal(r.rcode, rcode);
      assert.equal(r.flag_rd, true);
      assert.deepEqual(
        r.questions?.map((q) => q.name),
        ['evil.org'],
      );
      assert.equal(r.answers?.length, 0);
    }
  });

  test('answers: addresses through the CNAME chain, minimum TTL of the chain (§5.3 step 7)', () => {
    const a = parseAnswer(
      answer('www.Example.com', [
        { type: 'CNAME', name: 'www.example.com', ttl: 300, data: 'edge.cdn.net' },
        { type: 'CNAME', name: 'edge.cdn.net', ttl: 120, data: 'e1.cdn.net' },
        { type: 'A', name: 'e1.cdn.net', ttl: 30, data: '192.0.2.1' },
        { type: 'AAAA', name: 'e1.cdn.net', ttl: 60, data: '2001:db8::1' },
        { type: 'A', name: 'e1.cdn.net', ttl: 30, data: '192.0.2.1' },
      ]),
    )!;
    assert.equal(a.qname, 'www.example.com.');
    assert.deepEqual(a.ips, ['192.0.2.1', '2001:db8::1']);
    assert.equal(a.ttl, 30);
    assert.deepEqual(a.cnames, ['edge.cdn.net.', 'e1.cdn.net.']);
  });

  test('records off the chain are not learned (an upstream cannot plant IPs for other names)', () => {
    const a = parseAnswer(
      answer('a.example.com', [
        { type: 'A', name: 'a.example.com', ttl: 50, data: '192.0.2.1' },
        { type: 'A', name: 'bank.example.org', ttl: 5, data: '198.51.100.1' },
      ]),
    )!;
    assert.deepEqual(a.ips, ['192.0.2.1']);
    assert.equal(a.ttl, 50);
  });

  test('only NOERROR answers carry addresses; a CNAME loop ends', () => {
    assert.deepEqual(parseAnswer(answer('x.example.com', [], 3))!.ips, []);
    assert.equal(parseAnswer(answer('x.example.com', [], 3))!.rcode, 'NXDOMAIN');
    const loop = parseAnswer(
      answer('a.test', [
        { type: 'CNAME', name: 'a.test', ttl: 5, data: 'b.test' },
        { type: 'CNAME', name: 'b.test', ttl: 5, data: 'a.test' },
      ]),
    )!;
    assert.deepEqual(loop.ips, []);
    assert.equal(loop.ttl, 0);
    assert.equal(parseAnswer(query('a.test')), null, 'a query is not an answer');
    assert.equal(parseAnswer(Buffer.from('junk')), null);
  });
});

describe('FQDN cache (§5.5)', () => {
  test('TTL is max(answer TTL, min TTL); the latest expiry wins; new IPs are reported once', () => {
    const c = new FqdnCache({ minTtl: 10, maxIpsPerName: 100 });
    assert.deepEqual(c.learn('a.example.com.', ['192.0.2.1'], 2, 0), ['192.0.2.1']);
    assert.deepEqual(c.learn('a.example.com.', ['192.0.2.1', '192.0.2.2'], 30, 1000), ['192.0.2.2']);
    assert.deepEqual(c.due(10_999), []);
    assert.deepEqual(c.due(31_000), [
      { name: 'a.example.com.', ip: '192.0.2.1' },
      { name: 'a.example.com.', ip: '192.0.2.2' },
    ]);
  });

  test('an IP is kept while any name holds it; extend keeps an expired pair', () => {
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 100 });
    c.learn('a.test.', ['192.0.2.1'], 1, 0);
    c.learn('b.test.', ['192.0.2.1'], 100, 0);
    assert.deepEqual(c.namesOf('192.0.2.1').sort(), ['a.test.', 'b.test.']);
    c.extend('a.test.', '192.0.2.1', 5000);
    assert.deepEqual(c.due(2000), []);
    assert.equal(c.remove('a.test.', '192.0.2.1'), false, 'b.test. still holds it');
    assert.equal(c.remove('b.test.', '192.0.2.1'), true);
    assert.equal(c.size, 0);
  });

  test('over the per-name limit, the earliest-expiring extras are due', () => {
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 2 });
    c.learn('a.test.', ['192.0.2.1'], 10, 0);
    c.learn('a.test.', ['192.0.2.2'], 30, 0);
    c.learn('a.test.', ['192.0.2.3'], 20, 0);
    assert.deepEqual(c.due(0), [{ name: 'a.test.', ip: '192.0.2.1' }]);
  });

  test('size counts (name, IP) pairs through learn, remove and load', () => {
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 10 });
    c.learn('a.test.', ['192.0.2.1', '192.0.2.2'], 60, 0);
    c.learn('a.test.', ['192.0.2.1'], 60, 1000); // refreshed, not added
    c.learn('b.test.', ['192.0.2.1'], 60, 0);
    assert.equal(c.size, 3);
    c.remove('a.test.', '192.0.2.2');
    c.remove('a.test.', '192.0.2.2'); // gone already
    c.remove('c.test.', '192.0.2.9'); // never cached
    assert.equal(c.size, 2);
    const entries = c.entries();
    const d = new FqdnCache({ minTtl: 0, maxIpsPerName: 10 });
    d.load([...entries, ...entries]); // a journal replays a pair more than once
    assert.equal(d.size, 2);
    assert.equal(d.size, [...d.iterate()].length);
  });

  test('entries survive a round trip through the state file format; bad ones are skipped', () => {
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 10 });
    c.learn('a.test.', ['192.0.2.1', '2001:db8::1'], 60, 1000);
    const d = new FqdnCache({ minTtl: 0, maxIpsPerName: 10 });
    assert.equal(d.load([...JSON.parse(JSON.stringify(c.entries())), { name: 1 }, null] as never), 2);
    assert.deepEqual(d.names(), [{ name: 'a.test.', ips: ['192.0.2.1', '2001:db8::1'] }]);
  });
});

describe('the cache state file (journal)', () => {
  /** A cache and its journal in a temporary directory, removed after `fn`. */
  async function withJournal(fn: (o: { file: string; c: FqdnCache; j: CacheJournal; save: () => void }) => void | Promise<void>): Promise<void> {
    const dir = mkdtempSync(path.join(tmpdir(), 'mbr-cache-'));
    try {
      const file = path.join(dir, 'fqdn-cache.json');
      const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 10 });
      const j = new CacheJournal(file);
      await fn({ file, c, j, save: () => j.save(c.drain(), () => c.iterate(), c.size) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  test('compaction runs in the background; what is saved meanwhile survives it', () =>
    withJournal(async ({ file, c, j, save }) => {
      c.learn('a.test.', ['192.0.2.1'], 60, 0);
      save();
      // the same pair re-saved until the file is far longer than the cache
      for (let i = 1; i <= 10_010 && !j.compacting; i++) {
        c.learn('a.test.', ['192.0.2.1'], 60, i * 10_000);
        save();
      }
      assert.equal(j.compacting, true);
      c.learn('b.test.', ['192.0.2.2'], 60, 0); // saved while the compaction is under way
      save();
      while (j.compacting) await new Promise((r) => setImmediate(r));
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      assert.ok(lines.length < 10, `compacted to ${lines.length} lines`);
      const sort = (xs: Array<{ ip: string }>) => [...xs].sort((x, y) => x.ip.localeCompare(y.ip));
      assert.deepEqual(sort(readCacheFile(file)), sort(c.entries()));
    }));

  test('appends what changed, replays to the same cache, compacts, skips a torn line', () =>
    withJournal(({ file, c, save }) => {
      c.learn('a.test.', ['192.0.2.1', '192.0.2.2'], 60, 0);
      save(); // first save rewrites: header + 2
      c.learn('a.test.', ['192.0.2.1'], 60, 500); // expiry moved by 0.5 s: not worth a line
      c.learn('b.test.', ['192.0.2.3'], 60, 0);
      c.remove('a.test.', '192.0.2.2');
      c.learn('a.test.', ['192.0.2.1'], 120, 5000); // moved by 65 s
      save();
      assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 1 + 2 + 3);
      appendFileSync(file, '["+","c.test.","192.0.2');
      const back = readCacheFile(file).sort((x, y) => x.ip.localeCompare(y.ip));
      assert.deepEqual(back, c.entries().sort((x, y) => x.ip.localeCompare(y.ip)));
      assert.equal(back.find((e) => e.ip === '192.0.2.1')!.expiresAt, 125_000);
      assert.deepEqual(readCacheFile(path.join(path.dirname(file), 'missing')), []);
      // removed and learned again between two saves: present after replay
      c.remove('b.test.', '192.0.2.3');
      c.learn('b.test.', ['192.0.2.3'], 60, 9000);
      save();
      assert.ok(readCacheFile(file).some((e) => e.name === 'b.test.' && e.ip === '192.0.2.3'));
    }));
});

describe('upstream multiplexing', () => {
  test('each query gets a unique id on the wire, in place; answers find their query', async () => {
    const p = new PendingQueries(1000);
    const q1 = query('a.test', 7);
    const a = p.add(q1)!;
    const b = p.add(query('b.test', 7))!;
    assert.equal(a.wire, q1, 'no copy');
    assert.notEqual(a.wire.readUInt16BE(0), b.wire.readUInt16BE(0));
    const resp = answer('b.test', [], 0, b.wire.readUInt16BE(0));
    assert.equal(p.answer(resp), true);
    assert.equal(await b.answer, resp);
    assert.equal(p.answer(resp), false, 'answered once');
    p.failAll();
    assert.equal(await a.answer, null);
  });

  test('no answer in time: null (the client gets SERVFAIL)', async () => {
    const p = new PendingQueries(20);
    const keepAlive = setTimeout(() => {}, 5000); // the sweeper is unref'd (sockets keep a proxy alive)
    assert.equal(await p.add(query('slow.test'))!.answer, null);
    clearTimeout(keepAlive);
    assert.equal(p.size, 0);
  });

  test('TCP framing: messages split and joined across chunks (RFC 1035 §4.2.2)', () => {
    const m1 = query('a.test', 1);
    const m2 = query('b.test', 2);
    const wire = Buffer.concat([tcpFrame(m1), tcpFrame(m2)]);
    const f = new TcpFramer();
    const out: Buffer[] = [];
    for (let i = 0; i < wire.length; i += 5) out.push(...f.push(wire.subarray(i, i + 5)));
    assert.deepEqual(out, [m1, m2]);
    assert.equal(f.buffered, 0);
  });
});

describe('telling the agent (proxy/dns/agent-link.ts)', () => {
  test('updates the agent did not take are sent again, in order, once it answers', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mbr-link-'));
    const sock = path.join(dir, 'agent.sock');
    const got: unknown[] = [];
    let up = false;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (!up) {
          res.writeHead(503).end();
          return;
        }
        got.push(JSON.parse(body));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ fqdn: { selectors: [], cidrs: [], identities: [] } }));
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    const link = new AgentFqdnLink(() => sock, 1000);
    try {
      assert.equal(await link.send({ learn: [{ name: 'a.test.', ips: ['192.0.2.1'] }], forget: [] }, true), null, 'agent away: no table');
      assert.equal(await link.send({ learn: [], forget: [{ name: 'a.test.', ips: ['192.0.2.1'] }] }, true), null);
      up = true;
      const deadline = Date.now() + 5000;
      while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(got, [
        { learn: [{ name: 'a.test.', ips: ['192.0.2.1'] }], forget: [] },
        { learn: [], forget: [{ name: 'a.test.', ips: ['192.0.2.1'] }] },
      ]);
      assert.equal(link.backlog, 0);
      // a forget and then a learn of the same pair in one batch reach the agent as the learn
      up = true;
      got.length = 0;
      const a = link.send({ learn: [], forget: [{ name: 'c.test.', ips: ['192.0.2.9'] }] });
      const b = link.send({ learn: [{ name: 'c.test.', ips: ['192.0.2.9'] }], forget: [] }, true);
      await Promise.all([a, b]);
      assert.deepEqual(got, [{ learn: [{ name: 'c.test.', ips: ['192.0.2.9'] }], forget: [] }]);
      assert.deepEqual(await link.send({ learn: [{ name: 'b.test.', ips: ['192.0.2.2'] }], forget: [] }, true), { selectors: [], cidrs: [], identities: [] });
    } finally {
      link.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('message parsing agrees with dns-packet (proxy/dns/message.ts walks the sections itself)', () => {
  // the reference: dnsPacket.decode, then the chain rule of §5.3 step 7
  function reference(msg: Buffer): { rcode: string; qname: string; ips: string[]; ttl: number } | null {
    let d: dnsPacket.DecodedPacket & { rcode?: string };
    try {
      d = dnsPacket.decode(msg) as typeof d;
    } catch {
      return null;
    }
    const norm = (n: string) => (n.toLowerCase().endsWith('.') ? n.toLowerCase() : `${n.toLowerCase()}.`);
    const qname = d.questions?.[0] ? norm(d.questions[0].name) : '';
    const out = { rcode: d.rcode ?? 'NOERROR', qname, ips: [] as string[], ttl: 0 };
    if (out.rcode !== 'NOERROR' || !qname) return out;
    const rrs = (d.answers ?? []) as Array<{ name: string; type: string; ttl?: number; data?: unknown }>;
    const chain = [qname];
    let min = Infinity;
    for (let grew = true; grew; ) {
      grew = false;
      for (const r of rrs) if (r.type === 'CNAME' && chain.includes(norm(r.name)) && !chain.includes(norm(String(r.data)))) {
        chain.push(norm(String(r.data)));
        min = Math.min(min, r.ttl ?? 0);
        grew = true;
      }
    }
    for (const r of rrs) if ((r.type === 'A' || r.type === 'AAAA') && chain.includes(norm(r.name)) && !out.ips.includes(String(r.data))) {
      out.ips.push(String(r.data));
      min = Math.min(min, r.ttl ?? 0);
    }
    out.ttl = out.ips.length ? min : 0;
    return out;
  }

  test('random answers (CNAME chains, mixed case, other record types, EDNS): same rcode, name, addresses, TTL', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const names = ['a.example.com', 'B.Example.com', 'cdn.net', 'e1.cdn.net', 'x.test'];
    for (let i = 0; i < 300; i++) {
      const answers: dnsPacket.Answer[] = [];
      for (let k = rnd(6); k > 0; k--) {
        const name = names[rnd(names.length)]!;
        const t = rnd(5);
        if (t === 0) answers.push({ type: 'CNAME', name, ttl: rnd(500), data: names[rnd(names.length)]! });
        else if (t === 1) answers.push({ type: 'AAAA', name, ttl: rnd(500), data: `2001:db8::${rnd(9)}` });
        else if (t === 2) answers.push({ type: 'MX', name, ttl: 5, data: { preference: 1, exchange: 'mx.example.com' } });
        else answers.push({ type: 'A', name, ttl: rnd(500), data: `192.0.2.${rnd(9)}` });
      }
      const msg = dnsPacket.encode({
        type: 'response', id: i, flags: dnsPacket.RECURSION_AVAILABLE | (rnd(8) === 0 ? 3 : 0),
        questions: [{ type: 'A', name: names[rnd(names.length)]! }], answers,
        additionals: rnd(2) ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as dnsPacket.Answer] : [],
      } as dnsPacket.Packet);
      const got = parseAnswer(msg);
      const want = reference(msg);
      assert.deepEqual(got && { rcode: got.rcode, qname: got.qname, ips: got.ips, ttl: got.ttl }, want, JSON.stringify(answers));
    }
  });

  test('corrupted and truncated messages never throw', () => {
    const base = answer('www.example.com', [
      { type: 'CNAME', name: 'www.example.com', ttl: 300, data: 'edge.cdn.net' },
      { type: 'A', name: 'edge.cdn.net', ttl: 30, data: '192.0.2.1' },
    ]);
    let seed = 11;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let i = 0; i < 2000; i++) {
      const m = Buffer.from(base.subarray(0, rnd(base.length + 1)));
      for (let k = rnd(4); k > 0; k--) if (m.length) m[rnd(m.length)] = rnd(256);
      parseAnswer(m);
      parseQuery(m);
    }
  });
});
