// SPDX-License-Identifier: Apache-2.0
/**
 * The DNS proxy and FQDN egress policy through the real redirect (issue 5; reference §5;
 * DESIGN §4), with real peers: dnsmasq in a `kube-system/dns` pod, unbound in front of nsd in a
 * `kube-system/resolver` pod (CNAME chains across zones), dig and small Node clients
 * in a `prod/client` pod, and "world" servers on 93.184.0.0/16, made local to the node
 * namespace (`ip route add local … dev lo`: no route leaves the test's namespaces).
 *
 * Path of a query: client pod → veth → tc bpf_sk_assign (UDP: original destination recorded in
 * mbr_origdst_v1) → `membrane proxy` on 127.0.0.1:15053 → marked socket → dnsmasq; the answer
 * comes back from a transparent socket bound to the server's address, after the learned IPs
 * are in the ipcache.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { IpcacheMap } from '../../src/datapath/ipcache-map.ts';
import { createNode, dig, inNs, privilegedSkip, REPO_ROOT, requirePrivileges, spawnInNs, startDnsmasq, startServer, startUnbound, tcpRequest, type DnsServer, type NodeTopology } from './helpers/index.ts';
import { proxyGet, startAgent, type AgentHandle } from './helpers/agent.ts';

const CLIENT = 'prod/client';
const DNS_IP = '10.200.7.53';
/** unbound in front of nsd: CNAME chains across zones with their own TTLs. */
const RESOLVER_IP = '10.200.7.54';
const POLICY_REF = 'CiliumNetworkPolicy/prod/client-fqdn';

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: client-fqdn
  namespace: prod
spec:
  endpointSelector:
    matchLabels:
      app: client
  egress:
    - toEndpoints:
        - matchLabels:
            k8s:io.kubernetes.pod.namespace: kube-system
            k8s-app: kube-dns
      toPorts:
        - ports:
            - port: "53"
              protocol: ANY
          rules:
            dns:
              - matchPattern: "*.example.com"
              - matchPattern: "*.cdn.example.com"
              - matchPattern: "**.chain.example.com"
    - toFQDNs:
        - matchName: api.example.com
        - matchPattern: "*.cdn.example.com"
        - matchName: short.example.com
        - matchName: idle.example.com
        - matchName: alias.example.com
        - matchName: restart.example.com
        - matchName: www.chain.example.com
      toPorts:
        - ports:
            - port: "8080"
              protocol: TCP
`;

/** Resolves each name over UDP and connects to the answer at once; prints a summary. */
const LOOKUP_CONNECT = `
import dgram from 'node:dgram';
import net from 'node:net';
const dnsPacket = (await import(process.argv[2])).default;
const [server, prefix, count] = process.argv.slice(3);
const sock = dgram.createSocket('udp4');
const pending = new Map();
sock.on('message', (m) => { const d = dnsPacket.decode(m); pending.get(d.id)?.(d); });
const ask = (name) => new Promise((resolve) => {
  const id = (Math.random() * 65536) | 0;
  const t = setTimeout(() => { pending.delete(id); resolve(null); }, 2000);
  pending.set(id, (d) => { clearTimeout(t); pending.delete(id); resolve(d); });
  sock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), 53, server);
});
const connect = (ip) => new Promise((resolve) => {
  const s = net.connect(8080, ip);
  s.setTimeout(2000, () => { s.destroy(); resolve('timeout'); });
  s.on('connect', () => { s.end(); resolve('ok'); });
  s.on('error', (e) => resolve(e.code));
});
const failures = [];
let ok = 0;
for (let i = 0; i < Number(count); i++) {
  const name = prefix.replace('#', String(i));
  const d = await ask(name);
  const ip = d?.answers?.find((a) => a.type === 'A')?.data;
  if (!ip) { failures.push(name + ': ' + (d ? d.rcode : 'no answer')); continue; }
  const r = await connect(ip);
  if (r === 'ok') ok++; else failures.push(name + ' ' + ip + ': ' + r);
}
sock.close();
console.log(JSON.stringify({ ok, failures: failures.slice(0, 10), failed: failures.length }));
`;

/**
 * Sends queries in bursts of 100 from four sockets at once, without waiting for answers (allowed
 * names and a denied one, each id unique per socket), then checks every answer; prints a summary.
 * (Bursts, not all at once: a thousand at once overflow dnsmasq's own receive buffer.)
 */
const BURST = `
import dgram from 'node:dgram';
const dnsPacket = (await import(process.argv[2])).default;
const [server, perSocket] = process.argv.slice(3);
const expected = new Map();
const wrong = [];
let answered = 0;
const socks = [0, 1, 2, 3].map((s) => {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m) => {
    const d = dnsPacket.decode(m);
    const want = expected.get(s + ':' + d.id);
    if (!want) return wrong.push('unexpected id ' + d.id);
    expected.delete(s + ':' + d.id);
    answered++;
    const got = d.rcode === 'NOERROR' ? d.answers.find((a) => a.type === 'A')?.data : d.rcode;
    if (got !== want.answer || d.questions[0]?.name !== want.name) wrong.push(want.name + ': ' + got);
  });
  return sock;
});
await Promise.all(socks.map((sock) => new Promise((r) => sock.bind(0, r))));
for (let i = 0; i < Number(perSocket); i++) {
  if (i % 25 === 0) await new Promise((r) => setTimeout(r, 30));
  for (let s = 0; s < socks.length; s++) {
    const k = (i * socks.length + s) % 1000;
    const denied = i % 10 === 9;
    const name = denied ? 'evil.org' : 'n' + k + '.cdn.example.com';
    const answer = denied ? 'REFUSED' : '93.184.' + (10 + Math.floor(k / 250)) + '.' + ((k % 250) + 1);
    expected.set(s + ':' + i, { name, answer });
    socks[s].send(dnsPacket.encode({ type: 'query', id: i, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), 53, server);
  }
}
const deadline = Date.now() + 10000;
while (expected.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
for (const s of socks) s.close();
console.log(JSON.stringify({ answered, missing: expected.size, wrong: wrong.slice(0, 10), wrongCount: wrong.length }));
`;

/**
 * From the node namespace, two bursts of queries straight to the DNS proxy's listener
 * (127.0.0.1:<port>), 300 ms apart; prints how many got an answer.
 */
const DIRECT_BURST = `
import dgram from 'node:dgram';
const dnsPacket = (await import(process.argv[2])).default;
const [port, count] = process.argv.slice(3).map(Number);
const sock = dgram.createSocket('udp4');
let answers = 0;
sock.on('message', () => answers++);
const q = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'api.example.com' }] });
for (let burst = 0; burst < 2; burst++) {
  for (let i = 0; i < count; i++) sock.send(q, port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, 300));
}
sock.close();
console.log(JSON.stringify({ answers }));
`;

/** Holds one TCP connection open, writing a numbered line every 300 ms and printing the echoes. */
const HOLD_CONN = `
import net from 'node:net';
const [host, port] = process.argv.slice(2);
const s = net.connect(Number(port), host);
let n = 0;
s.on('connect', () => {
  console.log(JSON.stringify({ connected: true }));
  setInterval(() => s.write('tick' + n++ + '\\n'), 300);
});
s.on('data', (d) => { for (const l of d.toString().split('\\n')) if (l) console.log(JSON.stringify({ echo: l })); });
s.on('error', (e) => console.log(JSON.stringify({ error: e.code })));
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cdnIp(i: number): string {
  return `93.184.${10 + Math.floor(i / 250)}.${(i % 250) + 1}`;
}


async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('DNS proxy and toFQDNs (issue 5, reference §5)', { skip: privilegedSkip() }, () => {
  let node: NodeTopology;
  let agent: AgentHandle;
  let dns: DnsServer;
  let resolver: DnsServer;
  let client: string;

  const ipcacheOf = (ip: string): number | undefined => {
    const m = IpcacheMap.open(agent.paths.bpfRoot);
    try {
      const e = m.get({ addr: ip, prefixLen: 32 });
      return e && e.identity >= 0x01000000 ? e.identity : undefined;
    } finally {
      m.close();
    }
  };

  before(async () => {
    requirePrivileges();
    node = await createNode('dns');
    node.writeEndpoints(
      [
        { name: 'client', namespace: 'prod', labels: { app: 'client' }, ips: ['10.200.7.10'] },
        { name: 'auditor', namespace: 'prod', labels: { app: 'client' }, ips: ['10.200.7.11'], audit: true },
        { name: 'dns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' }, ips: [DNS_IP] },
        { name: 'resolver', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' }, ips: [RESOLVER_IP] },
      ],
      { namespaces: [{ name: 'prod' }, { name: 'kube-system' }] },
    );
    await node.up();
    client = node.pod(CLIENT);
    // "world": 93.184.0.0/16 is local to the node namespace, with a TCP echo server on :8080
    const r = await inNs(node.name, 'ip', ['route', 'add', 'local', '93.184.0.0/16', 'dev', 'lo']);
    assert.equal(r.code, 0, r.stderr);
    await startServer(node.name, { tcp: [8080], host: '0.0.0.0' });
    const records = [
      { name: 'api.example.com', a: ['93.184.1.1'], ttl: 60 },
      { name: 'evil.org', a: ['93.184.66.6'], ttl: 60 },
      { name: 'short.example.com', a: ['93.184.2.2'], ttl: 1 },
      { name: 'idle.example.com', a: ['93.184.2.3'], ttl: 1 },
      { name: 'restart.example.com', a: ['93.184.4.4'], ttl: 300 },
      { name: 'alias.example.com', cname: 'edge.example.net', ttl: 30 },
      { name: 'edge.example.net', a: ['93.184.3.3'], ttl: 20 },
    ];
    for (let i = 0; i < 1001; i++) records.push({ name: `n${i}.cdn.example.com`, a: [cdnIp(i)], ttl: 300 });
    dns = await startDnsmasq(node.pod('kube-system/dns'), { listen: DNS_IP, records, ttl: 60 });
    resolver = await startUnbound(node.pod('kube-system/resolver'), {
      listen: RESOLVER_IP,
      authListen: '127.0.0.1',
      zones: [
        { name: 'chain.example.com', records: [{ name: 'www', type: 'CNAME', data: 'www.b.test', ttl: 120 }] },
        { name: 'b.test', records: [{ name: 'www', type: 'CNAME', data: 'edge.c.test', ttl: 60 }] },
        {
          name: 'c.test',
          records: [
            { name: 'edge', type: 'A', data: '93.184.5.5', ttl: 45 },
            { name: 'edge', type: 'A', data: '93.184.5.6', ttl: 45 },
          ],
        },
      ],
    });
    const policyDir = path.join(node.dir, 'policies');
    mkdirSync(policyDir);
    writeFileSync(path.join(policyDir, 'client-fqdn.yaml'), POLICY);
    const config = node.writeFile('membrane.yaml', 'dnsGcInterval: 0.5\n');
    agent = startAgent(node, { policies: policyDir, extraArgs: ['--config', config] });
    await agent.waitReady();
    await waitFor('the DNS proxy with the policy', async () => {
      const st = await proxyGet(agent.paths.stateDir, '/v1/status');
      return st?.dns && Number(st.revision) >= 1 ? true : null;
    });
  });

  after(async () => {
    await dns?.stop();
    await resolver?.stop();
    await node?.cleanup();
  });

  test('an allowed name is answered and its IP reachable; nothing else is (§5.3, §5.4)', async () => {
    assert.equal((await tcpRequest(client, '93.184.1.1', 8080)).result, 'timeout', 'not learned yet: dropped');
    const r = await dig(client, DNS_IP, 'api.example.com');
    assert.equal(r.rcode, 'NOERROR', r.raw);
    assert.deepEqual(
      r.answers.map((a) => a.data),
      ['93.184.1.1'],
    );
    assert.equal((await tcpRequest(client, '93.184.1.1', 8080)).result, 'ok');
    assert.equal((await tcpRequest(client, '93.184.1.1', 9090)).result, 'timeout', 'toFQDNs allows :8080 only');
    assert.equal((await tcpRequest(client, '93.184.66.6', 8080)).result, 'timeout', 'an IP never answered is dropped');
  });

  test('a denied name gets REFUSED and is never forwarded (§5.3 step 5)', async () => {
    const r = await dig(client, DNS_IP, 'evil.org');
    assert.equal(r.rcode, 'REFUSED', r.raw);
    assert.equal(r.answers.length, 0);
    assert.equal((await tcpRequest(client, '93.184.66.6', 8080)).result, 'timeout');
  });

  test('DNS over TCP is proxied the same way', async () => {
    const r = await dig(client, DNS_IP, 'api.example.com', { tcp: true });
    assert.equal(r.rcode, 'NOERROR', r.raw);
    assert.deepEqual(
      r.answers.map((a) => a.data),
      ['93.184.1.1'],
    );
    assert.equal((await dig(client, DNS_IP, 'evil.org', { tcp: true })).rcode, 'REFUSED');
  });

  test('a CNAME chain: the address is learned for the queried name (§5.3 step 7)', async () => {
    const r = await dig(client, DNS_IP, 'alias.example.com');
    assert.equal(r.rcode, 'NOERROR', r.raw);
    assert.ok(r.answers.some((a) => a.type === 'CNAME'), r.raw);
    assert.equal((await tcpRequest(client, '93.184.3.3', 8080)).result, 'ok');
  });

  test('a CNAME chain across zones (unbound + nsd): every address learned, TTL the chain minimum', async () => {
    const r = await dig(client, RESOLVER_IP, 'www.chain.example.com');
    assert.equal(r.rcode, 'NOERROR', r.raw);
    assert.deepEqual(
      r.answers.map((a) => a.type),
      ['CNAME', 'CNAME', 'A', 'A'],
    );
    assert.equal((await tcpRequest(client, '93.184.5.5', 8080)).result, 'ok');
    assert.equal((await tcpRequest(client, '93.184.5.6', 8080)).result, 'ok');
    const flow = await waitFor('the chain flow', async () =>
      (await agent.flows(['--last', '5000'])).find((x) => (x.l7 as Record<string, unknown> | null)?.query === 'www.chain.example.com.'),
    );
    const l7 = flow.l7 as { ips: string[]; ttl: number };
    assert.deepEqual([...l7.ips].sort(), ['93.184.5.5', '93.184.5.6']);
    assert.ok(l7.ttl <= 45 && l7.ttl >= 40, `min TTL of the chain, got ${l7.ttl}`);
  });

  test('1,000 lookups each followed at once by a connect to the new IP: 0 failures', async () => {
    const script = node.writeFile('lookup-connect.mjs', LOOKUP_CONNECT);
    const dnsPacketPath = path.join(REPO_ROOT, 'node_modules', 'dns-packet', 'index.js');
    const r = await inNs(client, process.execPath, [script, dnsPacketPath, DNS_IP, 'n#.cdn.example.com', '1000'], { timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok: number; failed: number; failures: string[] };
    assert.equal(out.failed, 0, JSON.stringify(out.failures));
    assert.equal(out.ok, 1000);
    // the proxy wrote the entries itself (pre-allocated identity), no answer waited for the agent
    const st = (await proxyGet(agent.paths.stateDir, '/v1/status'))!.dns as { fqdn: { written: number; heldTimeouts: number } };
    assert.ok(st.fqdn.written >= 1000, JSON.stringify(st));
    assert.equal(st.fqdn.heldTimeouts, 0, JSON.stringify(st));
  });

  test('bursts of queries from several sockets: each answered right, the waiting ones read in batches', async () => {
    const before = (await proxyGet(agent.paths.stateDir, '/v1/status'))!.dns as { batchedQueries: number; noOrigDst: number };
    const script = node.writeFile('burst.mjs', BURST);
    const dnsPacketPath = path.join(REPO_ROOT, 'node_modules', 'dns-packet', 'index.js');
    const r = await inNs(client, process.execPath, [script, dnsPacketPath, DNS_IP, '250'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { answered: number; missing: number; wrong: string[]; wrongCount: number };
    assert.equal(out.wrongCount, 0, JSON.stringify(out.wrong));
    assert.equal(out.missing, 0, JSON.stringify(out));
    assert.equal(out.answered, 1000);
    const after = (await proxyGet(agent.paths.stateDir, '/v1/status'))!.dns as { batchedQueries: number; noOrigDst: number };
    assert.ok(after.batchedQueries > before.batchedQueries, `no query was read in a batch: ${JSON.stringify(after)}`);
    assert.equal(after.noOrigDst, before.noOrigDst, 'every query had its original destination');
  });

  test('datagrams sent to the listener directly (not redirected) are dropped, in batches too; the listener keeps working', async () => {
    const before = (await proxyGet(agent.paths.stateDir, '/v1/status'))!.dns as { noOrigDst: number; port: number };
    const script = node.writeFile('direct.mjs', DIRECT_BURST);
    const dnsPacketPath = path.join(REPO_ROOT, 'node_modules', 'dns-packet', 'index.js');
    const r = await inNs(node.name, process.execPath, [script, dnsPacketPath, String(before.port), '200'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()!).answers, 0, 'no answer to a datagram the datapath did not redirect');
    const after = (await proxyGet(agent.paths.stateDir, '/v1/status'))!.dns as { noOrigDst: number };
    assert.equal(after.noOrigDst - before.noOrigDst, 400, 'two bursts of 200, each dropped');
    const ok = await dig(client, DNS_IP, 'api.example.com');
    assert.equal(ok.rcode, 'NOERROR', ok.raw);
  });

  test('audit mode forwards a would-be-denied query and reports it AUDIT (DESIGN §2)', async () => {
    const auditor = node.pod('prod/auditor');
    const r = await dig(auditor, DNS_IP, 'evil.org');
    assert.equal(r.rcode, 'NOERROR', r.raw);
    const flow = await waitFor('the audited DNS flow', async () =>
      (await agent.flows(['--last', '5000'])).find((x) => x.verdict === 'AUDIT' && (x.l7 as Record<string, unknown> | null)?.query === 'evil.org.'),
    );
    assert.deepEqual((flow.l7 as Record<string, unknown>).ips, ['93.184.66.6']);
  });

  test('each query is a DNS flow in observe with name, IPs, TTL, rcode, verdict and policy', async () => {
    const flows = await waitFor('DNS flows', async () => {
      const f = (await agent.flows(['--last', '5000'])).filter((x) => (x.l7 as Record<string, unknown> | null)?.type === 'dns');
      const allowed = f.find((x) => (x.l7 as Record<string, unknown>).query === 'api.example.com.');
      const denied = f.find((x) => (x.l7 as Record<string, unknown>).query === 'evil.org.');
      return allowed && denied ? { allowed, denied } : null;
    });
    const a = flows.allowed;
    const al7 = a.l7 as Record<string, unknown>;
    assert.deepEqual(al7.ips, ['93.184.1.1']);
    assert.equal(al7.rcode, 'NOERROR');
    assert.ok(Number(al7.ttl) > 0 && Number(al7.ttl) <= 60);
    assert.equal(a.verdict, 'FORWARDED');
    assert.match(JSON.stringify(a), new RegExp(POLICY_REF.replace(/\//g, '\\/')));
    const d = flows.denied;
    assert.equal((d.l7 as Record<string, unknown>).rcode, 'REFUSED');
    assert.equal(d.verdict, 'DROPPED');
  });

  test('GC: an expired name keeps its IP while a connection uses it; an unused one is removed (§5.5)', async () => {
    assert.equal((await dig(client, DNS_IP, 'short.example.com')).rcode, 'NOERROR');
    assert.equal((await dig(client, DNS_IP, 'idle.example.com')).rcode, 'NOERROR');
    assert.ok(ipcacheOf('93.184.2.2'), 'learned');
    assert.ok(ipcacheOf('93.184.2.3'), 'learned');
    const hold = spawnInNs(client, process.execPath, [node.writeFile('hold.mjs', HOLD_CONN), '93.184.2.2', '8080']);
    await hold.waitFor(/"connected":true/);
    // TTL 1 s, GC every 0.5 s: well past expiry
    await waitFor('the idle IP to be collected', async () => !ipcacheOf('93.184.2.3'), 10_000);
    await sleep(1500);
    assert.ok(ipcacheOf('93.184.2.2'), 'kept: a live connection uses it');
    const last = Math.max(...[...hold.stdout.matchAll(/"echo":"tick(\d+)"/g)].map((m) => Number(m[1])));
    await hold.waitFor(new RegExp(`"echo":"tick${last + 2}"`), { timeoutMs: 3000 });
    assert.equal((await tcpRequest(client, '93.184.2.3', 8080)).result, 'timeout', 'removed: new connections drop');
    await hold.kill();
  });

  test('restarts: the agent killed, names still resolve and learned IPs stay reachable; both restored (§5.6)', async () => {
    assert.equal((await dig(client, DNS_IP, 'api.example.com')).rcode, 'NOERROR');
    await agent.kill9();
    // the proxy alone: a new name is learned and usable while the agent is down
    assert.equal((await dig(client, DNS_IP, 'restart.example.com')).rcode, 'NOERROR');
    assert.equal((await tcpRequest(client, '93.184.4.4', 8080)).result, 'ok');
    assert.equal((await tcpRequest(client, '93.184.1.1', 8080)).result, 'ok');
    agent.restart();
    await agent.waitReady();
    // the agent restored the cache from the proxy: nothing learned was removed
    assert.equal((await tcpRequest(client, '93.184.4.4', 8080)).result, 'ok');
    assert.equal((await tcpRequest(client, '93.184.1.1', 8080)).result, 'ok');
    // the proxy restarted: its cache comes back from the state file
    const pid = Number(readFileSync(path.join(agent.paths.stateDir, 'proxy.pid'), 'utf8').trim());
    process.kill(pid, 'SIGKILL');
    await waitFor('the proxy to exit', async () => {
      try {
        process.kill(pid, 0);
        return null;
      } catch {
        return true;
      }
    });
    await agent.kill9();
    agent.restart();
    await agent.waitReady();
    await waitFor('the proxy again', async () => {
      const st = await proxyGet(agent.paths.stateDir, '/v1/status');
      return st?.dns && Number(st.revision) >= 1 ? true : null;
    });
    const names = (await proxyGet(agent.paths.stateDir, '/v1/fqdn'))?.names as Array<{ name: string; ips: string[] }>;
    assert.ok(names.some((n) => n.name === 'restart.example.com.' && n.ips.includes('93.184.4.4')), JSON.stringify(names));
    assert.equal((await tcpRequest(client, '93.184.4.4', 8080)).result, 'ok');
    assert.equal((await dig(client, DNS_IP, 'api.example.com')).rcode, 'NOERROR');
  });

  test('a toFQDNs selector removed from policy: its learned IPs lose their entries and are dropped', async () => {
    assert.equal((await dig(client, DNS_IP, 'api.example.com')).rcode, 'NOERROR');
    assert.ok(ipcacheOf('93.184.1.1'));
    const before = (await agent.status()).json!.policyRevision;
    writeFileSync(path.join(node.dir, 'policies', 'client-fqdn.yaml'), POLICY.replace('        - matchName: api.example.com\n', ''));
    await agent.waitStatus((st) => st.policyRevision > before, 'the edited policy');
    await waitFor('the entry to go', async () => !ipcacheOf('93.184.1.1'), 10_000);
    assert.equal((await tcpRequest(client, '93.184.1.1', 8080)).result, 'timeout');
    assert.equal((await tcpRequest(client, '93.184.4.4', 8080)).result, 'ok', 'other learned names unaffected');
  });
});
