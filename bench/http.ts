// SPDX-License-Identifier: Apache-2.0
/**
 * HTTP L7 enforcement and gRPC benchmark (DESIGN §6, rows "HTTP L7 enforcement" and "gRPC
 * unary"): our L7 proxy against no proxy ("direct") and nginx with one worker as a reverse
 * proxy with the same rules, measured in one run, in interleaved rounds (ours direct nginx …).
 *
 * Topology (test/e2e/helpers, real `membrane endpoint up`; nothing touches the machine's
 * namespace): a node namespace and three pods,
 *   client   10.200.7.10  wrk / h2load / grpc-js client, on CPU 0
 *   server   10.200.7.20  backend nginx (1 worker, keep-alive, `return 200 "ok\n"`) on :80 and :8080,
 *                         grpc-js shop.Catalog server on :50051 and :50052, both on CPU 0
 *   refproxy 10.200.7.30  reference nginx (worker_processes 1) on CPU 1: :80 → server:8080 with
 *                         the 50 rules as `location ~ ^…$` blocks (+ `limit_except` for the method)
 *                         and `location / { return 403; }`; :50051 http2 → `grpc_pass` server:50052;
 *                         upstream keepalive to the backend. Also the "floor" on CPU 1 (bench/lib/
 *                         http-floor.mjs): :81 → server:8080 through node:http and one undici Pool
 *                         joined as our proxy joins them, with no policy, no reporting, no
 *                         transparent socket: what the components issue 4 prescribes reach alone.
 * `membrane agent` (standalone, it starts `membrane proxy`) enforces one policy on `server`:
 *   :80     from client, 50 HTTP rules (49 that do not match the benchmark request, then
 *           `GET /api/v1/items/[0-9]+`): redirected through our proxy            → "ours"
 *   :50051  from client, the gRPC rule of test/peers/fixtures/shop-grpc-policy.yaml
 *           (POST /shop\.Catalog/(GetItem|…), DeleteItem denied): through our proxy → "ours"
 *   :8080, :50052 from client and refproxy, L3/L4 only: allowed by the datapath, no redirect
 *           → "direct" (client → server) and nginx's upstream hop (refproxy → server).
 * The proxy (pid from <state-dir>/proxy.pid) and the agent (which receives the proxy's per-request
 * flow records) are pinned to CPU 1 with `taskset -a -p -c 1`, the reference nginx runs under
 * `taskset -c 1`: each system under test gets CPU 1; load generators and backends get CPU 0.
 *
 * Measurements, each in interleaved rounds:
 *   1. throughput: `wrk -t 2 -c 64 -d 5s` unpaced, requests/s (ours, direct, nginx, floor);
 *   2. tail latency: `h2load --h1 -c 10 --rps 100` (1,000 req/s in all) for 4 s, p99 from h2load's
 *      per-request --log-file (ours, direct, nginx, floor); added p99 = ours − direct;
 *   3. gRPC unary: `h2load -c 16 -m 4 -D 4` POST /shop.Catalog/GetItem with a framed ItemRequest
 *      (`content-type: application/grpc`, `te: trailers`), requests/s (ours, direct, nginx grpc_pass).
 * Before measuring, each path is checked: the benchmark request answers 200 everywhere; a
 * request outside the rules gets our 403 "Access denied" (so the proxy is on the path), nginx's
 * 403, and 200 direct; gRPC GetItem succeeds on every path and DeleteItem is PERMISSION_DENIED
 * through ours. Every measured response must be 2xx (a non-2xx response fails the run).
 *
 * Targets: ours ≥ 0.5× nginx and ≥ 0.3× direct throughput; added p99 ≤ 1 ms at 1,000 req/s;
 * gRPC ours ≥ 0.5× nginx grpc_pass.
 *
 * Run (root): node --import tsx bench/http.ts [--json] [--rounds N (default 5)] [--duration S (5)]
 *             [--lat-duration S (4)] [--grpc-duration S (4)] [--no-grpc] [--only-grpc] [--strict]
 *   --strict: exit 1 when a target is missed (default: exit 0 and say so in the verdict).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNode, inNs, privilegeProblem, runCmd, spawnInNs, which, type NodeTopology, type NsProcess } from '../test/e2e/helpers/index.ts';
import { proxyGet, startAgent, type AgentHandle } from '../test/e2e/helpers/agent.ts';
import { cpuSeconds, median, percentile, pin, ratioStats, round2, round3, sleep } from './lib/stats.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const GRPC_PEER = path.join(ROOT, 'bench', 'lib', 'grpc-peer.mjs');
const FLOOR_PEER = path.join(ROOT, 'bench', 'lib', 'http-floor.mjs');

const NS = 'bench';
const CLIENT = { name: 'client', ip: '10.200.7.10' };
const SERVER = { name: 'server', ip: '10.200.7.20' };
const REF = { name: 'refproxy', ip: '10.200.7.30' };
const PORT_L7 = 80;
const PORT_L4 = 8080;
const PORT_FLOOR = 81;
const GRPC_L7 = 50051;
const GRPC_L4 = 50052;
const BENCH_PATH = '/api/v1/items/42';
const DENIED_PATH = '/admin/users';
const LOAD_CPU = 0;
const SUT_CPU = 1;

const TARGET_VS_NGINX = 0.5;
const TARGET_VS_DIRECT = 0.3;
const TARGET_ADDED_P99_MS = 1;
const TARGET_GRPC_VS_NGINX = 0.5;

type Sys = 'ours' | 'direct' | 'nginx' | 'floor';
const SYSTEMS: Sys[] = ['ours', 'direct', 'nginx', 'floor'];
/** gRPC has no floor configuration. */
const GRPC_SYSTEMS: Sys[] = ['ours', 'direct', 'nginx'];
const SYS_NAMES: Record<Sys, string> = {
  ours: 'ours (membrane proxy, 50 rules)',
  direct: 'direct (L3/L4 policy only)',
  nginx: 'nginx 1 worker, 50 locations',
  floor: 'floor: node:http + undici only',
};
const GRPC_NAMES: Record<Sys, string> = {
  ours: 'ours (membrane proxy, gRPC rule)',
  direct: 'direct (L3/L4 policy only)',
  nginx: 'nginx 1 worker, grpc_pass',
  floor: '',
};

interface Options {
  json: boolean;
  strict: boolean;
  rounds: number;
  duration: number;
  latDuration: number;
  grpcDuration: number;
  http: boolean;
  grpc: boolean;
}

function log(msg: string): void {
  process.stderr.write(`http-bench: ${msg}\n`);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { json: false, strict: false, rounds: 5, duration: 5, latDuration: 4, grpcDuration: 4, http: true, grpc: true };
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
    else if (a === '--grpc-duration') o.grpcDuration = int(a, argv[++i], 1);
    else if (a === '--no-grpc') o.grpc = false;
    else if (a === '--only-grpc') o.http = false;
    else if (a === '-h' || a === '--help') {
      process.stdout.write(
        'usage: node --import tsx bench/http.ts [--json] [--rounds N] [--duration S] [--lat-duration S] [--grpc-duration S] [--no-grpc] [--only-grpc] [--strict]\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!o.http && !o.grpc) throw new Error('--no-grpc and --only-grpc leave nothing to measure');
  return o;
}





// ---------------------------------------------------------------------------------------------
// Rules and configurations

interface HttpRule {
  method: string;
  path: string;
}

/**
 * 50 HTTP rules: 49 that do not match GET /api/v1/items/42 (other services; near misses on the
 * same prefix: other methods, sub-resources, versions, collections), then the one that does, last (the worst case for a linear
 * matcher; nginx also tries regex locations in order).
 */
function httpRules(): HttpRule[] {
  const rules: HttpRule[] = [];
  const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
  const kinds = ['orders', 'users', 'carts', 'invoices', 'payments', 'sessions', 'reviews'];
  for (let i = 0; rules.length < 42; i++) {
    const kind = kinds[i % kinds.length]!;
    rules.push({ method: methods[i % methods.length]!, path: `/svc${i}/v[0-9]+/${kind}(/[0-9a-f-]+)?` });
  }
  // Near misses on the benchmark's own prefix: other methods, other versions, other collections.
  rules.push({ method: 'POST', path: '/api/v1/items' });
  rules.push({ method: 'PUT', path: '/api/v1/items/[0-9]+/stock' });
  rules.push({ method: 'DELETE', path: '/api/v1/items/[0-9]+/cache' });
  rules.push({ method: 'GET', path: '/api/v2/items/[0-9]+' });
  rules.push({ method: 'GET', path: '/api/v1/items/[0-9]+/reviews' });
  rules.push({ method: 'GET', path: '/api/v1/orders/[0-9]+' });
  rules.push({ method: 'GET', path: '/static/.*\\.(css|js|png)' });
  rules.push({ method: 'GET', path: '/api/v1/items/[0-9]+' });
  if (rules.length !== 50) throw new Error(`expected 50 rules, made ${rules.length}`);
  // nginx picks the first regex location that matches the path and only then looks at the
  // method, so one location per rule is the same rule set only when no two rules share a path.
  if (new Set(rules.map((r) => r.path)).size !== rules.length) throw new Error('two rules share a path');
  return rules;
}

const GRPC_RULE: HttpRule = { method: 'POST', path: '/shop\\.Catalog/(GetItem|ListItems|Chat|Upload|Hang)' };

function policyYaml(rules: HttpRule[]): string {
  const q = (s: string) => JSON.stringify(s);
  const from = (...apps: string[]) => apps.map((a) => `        - matchLabels:\n            app: ${a}\n`).join('');
  return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: bench-server
  namespace: ${NS}
spec:
  endpointSelector:
    matchLabels:
      app: server
  ingress:
    - fromEndpoints:
${from('client')}      toPorts:
        - ports:
            - port: "${PORT_L7}"
              protocol: TCP
          rules:
            http:
${rules.map((r) => `              - method: ${r.method}\n                path: ${q(r.path)}\n`).join('')}    - fromEndpoints:
${from('client')}      toPorts:
        - ports:
            - port: "${GRPC_L7}"
              protocol: TCP
          rules:
            http:
              - method: ${GRPC_RULE.method}
                path: ${q(GRPC_RULE.path)}
    - fromEndpoints:
${from('client', 'refproxy')}      toPorts:
        - ports:
            - port: "${PORT_L4}"
              protocol: TCP
            - port: "${GRPC_L4}"
              protocol: TCP
`;
}

function nginxCommon(dir: string, workerConnections: number): string {
  return `daemon off;
user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${workerConnections}; }
`;
}

function nginxTemps(dir: string): string {
  return `  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
`;
}

/** The backend: a small static answer on both HTTP ports (keep-alive). */
function backendConf(dir: string): string {
  return `${nginxCommon(dir, 4096)}http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
${nginxTemps(dir)}  server {
    listen ${SERVER.ip}:${PORT_L7} reuseport;
    listen ${SERVER.ip}:${PORT_L4} reuseport;
    default_type text/plain;
    location / { return 200 "ok\\n"; }
  }
}
`;
}

/** The reference: the same 50 rules as regex locations (method via limit_except), everything else 403. */
function refConf(dir: string, rules: HttpRule[]): string {
  const loc = (r: HttpRule) =>
    `    location ~ "^${r.path}$" {\n      limit_except ${r.method} { deny all; }\n      proxy_pass http://backend;\n    }\n`;
  return `${nginxCommon(dir, 4096)}http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
${nginxTemps(dir)}  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering on;
  upstream backend {
    server ${SERVER.ip}:${PORT_L4};
    keepalive 128;
    keepalive_requests 1000000;
  }
  upstream grpc_backend {
    server ${SERVER.ip}:${GRPC_L4};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen ${REF.ip}:${PORT_L7};
${rules.map(loc).join('')}    location / { return 403; }
  }
  server {
    listen ${REF.ip}:${GRPC_L7} http2;
    http2_max_requests 1000000;
    location ~ "^${GRPC_RULE.path}$" { grpc_pass grpc://grpc_backend; }
    location / { return 403; }
  }
}
`;
}

/** A gRPC length-prefixed message: ItemRequest { id: "42" } (field 1, wire type 2). */
function grpcFrame(): Buffer {
  const msg = Buffer.from([0x0a, 0x02, 0x34, 0x32]);
  const head = Buffer.alloc(5);
  head.writeUInt8(0, 0);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

// ---------------------------------------------------------------------------------------------
// Load tools (all run in the client pod on LOAD_CPU)

interface WrkResult {
  rps: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  p50Ms: number;
  p99Ms: number;
}

function durMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : NaN;
}

function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const lat = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? durMs(m[1]!, m[2]!) : NaN;
  };
  if (!Number.isFinite(rps) || !Number.isFinite(requests)) throw new Error(`cannot parse wrk output:\n${out}`);
  return { rps, requests, non2xx, socketErrors, p50Ms: lat('50'), p99Ms: lat('99') };
}

interface LatResult {
  n: number;
  non2xx: number;
  failed: number;
  achievedRps: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

interface H2Result {
  rps: number;
  succeeded: number;
  failed: number;
  errored: number;
  non2xx: number;
}

function parseH2load(out: string): H2Result {
  const rps = Number(/finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(out)?.[1]);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (!Number.isFinite(rps) || !req || !codes) throw new Error(`cannot parse h2load output:\n${out}`);
  return {
    rps,
    succeeded: Number(req[4]),
    failed: Number(req[5]),
    errored: Number(req[6]),
    non2xx: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
  };
}

class Load {
  private n = 0;
  constructor(
    readonly node: NodeTopology,
    readonly grpcBody: string,
  ) {}

  private get pod(): string {
    return this.node.pod(`${NS}/${CLIENT.name}`);
  }

  private async run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
    const r = await inNs(this.pod, 'taskset', ['-c', String(LOAD_CPU), cmd, ...args], { timeoutMs });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${this.pod} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async wrk(url: string, seconds: number): Promise<WrkResult> {
    return parseWrk(await this.run('wrk', ['-t', '2', '-c', '64', '-d', `${seconds}s`, '--latency', url], (seconds + 20) * 1000));
  }

  /** 1,000 req/s over 10 HTTP/1.1 keep-alive connections (100 req/s each), for `seconds`. */
  async paced(url: string, seconds: number): Promise<LatResult> {
    const file = path.join(this.node.dir, `h2load-${++this.n}.log`);
    const out = await this.run('h2load', ['--h1', '-c', '10', '--rps', '100', '-D', String(seconds), `--log-file=${file}`, url], (seconds + 20) * 1000);
    const s = parseH2load(out);
    const rows = readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t'));
    const lat = rows.map((r) => Number(r[2]) / 1000).sort((a, b) => a - b);
    const non2xx = rows.filter((r) => !/^2\d\d$/.test(r[1]!)).length;
    return {
      n: lat.length,
      non2xx: non2xx + s.non2xx,
      failed: s.failed + s.errored,
      achievedRps: lat.length / seconds,
      p50Ms: percentile(lat, 50),
      p99Ms: percentile(lat, 99),
      p999Ms: percentile(lat, 99.9),
      maxMs: lat[lat.length - 1] ?? NaN,
    };
  }

  async grpc(url: string, seconds: number): Promise<H2Result> {
    const out = await this.run(
      'h2load',
      ['-c', '16', '-m', '4', '-D', String(seconds), '-d', this.grpcBody, '-H', 'content-type: application/grpc', '-H', 'te: trailers', url],
      (seconds + 20) * 1000,
    );
    return parseH2load(out);
  }

  async curl(url: string): Promise<{ code: string; body: string }> {
    const r = await inNs(this.pod, 'curl', ['-sS', '--max-time', '3', '-w', '\n%{http_code}', url], { timeoutMs: 6000 });
    const i = r.stdout.lastIndexOf('\n');
    return { code: r.stdout.slice(i + 1) || `curl exit ${r.code}: ${r.stderr.trim()}`, body: r.stdout.slice(0, Math.max(0, i)) };
  }

  async grpcCall(addr: string, method: string): Promise<{ ok: boolean; code?: number; details?: string }> {
    const r = await inNs(this.pod, process.execPath, [GRPC_PEER, 'call', addr, method, '42'], { cwd: ROOT, timeoutMs: 10_000 });
    try {
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { ok: boolean; code?: number; details?: string };
    } catch {
      return { ok: false, details: `exit ${r.code}: ${r.stderr.trim().slice(0, 300)}` };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

const proxyStatus = (stateDir: string) => proxyGet(stateDir, '/v1/status');

async function waitProxy(stateDir: string, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, unknown> | null = null;
  while (Date.now() < deadline) {
    last = await proxyStatus(stateDir);
    if (last && Number(last.revision) >= 1) {
      const pid = Number(readFileSync(path.join(stateDir, 'proxy.pid'), 'utf8').trim());
      if (Number.isInteger(pid) && pid > 1) return pid;
    }
    await sleep(100);
  }
  let plog = '';
  try {
    plog = readFileSync(path.join(stateDir, 'proxy.log'), 'utf8').slice(-3000);
  } catch {
    /* none */
  }
  throw new Error(`proxy not serving a policy after ${timeoutMs} ms: ${JSON.stringify(last)}\nproxy.log:\n${plog}`);
}



async function startNginx(node: NodeTopology, pod: string, dir: string, conf: string, cpu: number, probe: { host: string; port: number }): Promise<NsProcess> {
  mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const file = path.join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const t = await inNs(pod, 'nginx', ['-t', '-q', '-c', file, '-p', dir, '-e', path.join(dir, 'error.log')]);
  if (t.code !== 0) throw new Error(`nginx -t ${file}: ${t.stderr}`);
  const p = spawnInNs(pod, 'taskset', ['-c', String(cpu), 'nginx', '-c', file, '-p', dir, '-e', path.join(dir, 'error.log')]);
  node.onCleanup(async () => void (await p.kill('SIGTERM', 3000)));
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const r = await inNs(pod, 'bash', ['-c', `exec 3<>/dev/tcp/${probe.host}/${probe.port}`]);
    if (r.code === 0) return p;
    await sleep(50);
  }
  throw new Error(`nginx in ${pod} not listening on ${probe.host}:${probe.port}\n${p.stderr}`);
}

// ---------------------------------------------------------------------------------------------

interface Report {
  json: Record<string, unknown>;
  text: string[];
  verdicts: Array<{ line: string; pass: boolean }>;
}

function table(title: string, names: Record<Sys, string>, rows: Record<Sys, number[]>, fmt: (x: number) => string, extra?: { head: string; of: (s: Sys) => string }): string[] {
  const w = 36;
  const rounds = rows.ours.length;
  const lines = [title];
  lines.push(
    `${'configuration'.padEnd(w)}${Array.from({ length: rounds }, (_, i) => `r${i + 1}`.padStart(10)).join('')}${'median'.padStart(11)}${extra ? extra.head.padStart(14) : ''}`,
  );
  for (const s of SYSTEMS) {
    if (!rows[s].length) continue;
    lines.push(`${names[s].padEnd(w)}${rows[s].map((x) => fmt(x).padStart(10)).join('')}${fmt(median(rows[s])).padStart(11)}${extra ? extra.of(s).padStart(14) : ''}`);
  }
  return lines;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `http-bench: needs root (network namespaces, veths, BPF, the agent and its transparent proxy); running as uid ${process.getuid?.()}. Run: sudo node --import tsx bench/http.ts\n`,
    );
    return 2;
  }
  const problem = privilegeProblem();
  if (problem) {
    process.stderr.write(`http-bench: ${problem}\n`);
    return 2;
  }
  const missing = ['taskset', 'nginx', 'wrk', 'h2load', 'curl', 'bash'].filter((t) => !which(t));
  if (missing.length) {
    process.stderr.write(`http-bench: missing ${missing.join(', ')} (Debian: util-linux, nginx-light, wrk, nghttp2-client, curl)\n`);
    return 2;
  }
  if (os.availableParallelism() < 2) log('warning: one CPU; system under test and load share it');
  if (o.rounds < 5) log(`warning: ${o.rounds} rounds (DESIGN §6 asks for at least 5)`);

  let node: NodeTopology | undefined;
  let agent: AgentHandle | undefined;
  const started = performance.now();
  const loadStart = os.loadavg();
  try {
    node = await createNode('htb');
    node.writeEndpoints(
      [
        { name: CLIENT.name, namespace: NS, labels: { app: 'client' }, ips: [CLIENT.ip] },
        { name: SERVER.name, namespace: NS, labels: { app: 'server' }, ips: [SERVER.ip] },
        { name: REF.name, namespace: NS, labels: { app: 'refproxy' }, ips: [REF.ip] },
      ],
      { namespaces: [{ name: NS, labels: { env: NS } }] },
    );
    await node.up();
    const rules = httpRules();
    const serverPod = node.pod(`${NS}/${SERVER.name}`);
    const refPod = node.pod(`${NS}/${REF.name}`);

    // Peers: backend nginx and grpc-js server on CPU 0, the reference nginx on CPU 1.
    await startNginx(node, serverPod, path.join(node.dir, 'backend'), backendConf(path.join(node.dir, 'backend')), LOAD_CPU, { host: SERVER.ip, port: PORT_L4 });
    await startNginx(node, refPod, path.join(node.dir, 'ref'), refConf(path.join(node.dir, 'ref'), rules), SUT_CPU, { host: REF.ip, port: PORT_L7 });
    let grpcServer: NsProcess | undefined;
    if (o.grpc) {
      grpcServer = spawnInNs(serverPod, 'taskset', ['-c', String(LOAD_CPU), process.execPath, GRPC_PEER, 'server', `${SERVER.ip}:${GRPC_L7}`, `${SERVER.ip}:${GRPC_L4}`], { cwd: ROOT });
      const g = grpcServer;
      node.onCleanup(async () => void (await g.kill('SIGTERM', 3000)));
      await grpcServer.waitFor(/"ready"/, { timeoutMs: 15_000 });
    }
    const floor = spawnInNs(refPod, 'taskset', ['-c', String(SUT_CPU), process.execPath, FLOOR_PEER, REF.ip, String(PORT_FLOOR), `http://${SERVER.ip}:${PORT_L4}`], { cwd: ROOT });
    node.onCleanup(async () => void (await floor.kill('SIGTERM', 3000)));
    await floor.waitFor(/"ready"/, { timeoutMs: 15_000 });

    // Our agent and its proxy, both pinned to CPU 1.
    const policyDir = path.join(node.dir, 'policies');
    mkdirSync(policyDir);
    writeFileSync(path.join(policyDir, 'bench-server.yaml'), policyYaml(rules));
    agent = startAgent(node, { policies: policyDir });
    const a = agent;
    node.onCleanup(async () => void (await a.proc.kill('SIGTERM', 3000)));
    await agent.waitReady(30_000);
    const proxyPid = await waitProxy(agent.paths.stateDir);
    await pin(proxyPid, SUT_CPU, 'membrane proxy');
    await pin(agent.proc.pid, SUT_CPU, 'membrane agent');
    log(`node ${node.name}; agent pid ${agent.proc.pid}, proxy pid ${proxyPid} on CPU ${SUT_CPU}; reference nginx on CPU ${SUT_CPU}; load and backends on CPU ${LOAD_CPU}`);

    const grpcBody = node.writeFile('grpc-item-42.bin', '');
    writeFileSync(grpcBody, grpcFrame());
    const load = new Load(node, grpcBody);
    const url: Record<Sys, string> = {
      ours: `http://${SERVER.ip}:${PORT_L7}${BENCH_PATH}`,
      direct: `http://${SERVER.ip}:${PORT_L4}${BENCH_PATH}`,
      nginx: `http://${REF.ip}:${PORT_L7}${BENCH_PATH}`,
      floor: `http://${REF.ip}:${PORT_FLOOR}${BENCH_PATH}`,
    };
    const grpcAddr: Record<Sys, string> = { ours: `${SERVER.ip}:${GRPC_L7}`, direct: `${SERVER.ip}:${GRPC_L4}`, nginx: `${REF.ip}:${GRPC_L7}`, floor: '' };

    // Every path does what it should before anything is measured.
    const checks: Record<string, unknown> = {};
    if (o.http) {
      for (const s of SYSTEMS) {
        const ok = await load.curl(url[s]);
        if (ok.code !== '200' || ok.body.trim() !== 'ok') throw new Error(`${s}: GET ${url[s]} gave ${ok.code} ${JSON.stringify(ok.body)}, expected 200 "ok"`);
      }
      const deniedUrl = (s: Sys) => url[s].replace(BENCH_PATH, DENIED_PATH);
      const oursDenied = await load.curl(deniedUrl('ours'));
      const postOurs = await inNs(node.pod(`${NS}/${CLIENT.name}`), 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', url.ours], { timeoutMs: 6000 });
      const nginxDenied = await load.curl(deniedUrl('nginx'));
      const postNginx = await inNs(node.pod(`${NS}/${CLIENT.name}`), 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', url.nginx], { timeoutMs: 6000 });
      const directOther = await load.curl(deniedUrl('direct'));
      checks.http = {
        oursOutsideRules: oursDenied.code,
        oursPostOnGetRule: postOurs.stdout,
        nginxOutsideRules: nginxDenied.code,
        nginxPostOnGetRule: postNginx.stdout,
        directOutsideRules: directOther.code,
      };
      if (oursDenied.code !== '403' || oursDenied.body.trim() !== 'Access denied') throw new Error(`ours: ${DENIED_PATH} gave ${oursDenied.code} ${JSON.stringify(oursDenied.body)}: is the proxy on the path?`);
      if (postOurs.stdout !== '403') throw new Error(`ours: POST ${BENCH_PATH} gave ${postOurs.stdout}, expected 403 (the rule is GET only)`);
      if (nginxDenied.code !== '403' || postNginx.stdout !== '403') throw new Error(`nginx reference: ${DENIED_PATH} gave ${nginxDenied.code}, POST gave ${postNginx.stdout}; expected 403 both`);
      if (directOther.code !== '200') throw new Error(`direct: ${DENIED_PATH} gave ${directOther.code}, expected 200 (no L7 rules)`);
    }
    if (o.grpc) {
      const g: Record<string, unknown> = {};
      for (const s of GRPC_SYSTEMS) {
        const r = await load.grpcCall(grpcAddr[s], 'GetItem');
        g[`${s}GetItem`] = r.ok ? 'OK' : r;
        if (!r.ok) throw new Error(`${s}: gRPC GetItem via ${grpcAddr[s]} failed: ${JSON.stringify(r)}`);
      }
      const del = await load.grpcCall(grpcAddr.ours, 'DeleteItem');
      g.oursDeleteItem = del.ok ? 'OK' : `code ${del.code}`;
      if (del.ok || del.code !== 7) throw new Error(`ours: gRPC DeleteItem should be PERMISSION_DENIED (7), got ${JSON.stringify(del)}`);
      const delRef = await load.grpcCall(grpcAddr.nginx, 'DeleteItem');
      g.nginxDeleteItem = delRef.ok ? 'OK' : `code ${delRef.code}`;
      checks.grpc = g;
    }
    log(`checks passed: ${JSON.stringify(checks)}`);

    const report: Report = { json: {}, text: [], verdicts: [] };
    const fail = (what: string) => {
      throw new Error(what);
    };

    if (o.http) {
      // Warm-up (JIT, pools, conntrack) of every path, not measured.
      for (const s of SYSTEMS) await load.wrk(url[s], 1);

      // 1. Throughput, unpaced.
      const thr: Record<Sys, WrkResult[]> = { ours: [], direct: [], nginx: [], floor: [] };
      const cpu = { proxy: [] as number[], agent: [] as number[] };
      for (let round = 1; round <= o.rounds; round++) {
        for (const s of SYSTEMS) {
          const c0 = s === 'ours' ? [cpuSeconds(proxyPid), cpuSeconds(agent.proc.pid)] : [];
          const r = await load.wrk(url[s], o.duration);
          if (s === 'ours') {
            cpu.proxy.push((cpuSeconds(proxyPid) - c0[0]!) / o.duration);
            cpu.agent.push((cpuSeconds(agent.proc.pid) - c0[1]!) / o.duration);
          }
          if (r.non2xx || r.socketErrors) fail(`${s} round ${round}: wrk saw ${r.non2xx} non-2xx responses and ${r.socketErrors} socket errors`);
          thr[s].push(r);
          log(`throughput round ${round}/${o.rounds} ${s}: ${r.rps.toFixed(0)} req/s (p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms)`);
        }
      }
      const rps = (s: Sys) => thr[s].map((r) => r.rps);
      const vsNginx = ratioStats(rps('ours'), rps('nginx'));
      const vsDirect = ratioStats(rps('ours'), rps('direct'));
      const nginxVsDirect = ratioStats(rps('nginx'), rps('direct'));
      const floorVsNginx = ratioStats(rps('floor'), rps('nginx'));
      const oursVsFloor = ratioStats(rps('ours'), rps('floor'));

      // 2. Tail latency at 1,000 req/s.
      const lat: Record<Sys, LatResult[]> = { ours: [], direct: [], nginx: [], floor: [] };
      for (let round = 1; round <= o.rounds; round++) {
        for (const s of SYSTEMS) {
          const r = await load.paced(url[s], o.latDuration);
          if (r.non2xx || r.failed) fail(`${s} latency round ${round}: ${r.non2xx} non-2xx, ${r.failed} failed`);
          lat[s].push(r);
          log(`latency round ${round}/${o.rounds} ${s}: ${r.n} requests (${r.achievedRps.toFixed(0)}/s), p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, max ${r.maxMs.toFixed(2)} ms`);
        }
      }
      const p99 = (s: Sys) => lat[s].map((r) => r.p99Ms);
      const added = median(p99('ours')) - median(p99('direct'));
      const addedPerRound = p99('ours').map((x, i) => x - p99('direct')[i]!);
      const addedNginx = median(p99('nginx')) - median(p99('direct'));
      const addedFloor = median(p99('floor')) - median(p99('direct'));

      const passN = vsNginx.ratio >= TARGET_VS_NGINX;
      const passD = vsDirect.ratio >= TARGET_VS_DIRECT;
      const passL = added <= TARGET_ADDED_P99_MS;
      const thrRows = { ours: rps('ours'), direct: rps('direct'), nginx: rps('nginx'), floor: rps('floor') };
      report.text.push(
        ...table(
          `HTTP/1.1 throughput: wrk -t 2 -c 64 -d ${o.duration}s GET ${BENCH_PATH} (keep-alive), unpaced; ${o.rounds} rounds interleaved ours direct nginx floor; requests/s`,
          SYS_NAMES,
          thrRows,
          (x) => x.toFixed(0),
          { head: 'wrk p99 ms', of: (s) => median(thr[s].map((r) => r.p99Ms)).toFixed(2) },
        ),
      );
      report.text.push(`ours/nginx: ${vsNginx.ratio.toFixed(3)}× (per-round min ${vsNginx.min.toFixed(3)}, max ${vsNginx.max.toFixed(3)})`);
      report.text.push(`ours/direct: ${vsDirect.ratio.toFixed(3)}× (per-round min ${vsDirect.min.toFixed(3)}, max ${vsDirect.max.toFixed(3)}); nginx/direct: ${nginxVsDirect.ratio.toFixed(3)}×`);
      report.text.push(
        `floor/nginx: ${floorVsNginx.ratio.toFixed(3)}× (per-round min ${floorVsNginx.min.toFixed(3)}, max ${floorVsNginx.max.toFixed(3)}): node:http + undici alone; ours/floor: ${oursVsFloor.ratio.toFixed(3)}× (enforcement and reporting)`,
      );
      report.text.push(
        `CPU while ours ran (cores, median of rounds): proxy ${median(cpu.proxy).toFixed(2)}, agent ${median(cpu.agent).toFixed(2)} (both pinned to CPU ${SUT_CPU})`,
      );
      report.text.push('');
      report.text.push(
        ...table(
          `HTTP/1.1 latency at 1,000 req/s: h2load --h1 -c 10 --rps 100 -D ${o.latDuration}; ${o.rounds} rounds interleaved; p99 ms per round (from h2load --log-file)`,
          SYS_NAMES,
          { ours: p99('ours'), direct: p99('direct'), nginx: p99('nginx'), floor: p99('floor') },
          (x) => x.toFixed(3),
          { head: 'p50 ms (med)', of: (s) => median(lat[s].map((r) => r.p50Ms)).toFixed(3) },
        ),
      );
      report.text.push(
        `added p99 (ours − direct): ${added.toFixed(3)} ms (per-round min ${Math.min(...addedPerRound).toFixed(3)}, max ${Math.max(...addedPerRound).toFixed(3)}); nginx − direct: ${addedNginx.toFixed(3)} ms; floor − direct: ${addedFloor.toFixed(3)} ms`,
      );
      report.verdicts.push(
        { line: `throughput ours/nginx ${vsNginx.ratio.toFixed(2)}× (target ≥ ${TARGET_VS_NGINX}×): ${passN ? 'met' : 'MISSED'}`, pass: passN },
        { line: `throughput ours/direct ${vsDirect.ratio.toFixed(2)}× (target ≥ ${TARGET_VS_DIRECT}×): ${passD ? 'met' : 'MISSED'}`, pass: passD },
        { line: `added p99 at 1,000 req/s ${added.toFixed(3)} ms (target ≤ ${TARGET_ADDED_P99_MS} ms): ${passL ? 'met' : 'MISSED'}`, pass: passL },
      );
      const rs = (s: ReturnType<typeof ratioStats>) => ({ ratio: round3(s.ratio), min: round3(s.min), max: round3(s.max), perRound: s.perRound.map(round3) });
      report.json.http = {
        rules: rules.length,
        path: BENCH_PATH,
        throughput: {
          tool: `wrk -t 2 -c 64 -d ${o.duration}s`,
          configs: Object.fromEntries(
            SYSTEMS.map((s) => [s, { name: SYS_NAMES[s], medianRps: round2(median(rps(s))), rounds: thr[s].map((r) => ({ rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, requests: r.requests })) }]),
          ),
          ratios: { oursOverNginx: rs(vsNginx), oursOverDirect: rs(vsDirect), nginxOverDirect: rs(nginxVsDirect), floorOverNginx: rs(floorVsNginx), oursOverFloor: rs(oursVsFloor) },
          oursCpuCores: { proxy: cpu.proxy.map(round2), agent: cpu.agent.map(round2) },
        },
        latency: {
          tool: `h2load --h1 -c 10 --rps 100 -D ${o.latDuration}`,
          configs: Object.fromEntries(
            SYSTEMS.map((s) => [
              s,
              {
                name: SYS_NAMES[s],
                medianP99Ms: round3(median(p99(s))),
                rounds: lat[s].map((r) => ({ n: r.n, p50Ms: round3(r.p50Ms), p99Ms: round3(r.p99Ms), p999Ms: round3(r.p999Ms), maxMs: round3(r.maxMs) })),
              },
            ]),
          ),
          addedP99Ms: { ours: round3(added), perRound: addedPerRound.map(round3), nginx: round3(addedNginx), floor: round3(addedFloor) },
        },
      };
    }

    if (o.grpc) {
      for (const s of GRPC_SYSTEMS) await load.grpc(`http://${grpcAddr[s]}/shop.Catalog/GetItem`, 1);
      const gr: Record<Sys, H2Result[]> = { ours: [], direct: [], nginx: [], floor: [] };
      for (let round = 1; round <= o.rounds; round++) {
        for (const s of GRPC_SYSTEMS) {
          const r = await load.grpc(`http://${grpcAddr[s]}/shop.Catalog/GetItem`, o.grpcDuration);
          if (r.non2xx || r.failed || r.errored) fail(`${s} gRPC round ${round}: ${r.non2xx} non-2xx, ${r.failed} failed, ${r.errored} errored`);
          gr[s].push(r);
          log(`gRPC round ${round}/${o.rounds} ${s}: ${r.rps.toFixed(0)} req/s`);
        }
      }
      const rps = (s: Sys) => gr[s].map((r) => r.rps);
      const vsNginx = ratioStats(rps('ours'), rps('nginx'));
      const vsDirect = ratioStats(rps('ours'), rps('direct'));
      const pass = vsNginx.ratio >= TARGET_GRPC_VS_NGINX;
      if (report.text.length) report.text.push('');
      report.text.push(
        ...table(
          `gRPC unary GetItem: h2load -c 16 -m 4 -D ${o.grpcDuration} (64 streams), unpaced; grpc-js server on CPU ${LOAD_CPU}; ${o.rounds} rounds interleaved; requests/s`,
          GRPC_NAMES,
          { ours: rps('ours'), direct: rps('direct'), nginx: rps('nginx'), floor: [] },
          (x) => x.toFixed(0),
        ),
      );
      report.text.push(`ours/nginx grpc_pass: ${vsNginx.ratio.toFixed(3)}× (per-round min ${vsNginx.min.toFixed(3)}, max ${vsNginx.max.toFixed(3)}); ours/direct: ${vsDirect.ratio.toFixed(3)}×`);
      report.verdicts.push({ line: `gRPC ours/nginx ${vsNginx.ratio.toFixed(2)}× (target ≥ ${TARGET_GRPC_VS_NGINX}×): ${pass ? 'met' : 'MISSED'}`, pass });
      const rs = (s: ReturnType<typeof ratioStats>) => ({ ratio: round3(s.ratio), min: round3(s.min), max: round3(s.max), perRound: s.perRound.map(round3) });
      report.json.grpc = {
        tool: `h2load -c 16 -m 4 -D ${o.grpcDuration}`,
        configs: Object.fromEntries(GRPC_SYSTEMS.map((s) => [s, { name: GRPC_NAMES[s], medianRps: round2(median(rps(s))), rounds: rps(s) }])),
        ratios: { oursOverNginx: rs(vsNginx), oursOverDirect: rs(vsDirect) },
      };
    }

    const st = await proxyStatus(agent.paths.stateDir);
    const elapsedS = (performance.now() - started) / 1000;
    const loadEnd = os.loadavg();
    const setup = {
      node: node.name,
      proxyPid,
      sutCpu: SUT_CPU,
      loadCpu: LOAD_CPU,
      checks,
      proxyStatus: st,
      loadAvg: { start: loadStart.map(round2), end: loadEnd.map(round2) },
    };
    const allPass = report.verdicts.every((v) => v.pass);
    if (o.json) {
      process.stdout.write(
        JSON.stringify({
          benchmark: 'http-l7',
          rounds: o.rounds,
          order: 'ours direct nginx floor per round (gRPC: ours direct nginx)',
          ...report.json,
          verdicts: report.verdicts,
          pass: allPass,
          setup,
          elapsedS: round2(elapsedS),
        }) + '\n',
      );
    } else {
      report.text.push('');
      report.text.push(
        `setup: ${rules.length} HTTP rules on :${PORT_L7} (matching rule last); checks ${JSON.stringify(checks)}; ${elapsedS.toFixed(0)} s; ` +
          `load average ${loadStart.map((x) => x.toFixed(2)).join(' ')} → ${loadEnd.map((x) => x.toFixed(2)).join(' ')} (shared machine)`,
      );
      for (const v of report.verdicts) report.text.push(`${v.pass ? 'PASS' : 'FAIL'}: ${v.line}`);
      process.stdout.write(report.text.join('\n') + '\n');
    }
    return o.strict && !allPass ? 1 : 0;
  } finally {
    if (node) await node.cleanup();
    const left = (await runCmd('ip', ['netns', 'list'])).stdout
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => node && (n === node.name || n.startsWith(`${node.name}-`)));
    if (left.length) log(`cleanup incomplete: namespaces ${left.join(', ')}`);
    else log(`cleaned up: namespaces of ${node?.name ?? '(none made)'}${agent ? `, ${agent.paths.bpfRoot}` : ''} removed`);
  }
}

try {
  process.exitCode = await main();
} catch (e) {
  process.stderr.write(`http-bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
