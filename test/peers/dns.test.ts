// SPDX-License-Identifier: Apache-2.0
/**
 * The real DNS peers of test/e2e/helpers/dns.ts (DESIGN §5) inside a throw-away node namespace:
 * dnsmasq with per-record TTLs over UDP and TCP, unbound in front of nsd resolving a CNAME chain
 * across three zones, dig parsing (including a query nobody answers) and dnsperf's summary.
 * Privileged (network namespaces); no BPF, no agent.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  addLoopbackAddress,
  createNode,
  dig,
  dnsperfAvailable,
  isCi,
  parseDig,
  parseDnsperf,
  privilegedSkip,
  requirePrivileges,
  runDnsperf,
  startDnsmasq,
  startUnbound,
  type NodeTopology,
} from '../e2e/helpers/index.ts';

const DNSMASQ = '10.53.0.1';
const UNBOUND = '10.53.0.2';
const NSD = '10.53.0.3';
const V6 = 'fd00:53::1';

// Outputs recorded from dig 9.18.49 and dnsperf 2.10.0 (Debian 12); these parse without privileges.
const DIG_CHAIN = `;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 61371
;; flags: qr rd ra; QUERY: 1, ANSWER: 3, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; ANSWER SECTION:
www.a.test.		120	IN	CNAME	www.b.test.
www.b.test.		60	IN	CNAME	edge.c.test.
edge.c.test.		45	IN	A	192.0.2.50

;; Query time: 3 msec
;; SERVER: 10.53.0.2#53(10.53.0.2) (UDP)
`;
const DIG_UDP_REFUSED = `;; communications error to 127.0.0.1#5398: connection refused

; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 5398 x.test
; (1 server found)
;; global options: +cmd
;; no servers could be reached
`;
const DNSPERF_UDP = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 10.53.0.1 -p 5353 -d q -l 1 -Q 20 -v
[Status] Sending queries (to 10.53.0.1:5353)
> NOERROR a.test A 0.000171
> NXDOMAIN nx.test A 0.000175
> NOERROR a.test AAAA 0.000222
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         3
  Queries completed:    3 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 2 (66.67%), NXDOMAIN 1 (33.33%)
  Average packet size:  request 24, response 29
  Run time (s):         1.001660
  Queries per second:   2.995026

  Average Latency (s):  0.000189 (min 0.000171, max 0.000222)
  Latency StdDev (s):   0.000026

`;

test('parseDig: sections, TTLs, flags; an ICMP-refused UDP query is ERROR, not TIMEOUT', () => {
  const r = parseDig(DIG_CHAIN, 0);
  assert.equal(r.rcode, 'NOERROR');
  assert.deepEqual(r.flags, ['qr', 'rd', 'ra']);
  assert.equal(r.queryTimeMs, 3);
  assert.deepEqual(r.answers, [
    { name: 'www.a.test', ttl: 120, class: 'IN', type: 'CNAME', data: 'www.b.test' },
    { name: 'www.b.test', ttl: 60, class: 'IN', type: 'CNAME', data: 'edge.c.test' },
    { name: 'edge.c.test', ttl: 45, class: 'IN', type: 'A', data: '192.0.2.50' },
  ]);
  assert.equal(r.error, undefined);
  const refused = parseDig(DIG_UDP_REFUSED, 9);
  assert.equal(refused.rcode, 'ERROR');
  assert.match(refused.error!, /connection refused/);
  assert.equal(parseDig(';; communications error to 10.0.0.1#53: timed out\n;; no servers could be reached\n', 9).rcode, 'TIMEOUT');
});

test('parseDnsperf: summary figures and percentiles from -v lines', () => {
  const r = parseDnsperf(DNSPERF_UDP, true);
  assert.equal(r.sent, 3);
  assert.equal(r.completed, 3);
  assert.equal(r.lost, 0);
  assert.deepEqual(r.rcodes, { NOERROR: 2, NXDOMAIN: 1 });
  assert.equal(r.qps, 2.995026);
  assert.ok(Math.abs(r.latencyAvgMs - 0.189) < 1e-9 && Math.abs(r.latencyMaxMs - 0.222) < 1e-9);
  assert.ok(Math.abs(r.latencyP50Ms! - 0.175) < 1e-9 && Math.abs(r.latencyP99Ms! - 0.222) < 1e-9);
  assert.doesNotMatch(r.raw, /^> /m);
  assert.throws(() => parseDnsperf('Error: could not open file'), /no statistics/);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('DNS peers (dnsmasq, unbound + nsd, dig, dnsperf)', { skip: privilegedSkip() }, () => {
  let node: NodeTopology | undefined;

  before(async () => {
    if (!requirePrivileges()) return;
    node = await createNode('dns');
    for (const a of [DNSMASQ, UNBOUND, NSD, V6]) await addLoopbackAddress(node.name, a);
  });
  after(() => node?.cleanup());

  test('dnsmasq answers A, AAAA and CNAME chains with the configured TTLs over UDP and TCP', async () => {
    const ns = node!.name;
    const dns = await startDnsmasq(ns, {
      listen: DNSMASQ,
      port: 5353,
      ttl: 33,
      logQueries: true,
      localDomains: ['example.test'],
      records: [
        { name: 'api.example.test', a: ['192.0.2.10', '192.0.2.11'], aaaa: ['2001:db8::10'], ttl: 120 },
        { name: 'plain.example.test', a: ['192.0.2.20'] },
        { name: 'mid.example.test', cname: 'api.example.test', ttl: 55 },
        { name: 'www.example.test', cname: 'mid.example.test', ttl: 77 },
      ],
    });
    assert.ok(alive(dns.pid));
    for (const tcp of [false, true]) {
      const a = await dig(ns, DNSMASQ, 'api.example.test', { port: 5353, tcp });
      assert.equal(a.rcode, 'NOERROR', a.raw);
      assert.deepEqual(
        a.answers.map((r) => [r.name, r.ttl, r.type, r.data]).sort(),
        [
          ['api.example.test', 120, 'A', '192.0.2.10'],
          ['api.example.test', 120, 'A', '192.0.2.11'],
        ],
      );
      assert.ok(a.flags.includes('qr') && a.flags.includes('aa'), a.flags.join(' '));

      const aaaa = await dig(ns, DNSMASQ, 'api.example.test', { port: 5353, tcp, type: 'AAAA' });
      assert.deepEqual(aaaa.answers.map((r) => [r.ttl, r.type, r.data]), [[120, 'AAAA', '2001:db8::10']]);

      const plain = await dig(ns, DNSMASQ, 'plain.example.test', { port: 5353, tcp });
      assert.deepEqual(plain.answers.map((r) => [r.ttl, r.data]), [[33, '192.0.2.20']], 'records without a TTL get --local-ttl');

      const chain = await dig(ns, DNSMASQ, 'www.example.test', { port: 5353, tcp });
      assert.equal(chain.rcode, 'NOERROR');
      assert.deepEqual(
        chain.answers.filter((r) => r.type === 'CNAME').map((r) => [r.name, r.ttl, r.data]),
        [
          ['www.example.test', 77, 'mid.example.test'],
          ['mid.example.test', 55, 'api.example.test'],
        ],
      );
      assert.deepEqual(chain.answers.filter((r) => r.type === 'A').map((r) => r.ttl), [120, 120]);
      assert.equal(Math.min(...chain.answers.map((r) => r.ttl)), 55);

      assert.equal((await dig(ns, DNSMASQ, 'nope.example.test', { port: 5353, tcp })).rcode, 'NXDOMAIN');
      assert.equal((await dig(ns, DNSMASQ, 'elsewhere.test', { port: 5353, tcp })).rcode, 'REFUSED');
    }
    // local data is not cached: the same TTL every time
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual((await dig(ns, DNSMASQ, 'api.example.test', { port: 5353 })).answers.map((r) => r.ttl), [120, 120]);

    const log = dns.queryLog();
    assert.ok(log.some((q) => q.name === 'www.example.test' && q.type === 'A' && q.from === DNSMASQ), JSON.stringify(log));
    assert.ok(dns.queries() >= 13, `queries ${dns.queries()}`);
    await dns.stop();
    assert.equal(alive(dns.pid), false);
    assert.equal((await dig(ns, DNSMASQ, 'api.example.test', { port: 5353, timeoutMs: 1000 })).rcode !== 'NOERROR', true);
  });

  test('dnsmasq without a TTL answers with TTL 0; IPv6 listen address', async () => {
    const ns = node!.name;
    const dns = await startDnsmasq(ns, { listen: V6, port: 53, records: [{ name: 'zero.test', a: ['192.0.2.30'] }] });
    const r = await dig(ns, V6, 'zero.test');
    assert.deepEqual(r.answers.map((a) => [a.ttl, a.data]), [[0, '192.0.2.30']]);
    assert.throws(() => dns.queries(), /logQueries/);
    await dns.stop();
  });

  test('dig reports TIMEOUT when nothing answers and ERROR when TCP is refused', async () => {
    const ns = node!.name;
    // a silent UDP peer: traffic that is dropped (here: no reply at all) must look like a timeout
    const silent = node!.spawn(process.execPath, ['-e', `require('node:dgram').createSocket('udp4').bind(5399, '${DNSMASQ}', () => console.log('ready'))`]);
    await silent.waitFor(/ready/);
    const t0 = Date.now();
    const r = await dig(ns, DNSMASQ, 'x.test', { port: 5399, timeoutMs: 1000 });
    assert.equal(r.rcode, 'TIMEOUT', r.raw);
    assert.match(r.error ?? '', /timed out/);
    assert.ok(Date.now() - t0 < 5000);
    await silent.kill();
    const refused = await dig(ns, DNSMASQ, 'x.test', { port: 5399, tcp: true });
    assert.equal(refused.rcode, 'ERROR', refused.raw);
    assert.match(refused.error ?? '', /refused/);
  });

  test('unbound in front of nsd returns a CNAME chain across zones with each TTL', async () => {
    const ns = node!.name;
    const dns = await startUnbound(ns, {
      listen: UNBOUND,
      port: 53,
      authListen: NSD,
      authPort: 5300,
      logQueries: true,
      zones: [
        { name: 'a.test', records: [{ name: 'www', type: 'CNAME', data: 'www.b.test', ttl: 120 }] },
        { name: 'b.test', ttl: 200, records: [{ name: 'www.b.test', type: 'CNAME', data: 'edge.c.test', ttl: 60 }] },
        {
          name: 'c.test',
          records: [
            { name: 'edge', type: 'A', data: '192.0.2.50', ttl: 45 },
            { name: 'edge', type: 'A', data: '192.0.2.51', ttl: 45 },
            { name: 'edge', type: 'AAAA', data: '2001:db8::50', ttl: 90 },
            { name: '@', type: 'TXT', data: '"zone c"' },
          ],
        },
      ],
    });
    assert.ok(alive(dns.pid) && alive(dns.nsd.pid));
    assert.equal(dns.nsd.address, NSD);

    // unbound answers from its cache, whose TTLs count down in whole seconds: a record put in the
    // cache a moment before a second boundary shows one less, hence ttlOf(…) tolerating 1 s.
    const ttlOf = (got: number, configured: number) => (got === configured - 1 ? configured : got);
    const r = await dig(ns, UNBOUND, 'www.a.test');
    assert.equal(r.rcode, 'NOERROR', r.raw);
    assert.ok(r.flags.includes('ra'), 'a recursive answer');
    const configured: Record<string, number> = { 'www.a.test': 120, 'www.b.test': 60, 'edge.c.test': 45 };
    assert.deepEqual(
      r.answers.map((a) => [a.name, ttlOf(a.ttl, configured[a.name]!), a.type, a.data]).sort(),
      [
        ['edge.c.test', 45, 'A', '192.0.2.50'],
        ['edge.c.test', 45, 'A', '192.0.2.51'],
        ['www.a.test', 120, 'CNAME', 'www.b.test'],
        ['www.b.test', 60, 'CNAME', 'edge.c.test'],
      ],
      r.raw,
    );
    assert.equal(ttlOf(Math.min(...r.answers.map((a) => a.ttl)), 45), 45, 'the chain lives as long as its shortest record');

    const six = await dig(ns, UNBOUND, 'www.a.test', { type: 'AAAA', tcp: true });
    assert.deepEqual(
      six.answers.map((a, i) => [a.type, ttlOf(a.ttl, [120, 60, 90][i]!)]),
      [['CNAME', 120], ['CNAME', 60], ['AAAA', 90]],
      six.raw,
    );

    const txt = await dig(ns, UNBOUND, 'c.test', { type: 'TXT' });
    assert.deepEqual(txt.answers.map((a) => [a.ttl, a.data]), [[300, '"zone c"']], 'zone default TTL');

    const nx = await dig(ns, UNBOUND, 'nope.a.test');
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.equal(nx.authority[0]?.type, 'SOA');

    // nsd directly: authoritative, no recursion
    const auth = await dig(ns, NSD, 'www.a.test', { port: 5300, recurse: false });
    assert.ok(auth.flags.includes('aa'));
    assert.equal(auth.answers[0]?.data, 'www.b.test');

    // unbound's cache counts TTLs down
    await new Promise((res) => setTimeout(res, 1100));
    const again = await dig(ns, UNBOUND, 'www.a.test');
    const ttl = (name: string) => again.answers.find((a) => a.name === name)!.ttl;
    assert.ok(ttl('www.a.test') < 120 && ttl('www.a.test') >= 117, again.raw);
    assert.ok(ttl('edge.c.test') < 45, again.raw);

    assert.ok(dns.queryLog().some((q) => q.name === 'www.a.test' && q.type === 'A'), JSON.stringify(dns.queryLog()));
    const nsdPid = dns.nsd.pid;
    await dns.stop();
    assert.equal(alive(dns.pid), false);
    assert.equal(alive(nsdPid), false);
  });

  test('dnsperf for 1 s against dnsmasq: the wrapper parses qps and latency', async (t) => {
    if (!dnsperfAvailable()) {
      if (isCi()) assert.fail('dnsperf is not installed (.ci/run installs it)');
      t.skip('dnsperf is not installed (Debian: dnsperf)');
      return;
    }
    const ns = node!.name;
    const dns = await startDnsmasq(ns, {
      listen: DNSMASQ,
      port: 5354,
      localDomains: ['perf.test'],
      records: [{ name: 'a.perf.test', a: ['192.0.2.1'], aaaa: ['2001:db8::1'], ttl: 60 }],
    });
    const r = await runDnsperf(ns, { server: DNSMASQ, port: 5354, names: ['a.perf.test', 'a.perf.test AAAA', 'nx.perf.test'], durationS: 1 });
    assert.ok(r.qps > 100, `qps ${r.qps}`);
    assert.ok(r.completed > 100 && r.completed <= r.sent);
    assert.ok(r.runTimeS >= 0.9 && r.runTimeS < 3, `run time ${r.runTimeS}`);
    assert.ok(r.rcodes.NOERROR! > 0 && r.rcodes.NXDOMAIN! > 0, JSON.stringify(r.rcodes));
    assert.ok(r.latencyAvgMs > 0 && r.latencyMinMs <= r.latencyAvgMs && r.latencyAvgMs <= r.latencyMaxMs);
    assert.equal(r.latencyP99Ms, undefined);

    const p = await runDnsperf(ns, { server: DNSMASQ, port: 5354, names: ['a.perf.test'], durationS: 1, qps: 500, percentiles: true });
    assert.ok(p.completed > 200 && p.completed <= 600, `completed ${p.completed}`);
    assert.ok(p.latencyP50Ms! > 0 && p.latencyP50Ms! <= p.latencyP99Ms! && p.latencyP99Ms! <= p.latencyMaxMs + 1e-9, JSON.stringify(p));
    assert.doesNotMatch(p.raw, /^> /m);

    const tcp = await runDnsperf(ns, { server: DNSMASQ, port: 5354, names: ['a.perf.test'], durationS: 1, tcp: true, qps: 200 });
    assert.ok(tcp.completed > 50, tcp.raw);
    assert.equal(typeof tcp.reconnections, 'number');
    await dns.stop();
  });
});
