// SPDX-License-Identifier: Apache-2.0
/**
 * DNS benchmark (DESIGN §6, row "DNS"; issue 5): dnsperf through our DNS proxy to dnsmasq
 * ("ours") against dnsperf straight to the same dnsmasq ("direct"), in one run, in interleaved
 * rounds.
 *
 * Topology (test/e2e/helpers, real `membrane endpoint up`; nothing touches the machine's
 * namespace): a node namespace and two pods,
 *   client  10.200.8.10  dnsperf
 *   dns     10.200.8.53  dnsmasq on :53 and another on :5353, both serving the same hosts file
 *                        (N names *.bench.example.com → distinct addresses in 198.18.0.0/15), TTL 300
 * `membrane agent` (standalone; it starts `membrane proxy`) enforces one policy on `client`:
 *   :53 (ANY) to dns with `dns: [{matchPattern: "*.bench.example.com"}]`: redirected to our DNS
 *        proxy → "ours";
 *   :5353/UDP to dns, L3/L4 only: allowed by the datapath, no redirect → "direct";
 *   toFQDNs `*.bench.example.com` on :443, so every answer's address is learned: the proxy writes
 *        its ipcache entry before releasing the answer.
 * The "floor" (bench/lib/dns-floor.mjs), in the client pod on 127.0.0.1:5300 → dns:5353: a
 *   node:dgram forwarder that does nothing but forward (no redirect, policy, learning, map writes
 *   or flow records): what a DNS proxy in Node.js pays per query on this machine before its work.
 * CPUs (DESIGN §6): the proxy, the agent and the floor are pinned to CPU 1 (`taskset -a -p -c 1`);
 * this process, and so dnsperf and dnsmasq, to CPU 0.
 *
 * Measurements, interleaved (ours, direct, ours, direct …):
 *   1. throughput: `dnsperf -c 8 -q 256 -l D` unpaced over 1,000 names already learned
 *      (answers cached in the proxy's FQDN cache: no new ipcache entries), queries/s;
 *   2. tail latency at 5,000 queries/s: `dnsperf -Q 5000 -v`, every round over names never
 *      asked before, so every answer on ours includes learning its address and writing the
 *      ipcache entry (counted: the proxy's `written` counter); p99 from dnsperf's per-query
 *      lines; added p99 = ours − direct (same names, direct after ours);
 *   3. the same over the 1,000 names already learned (no map update: the steady state), and
 *      through the floor; CPU per query of ours and of the floor at that rate.
 * Throughput and the rate runs over learned names are measured for the floor too.
 * Before measuring: an allowed name is answered through ours and its address lands in the
 * ipcache with an FQDN identity; a name outside the rule is REFUSED through ours and answered
 * direct (so the proxy is on the path). Lost queries are reported.
 *
 * Targets: ours ≥ 20,000 queries/s unpaced; added p99 ≤ 1 ms at 5,000 queries/s.
 *
 * Run (root): node --import tsx bench/dns.ts [--json] [--rounds N (5)] [--duration S (5)]
 *             [--lat-duration S (4)] [--rate QPS (5000)] [--strict]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IpcacheMap } from '../src/datapath/ipcache-map.ts';
import { createNode, dig, privilegeProblem, runDnsperf, spawnInNs, waitForDns, which, type DnsperfResult, type NodeTopology, type NsProcess } from '../test/e2e/helpers/index.ts';
import { proxyGet, startAgent, type AgentHandle } from '../test/e2e/helpers/agent.ts';
import { cpuSeconds, median, pin, ratioStats, round2, round3, sleep } from './lib/stats.ts';

const NS = 'bench';
const CLIENT = { name: 'client', ip: '10.200.8.10' };
const DNS = { name: 'dns', ip: '10.200.8.53' };
const PORT_OURS = 53;
const PORT_DIRECT = 5353;
const FLOOR = { ip: '127.0.0.1', port: 5300 };
const FLOOR_PEER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'dns-floor.mjs');
const HOT_NAMES = 1000;
const LOAD_CPU = 0;
const SUT_CPU = 1;
const TARGET_QPS = 20000;
const TARGET_ADDED_P99_MS = 1;
const BLOCKED = 'blocked.bench.test';

interface Options {
  json: boolean;
  strict: boolean;
  rounds: number;
  duration: number;
  latDuration: number;
  rate: number;
}

function log(msg: string): void {
  process.stderr.write(`dns-bench: ${msg}\n`);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { json: false, strict: false, rounds: 5, duration: 5, latDuration: 4, rate: 5000 };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`${flag} needs an integer ≥ ${min} (got ${v ?? 'nothing'})`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') o.json = true;
    else if (a === '--strict') o.strict = true;
    else if (a === '--rounds') o.rounds = int(a, argv[++i], 1);
    else if (a === '--duration') o.duration = int(a, argv[++i], 1);
    else if (a === '--lat-duration') o.latDuration = int(a, argv[++i], 1);
    else if (a === '--rate') o.rate = int(a, argv[++i], 100);
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node --import tsx bench/dns.ts [--json] [--rounds N] [--duration S] [--lat-duration S] [--rate QPS] [--strict]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

/** The k-th benchmark address: 198.18.0.1, 198.18.0.2, … (198.18.0.0/15 holds 131,070). */
function addr(k: number): string {
  const n = k + 1;
  return `198.${18 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

const hotName = (i: number) => `h${i}.bench.example.com`;
const latName = (round: number, i: number) => `l${round}-${i}.bench.example.com`;

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: client-dns
  namespace: ${NS}
spec:
  endpointSelector:
    matchLabels:
      app: client
  egress:
    - toEndpoints:
        - matchLabels:
            app: dns
      toPorts:
        - ports:
            - port: "${PORT_OURS}"
              protocol: ANY
          rules:
            dns:
              - matchPattern: "*.bench.example.com"
    - toEndpoints:
        - matchLabels:
            app: dns
      toPorts:
        - ports:
            - port: "${PORT_DIRECT}"
              protocol: UDP
    - toFQDNs:
        - matchPattern: "*.bench.example.com"
      toPorts:
        - ports:
            - port: "443"
              protocol: TCP
`;

const proxyStatus = (stateDir: string) => proxyGet(stateDir, '/v1/status');

type DnsStatus = { loop?: unknown; fqdn: { written: number; heldTimeouts: number }; servfail: number; noOrigDst: number };

async function dnsStatus(stateDir: string): Promise<DnsStatus> {
  const s = await proxyStatus(stateDir);
  if (!s?.dns) throw new Error(`the DNS proxy does not answer: ${JSON.stringify(s)}`);
  return { ...(s.dns as DnsStatus), loop: s.eventLoopDelayMs };
}

async function startDnsmasq(node: NodeTopology, pod: string, hosts: string, port: number): Promise<NsProcess> {
  const dir = path.join(node.dir, `dnsmasq-${port}`);
  mkdirSync(dir, { recursive: true });
  const p = spawnInNs(pod, 'dnsmasq', [
    '-k',
    '-C',
    '/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--bind-interfaces',
    `--listen-address=${DNS.ip}`,
    `--port=${port}`,
    `--addn-hosts=${hosts}`,
    '--local-ttl=300',
    '--user=root',
    `--pid-file=${path.join(dir, 'pid')}`,
  ]);
  node.onCleanup(async () => void (await p.kill('SIGTERM', 2000)));
  await waitForDns(pod, DNS.ip, port, { name: hotName(0), type: 'A' });
  // dnsmasq answers REFUSED (EDE "Not Ready") while it still reads a large hosts file
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await dig(pod, DNS.ip, hotName(0), { port });
    if (r.rcode === 'NOERROR') return p;
    if (Date.now() > deadline) throw new Error(`dnsmasq on :${port} never answered ${hotName(0)}: ${r.raw}`);
    await sleep(200);
  }
}

function table(title: string, rows: { ours: number[]; direct: number[]; floor?: number[] }, fmt: (x: number) => string): string[] {
  const w = 30;
  const lines = [title, `${'configuration'.padEnd(w)}${rows.ours.map((_, i) => `r${i + 1}`.padStart(10)).join('')}${'median'.padStart(11)}`];
  for (const [name, xs] of [
    ['ours (DNS proxy → dnsmasq)', rows.ours],
    ['direct (dnsmasq)', rows.direct],
    ['floor (node:dgram forwarder)', rows.floor ?? []],
  ] as const) {
    if (!xs.length) continue;
    lines.push(`${name.padEnd(w)}${xs.map((x) => fmt(x).padStart(10)).join('')}${fmt(median(xs)).padStart(11)}`);
  }
  return lines;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    process.stderr.write(`dns-bench: needs root (network namespaces, BPF, the agent and its DNS proxy); running as uid ${process.getuid?.()}\n`);
    return 2;
  }
  const problem = privilegeProblem();
  if (problem) {
    process.stderr.write(`dns-bench: ${problem}\n`);
    return 2;
  }
  const missing = ['taskset', 'dnsmasq', 'dnsperf', 'dig'].filter((t) => !which(t));
  if (missing.length) {
    process.stderr.write(`dns-bench: missing ${missing.join(', ')} (Debian: util-linux, dnsmasq-base, dnsperf, dnsutils)\n`);
    return 2;
  }
  if (o.rounds < 5) log(`warning: ${o.rounds} rounds (DESIGN §6 asks for at least 5)`);
  const latPerRound = o.rate * o.latDuration;
  const totalNames = HOT_NAMES + latPerRound * (o.rounds + 1);
  if (totalNames > 131000) throw new Error(`too many names (${totalNames}): lower --rate, --lat-duration or --rounds`);
  await pin(process.pid, LOAD_CPU, 'this benchmark (dnsperf and dnsmasq inherit it)');

  let node: NodeTopology | undefined;
  let agent: AgentHandle | undefined;
  const started = performance.now();
  try {
    node = await createNode('dnsb');
    node.writeEndpoints(
      [
        { name: CLIENT.name, namespace: NS, labels: { app: 'client' }, ips: [CLIENT.ip] },
        { name: DNS.name, namespace: NS, labels: { app: 'dns' }, ips: [DNS.ip] },
      ],
      { namespaces: [{ name: NS }] },
    );
    await node.up();
    const clientPod = node.pod(`${NS}/${CLIENT.name}`);
    const dnsPod = node.pod(`${NS}/${DNS.name}`);
    // names: hot ones, then a fresh slice per latency round (plus one spare for the warm-up)
    const lines = [`${addr(131060)} ${BLOCKED}`];
    for (let i = 0; i < HOT_NAMES; i++) lines.push(`${addr(i)} ${hotName(i)}`);
    for (let r = 0; r <= o.rounds; r++) for (let i = 0; i < latPerRound; i++) lines.push(`${addr(HOT_NAMES + r * latPerRound + i)} ${latName(r, i)}`);
    const hosts = node.writeFile('bench.hosts', lines.join('\n') + '\n');
    const hotFile = node.writeFile('hot.queries', Array.from({ length: HOT_NAMES }, (_, i) => `${hotName(i)} A`).join('\n') + '\n');
    const latFile = (r: number) => node!.writeFile(`lat${r}.queries`, Array.from({ length: latPerRound }, (_, i) => `${latName(r, i)} A`).join('\n') + '\n');
    await startDnsmasq(node, dnsPod, hosts, PORT_OURS);
    await startDnsmasq(node, dnsPod, hosts, PORT_DIRECT);
    const policyDir = path.join(node.dir, 'policies');
    mkdirSync(policyDir);
    writeFileSync(path.join(policyDir, 'client-dns.yaml'), POLICY);
    agent = startAgent(node, { policies: policyDir });
    await agent.waitReady(30_000);
    const stateDir = agent.paths.stateDir;
    const deadline = Date.now() + 15_000;
    for (;;) {
      const st = await proxyStatus(stateDir);
      if (st?.dns && Number(st.revision) >= 1) break; // listening, with the agent's policy
      if (Date.now() > deadline) throw new Error(`no DNS proxy:\n${readFileSync(path.join(stateDir, 'proxy.log'), 'utf8').slice(-3000)}`);
      await sleep(100);
    }
    const proxyPid = Number(readFileSync(path.join(stateDir, 'proxy.pid'), 'utf8').trim());
    await pin(proxyPid, SUT_CPU, 'membrane proxy');
    await pin(agent.proc.pid, SUT_CPU, 'membrane agent');
    const floor = spawnInNs(clientPod, 'taskset', ['-c', String(SUT_CPU), process.execPath, FLOOR_PEER, FLOOR.ip, String(FLOOR.port), DNS.ip, String(PORT_DIRECT)]);
    node.onCleanup(async () => void (await floor.kill('SIGTERM', 3000)));
    await floor.waitFor(/"ready"/, { timeoutMs: 10_000 });
    log(`node ${node.name}; agent pid ${agent.proc.pid}, proxy pid ${proxyPid} on CPU ${SUT_CPU}; dnsperf and dnsmasq on CPU ${LOAD_CPU}`);

    // the paths are what they claim to be
    const ok = await dig(clientPod, DNS.ip, hotName(0), { port: PORT_OURS });
    if (ok.rcode !== 'NOERROR' || ok.answers[0]?.data !== addr(0)) throw new Error(`ours: ${hotName(0)} → ${ok.rcode} ${ok.raw}`);
    const ipc = IpcacheMap.open(agent.paths.bpfRoot);
    const learned = ipc.get({ addr: addr(0), prefixLen: 32 });
    ipc.close();
    if (!learned || learned.identity < 0x01000000) throw new Error(`ours: ${addr(0)} not in the ipcache with an FQDN identity (${JSON.stringify(learned)})`);
    const refused = await dig(clientPod, DNS.ip, BLOCKED, { port: PORT_OURS });
    if (refused.rcode !== 'REFUSED') throw new Error(`ours: ${BLOCKED} → ${refused.rcode}, want REFUSED (is the proxy on the path?)`);
    const direct = await dig(clientPod, DNS.ip, BLOCKED, { port: PORT_DIRECT });
    if (direct.rcode !== 'NOERROR') throw new Error(`direct: ${BLOCKED} → ${direct.rcode}, want NOERROR`);
    log(`paths checked: ours answers ${hotName(0)} and writes ${addr(0)} → identity ${learned.identity}; ours REFUSES ${BLOCKED}, direct answers it`);

    // warm-up: every hot name learned once; the latency slice for round 0 run once
    const perf = (port: number, extra: Partial<Parameters<typeof runDnsperf>[1]>) =>
      runDnsperf(clientPod, { server: DNS.ip, port, durationS: o.duration, queriesFile: hotFile, clients: 8, outstanding: 256, timeoutS: 2, ...extra });
    await perf(PORT_OURS, { durationS: 2 });
    await perf(PORT_DIRECT, { durationS: 1 });
    await perf(FLOOR.port, { server: FLOOR.ip, durationS: 1 });
    await runDnsperf(clientPod, { server: DNS.ip, port: PORT_OURS, queriesFile: latFile(0), durationS: 1, qps: o.rate, timeoutS: 2 });

    const qps = { ours: [] as number[], direct: [] as number[], floor: [] as number[] };
    const lost = { ours: [] as number[], direct: [] as number[], floor: [] as number[] };
    const cpu = { proxy: [] as number[], agent: [] as number[] };
    const p99 = { ours: [] as number[], direct: [] as number[] };
    const p50 = { ours: [] as number[], direct: [] as number[] };
    const written: number[] = [];
    const p99Hot = { ours: [] as number[], direct: [] as number[], floor: [] as number[] };
    /** CPU µs per query at the fixed rate over learned names */
    const usPerQuery = { ours: [] as number[], floor: [] as number[] };
    const latLost = { ours: [] as number[], direct: [] as number[] };
    for (let r = 1; r <= o.rounds; r++) {
      // 1. throughput
      const c0 = { proxy: cpuSeconds(proxyPid), agent: cpuSeconds(agent.proc.pid) };
      const t0 = performance.now();
      const a: DnsperfResult = await perf(PORT_OURS, {});
      const secs = (performance.now() - t0) / 1000;
      cpu.proxy.push((cpuSeconds(proxyPid) - c0.proxy) / secs);
      cpu.agent.push((cpuSeconds(agent.proc.pid) - c0.agent) / secs);
      const b: DnsperfResult = await perf(PORT_DIRECT, {});
      const f: DnsperfResult = await perf(FLOOR.port, { server: FLOOR.ip });
      qps.ours.push(a.qps);
      qps.direct.push(b.qps);
      qps.floor.push(f.qps);
      lost.ours.push(a.lost);
      lost.direct.push(b.lost);
      lost.floor.push(f.lost);
      // 2. latency at a fixed rate, over names never asked before
      const file = latFile(r);
      const w0 = (await dnsStatus(stateDir)).fqdn.written;
      const la = await runDnsperf(clientPod, { server: DNS.ip, port: PORT_OURS, queriesFile: file, durationS: o.latDuration, qps: o.rate, percentiles: true, timeoutS: 2 });
      written.push((await dnsStatus(stateDir)).fqdn.written - w0);
      const lb = await runDnsperf(clientPod, { server: DNS.ip, port: PORT_DIRECT, queriesFile: file, durationS: o.latDuration, qps: o.rate, percentiles: true, timeoutS: 2 });
      const paced = async (server: string, port: number, pid?: number) => {
        const c = pid === undefined ? 0 : cpuSeconds(pid);
        const res = await runDnsperf(clientPod, { server, port, queriesFile: hotFile, durationS: o.latDuration, qps: o.rate, percentiles: true, timeoutS: 2 });
        return { res, us: pid === undefined ? 0 : ((cpuSeconds(pid) - c) * 1e6) / (res.qps * o.latDuration) };
      };
      const ha = await paced(DNS.ip, PORT_OURS, proxyPid);
      const hb = await paced(DNS.ip, PORT_DIRECT);
      const hf = await paced(FLOOR.ip, FLOOR.port, floor.pid);
      p99Hot.ours.push(ha.res.latencyP99Ms!);
      p99Hot.direct.push(hb.res.latencyP99Ms!);
      p99Hot.floor.push(hf.res.latencyP99Ms!);
      usPerQuery.ours.push(ha.us);
      usPerQuery.floor.push(hf.us);
      p99.ours.push(la.latencyP99Ms!);
      p99.direct.push(lb.latencyP99Ms!);
      p50.ours.push(la.latencyP50Ms!);
      p50.direct.push(lb.latencyP50Ms!);
      latLost.ours.push(la.lost);
      latLost.direct.push(lb.lost);
      log(
        `round ${r}/${o.rounds}: ours ${Math.round(a.qps)} q/s (lost ${a.lost}), direct ${Math.round(b.qps)} q/s; p99 at ${o.rate}/s ours ${round3(la.latencyP99Ms!)} ms, direct ${round3(lb.latencyP99Ms!)} ms; ipcache writes ${written.at(-1)}`,
      );
    }
    const st = await dnsStatus(stateDir);
    const added = p99.ours.map((x, i) => x - p99.direct[i]!);
    const addedHot = p99Hot.ours.map((x, i) => x - p99Hot.direct[i]!);
    const addedFloor = p99Hot.floor.map((x, i) => x - p99Hot.direct[i]!);
    const ratio = ratioStats(qps.ours, qps.direct);
    const oursQps = median(qps.ours);
    const addedP99 = median(added);
    const verdicts = [
      { line: `ours ${Math.round(oursQps)} queries/s unpaced (target ≥ ${TARGET_QPS})`, pass: oursQps >= TARGET_QPS },
      { line: `added p99 at ${o.rate} queries/s, every answer a new name (map update in each) ${round3(addedP99)} ms (target ≤ ${TARGET_ADDED_P99_MS} ms)`, pass: addedP99 <= TARGET_ADDED_P99_MS },
      { line: `added p99 at ${o.rate} queries/s, names already learned ${round3(median(addedHot))} ms (target ≤ ${TARGET_ADDED_P99_MS} ms)`, pass: median(addedHot) <= TARGET_ADDED_P99_MS },
    ];
    const text = [
      `DNS: dnsperf through our DNS proxy vs direct to dnsmasq (bench/dns.ts), ${o.rounds} rounds interleaved, ${Math.round((performance.now() - started) / 1000)} s`,
      '',
      ...table(`throughput: dnsperf -c 8 -q 256 -l ${o.duration}, ${HOT_NAMES} names already learned, unpaced; queries/s`, qps, (x) => String(Math.round(x))),
      `ours/direct ${round2(ratio.ratio)}× (min ${round2(ratio.min)}, max ${round2(ratio.max)}); floor ${Math.round(median(qps.floor))} q/s (ours/floor ${round2(ratioStats(qps.ours, qps.floor).ratio)}×); lost: ours ${lost.ours.join('/')}, direct ${lost.direct.join('/')}, floor ${lost.floor.join('/')}`,
      `CPU while ours ran (cores, median): proxy ${median(cpu.proxy).toFixed(2)}, agent ${median(cpu.agent).toFixed(2)} (both on CPU ${SUT_CPU})`,
      '',
      ...table(`latency: dnsperf -Q ${o.rate} -l ${o.latDuration}, every name new (each answer on ours writes its ipcache entry); p99 ms`, p99, (x) => x.toFixed(3)),
      ...table('p50 ms', p50, (x) => x.toFixed(3)).slice(1),
      `added p99 per round (ms): ${added.map((x) => x.toFixed(3)).join(' ')}; median ${addedP99.toFixed(3)}`,
      '',
      ...table(`latency: dnsperf -Q ${o.rate} -l ${o.latDuration} over the ${HOT_NAMES} names already learned (no map update); p99 ms`, p99Hot, (x) => x.toFixed(3)),
      `added p99 per round (ms): ${addedHot.map((x) => x.toFixed(3)).join(' ')}; median ${median(addedHot).toFixed(3)}; floor: ${addedFloor.map((x) => x.toFixed(3)).join(' ')}; median ${median(addedFloor).toFixed(3)}`,
      `CPU per query at ${o.rate}/s (µs): ours ${usPerQuery.ours.map((x) => x.toFixed(0)).join(' ')} (median ${median(usPerQuery.ours).toFixed(0)}), floor ${usPerQuery.floor.map((x) => x.toFixed(0)).join(' ')} (median ${median(usPerQuery.floor).toFixed(0)})`,
      `ipcache entries written by the proxy per latency round: ${written.join(' ')}; lost: ours ${latLost.ours.join('/')}, direct ${latLost.direct.join('/')}`,
      `proxy event-loop delay (ms): ${JSON.stringify(st.loop)}`,
      `proxy totals: written ${st.fqdn.written}, answers held past the bound ${st.fqdn.heldTimeouts}, SERVFAIL ${st.servfail}, datagrams without original destination ${st.noOrigDst}`,
      '',
      ...verdicts.map((v) => `${v.pass ? 'MET ' : 'MISSED'}  ${v.line}`),
    ];
    if (o.json) {
      process.stdout.write(
        JSON.stringify({ rounds: o.rounds, qps, lost, cpu, p99, p50, added, p99Hot, addedHot, addedFloor, usPerQuery, written, latLost, ratio, verdicts, host: { cpus: os.availableParallelism(), load: os.loadavg() } }, null, 2) + '\n',
      );
    } else process.stdout.write(text.join('\n') + '\n');
    return o.strict && verdicts.some((v) => !v.pass) ? 1 : 0;
  } finally {
    await node?.cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`dns-bench: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
