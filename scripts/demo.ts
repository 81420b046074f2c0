// SPDX-License-Identifier: Apache-2.0
/**
 * `npm run demo`.
 *
 * 1. Trace: a table of flows against every policy in policies/ (with the endpoints of
 *    test/golden/endpoints.yaml), each with its verdict and the rules behind it — offline.
 * 2. Live (root only): a node namespace and pod namespaces plumbed by `membrane endpoint up`,
 *    `membrane agent` enforcing policies/ with the eBPF datapath, real TCP/UDP/ICMP traffic,
 *    HTTP and gRPC through the L7 proxy, an FQDN allowlist (dig → the DNS proxy → dnsmasq in a
 *    kube-dns pod; a connection to the learned IP), and the flows `membrane observe` reports.
 *    "World" is 93.184.216.0/24 made local to the node namespace. Everything it creates is
 *    removed at the end. Nothing is connected to the machine's network.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run as traceRun } from '../src/cli/trace-command.ts';
import { captureIo } from '../src/cli/io.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const membrane = path.join(root, 'bin', 'membrane');
const endpointsFile = path.join(root, 'test', 'golden', 'endpoints.yaml');
const policies = path.join(root, 'policies');
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const colour = (v: string) => {
  if (!process.stdout.isTTY) return v;
  const c = v.startsWith('ALLOW') || v.startsWith('ANSWERED') || v === 'FORWARDED' ? 32 : v.startsWith('AUDIT') ? 33 : 31;
  return `\x1b[${c}m${v}\x1b[0m`;
};

const ANSI = new RegExp(String.fromCharCode(27) + '\\[[0-9;]*m', 'g');
const visible = (s: string) => s.replace(ANSI, '').length;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => visible(r[i]!))));
  return rows.map((r) => r.map((c, i) => c + ' '.repeat(widths[i]! - visible(c))).join('  ')).join('\n') + '\n';
}

const short = (p: string) => p.replace('CiliumNetworkPolicy/', 'CNP/').replace('CiliumClusterwideNetworkPolicy/', 'CCNP/').replace(/^NetworkPolicy\//, 'NP/');

function sideText(s: { enforced: boolean; verdict: string; allowedBy: string[]; deniedBy: string[]; reason: string; l7?: string | null }): string {
  if (!s.enforced) return 'not enforced';
  const by = s.verdict === 'allowed' ? s.allowedBy : s.deniedBy;
  const l7 = s.l7 && s.l7 !== 'not-evaluated' ? ` (L7 ${s.l7})` : '';
  if (by.length) return `${s.verdict}${l7} by ${by.map(short).join(', ')}`;
  return s.reason.startsWith('default deny') ? 'default deny' : s.reason;
}

async function traceDemo(): Promise<void> {
  const flows: Array<[string, string[]]> = [
    ['frontend → backend ICMP echo', ['--from', 'prod/frontend', '--to', 'prod/backend', '--port', '8/ICMP']],
    ['frontend → backend GET /api/items', ['--from', 'prod/frontend', '--to', 'prod/backend', '--port', '8080', '--http', 'GET /api/items']],
    ['frontend → backend GET /admin', ['--from', 'prod/frontend', '--to', 'prod/backend', '--port', '8080', '--http', 'GET /admin']],
    ['frontend → backend gRPC GetItem', ['--from', 'prod/frontend', '--to', 'prod/backend', '--port', '50051', '--http', 'POST /shop.Catalog/GetItem']],
    ['frontend → backend gRPC DeleteItem', ['--from', 'prod/frontend', '--to', 'prod/backend', '--port', '50051', '--http', 'POST /shop.Catalog/DeleteItem']],
    ['frontend → db TCP/5432', ['--from', 'prod/frontend', '--to', 'prod/db', '--port', '5432']],
    ['frontend → crawler TCP/80', ['--from', 'prod/frontend', '--to', 'prod/crawler', '--port', '80']],
    ['crawler → backend (egress default deny)', ['--from', 'prod/crawler', '--to', 'prod/backend', '--port', '80']],
    ['backend → empire-hq 9093 (deny rule)', ['--from', 'prod/backend', '--to', 'prod/empire-hq', '--port', '9093']],
    ['staging frontend → prod db (CCNP deny)', ['--from', 'staging/frontend', '--to', 'prod/db', '--port', '5432']],
    ['empire-hq → kafka produce announce', ['--from', 'prod/empire-hq', '--to', 'prod/kafka', '--port', '9092', '--kafka', 'produce empire-announce']],
    ['empire-hq DNS api.example.com', ['--from', 'prod/empire-hq', '--to', 'kube-system/coredns', '--port', '53/UDP', '--dns', 'api.example.com']],
    ['empire-hq DNS evil.org', ['--from', 'prod/empire-hq', '--to', 'kube-system/coredns', '--port', '53/UDP', '--dns', 'evil.org']],
    ['empire-hq → api.example.com:443', ['--from', 'prod/empire-hq', '--to', '93.184.216.34', '--port', '443', '--fqdn', 'api.example.com']],
    ['empire-hq → unknown IP :443', ['--from', 'prod/empire-hq', '--to', '93.184.216.34', '--port', '443']],
    ['world → frontend 8080', ['--from', '8.8.8.8', '--to', 'prod/frontend', '--port', '8080']],
    ['10.100.5.5 → db 5432 (ipBlock except)', ['--from', '10.100.5.5', '--to', 'prod/db', '--port', '5432']],
  ];
  process.stdout.write(bold(`\n== policy trace: ${flows.length} flows against policies/ (offline) ==\n\n`));
  const rows = [['FLOW', 'VERDICT', 'SOURCE EGRESS', 'DESTINATION INGRESS']];
  for (const [label, args] of flows) {
    const io = captureIo();
    const code = await traceRun(['--policies', policies, '--endpoints', endpointsFile, ...args, '--json'], io);
    if (code !== 0) {
      rows.push([label, 'ERROR', io.stderr.trim(), '']);
      continue;
    }
    const r = JSON.parse(io.stdout);
    rows.push([label, colour(r.verdict.toUpperCase()), sideText(r.egress), sideText(r.ingress)]);
  }
  process.stdout.write(table(rows));
  process.stdout.write(`\nExplain any flow: ${path.relative(process.cwd(), membrane)} policy trace --policies policies --endpoints test/golden/endpoints.yaml --from prod/frontend --to prod/backend --port 8080 --http 'GET /admin'\n`);
}

function sh(cmd: string, args: string[], opts: { ns?: string; input?: string } = {}): { code: number; stdout: string; stderr: string } {
  const full = opts.ns ? ['nsenter', [`--net=/run/netns/${opts.ns}`, cmd, ...args]] : [cmd, args];
  const r = spawnSync(full[0] as string, full[1] as string[], { encoding: 'utf8', input: opts.input });
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

async function liveDemo(): Promise<void> {
  process.stdout.write(bold('\n== live: eBPF enforcement in network namespaces ==\n\n'));
  if (process.getuid?.() !== 0) {
    process.stdout.write('Skipped: the live part needs root (CAP_BPF and CAP_NET_ADMIN) to create network namespaces and\nload eBPF programs. Run `sudo npm run demo` to see it.\n');
    return;
  }
  const tag = `mbd${process.pid % 100000}`;
  const node = `${tag}node`;
  const dir = mkdtempSync(path.join(tmpdir(), 'membrane-demo-'));
  const bpfRoot = `/sys/fs/bpf/membrane-demo-${process.pid}`;
  const stateDir = path.join(dir, 'state');
  const socket = path.join(dir, 'agent.sock');
  const eps = [
    ['frontend', 'prod', '{app: frontend, role: frontend, tier: web}', '10.200.1.10'],
    ['backend', 'prod', '{app: backend, role: backend, tier: api}', '10.200.1.20'],
    ['db', 'prod', '{app: db, role: db}', '10.200.1.30'],
    ['crawler', 'prod', '{role: crawler, app: crawler}', '10.200.1.50'],
    ['empire-hq', 'prod', '{app: empire-hq}', '10.200.1.60'],
    ['coredns', 'kube-system', '{k8s-app: kube-dns}', '10.200.0.53'],
  ] as const;
  const epFile = path.join(dir, 'endpoints.yaml');
  writeFileSync(
    epFile,
    `namespaces:\n  - {name: prod, labels: {env: prod, team: shop}}\n  - {name: kube-system}\nendpoints:\n` +
      eps.map(([n, ns, labels, ip]) => `  - {name: ${n}, namespace: ${ns}, labels: ${labels}, ips: [${ip}], netns: ${tag}-${n}, ports: {http: 8080}}\n`).join(''),
  );
  const children: ChildProcess[] = [];
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    sh(process.execPath, [membrane, 'cleanup', '--bpf-root', bpfRoot, '--state-dir', stateDir, '--endpoints', epFile], { ns: node });
    for (const [n] of eps) sh('ip', ['netns', 'del', `${tag}-${n}`]);
    sh('ip', ['netns', 'del', node]);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  ensurePackages({ dnsmasq: 'dnsmasq-base', dig: 'dnsutils' });
  try {
    sh('ip', ['netns', 'add', node]);
    sh('ip', ['link', 'set', 'lo', 'up'], { ns: node });
    const up = sh(process.execPath, [membrane, 'endpoint', 'up', '--endpoints', epFile], { ns: node });
    if (up.code !== 0) throw new Error(`endpoint up failed: ${up.stderr}`);
    process.stdout.write(`node namespace ${node}; pods ${eps.map(([n]) => `${tag}-${n}`).join(', ')}\n`);
    const agent = spawn('nsenter', [`--net=/run/netns/${node}`, process.execPath, membrane, 'agent', '--policies', policies, '--endpoints', epFile, '--socket', socket, '--state-dir', stateDir, '--bpf-root', bpfRoot], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(agent);
    let agentLog = '';
    agent.stderr!.on('data', (d) => (agentLog += d));
    let ready = false;
    for (let i = 0; i < 300 && !ready; i++) {
      ready = sh(process.execPath, [membrane, 'status', '--socket', socket]).code === 0;
      if (!ready) await new Promise((r) => setTimeout(r, 100));
    }
    if (!ready) throw new Error(`agent not ready:\n${agentLog}`);
    process.stdout.write('agent ready: policies/ enforced by eBPF on every pod veth\n\n');
    const server = path.join(root, 'test', 'e2e', 'helpers', 'traffic', 'server.mjs');
    const client = path.join(root, 'test', 'e2e', 'helpers', 'traffic', 'client.mjs');
    for (const [n] of eps) {
      const s = spawn('nsenter', [`--net=/run/netns/${tag}-${n}`, process.execPath, server, '--tcp', '5432', '--tcp', '80', '--tcp', '9999', '--udp', '5353'], { stdio: ['ignore', 'pipe', 'ignore'] });
      children.push(s);
      await new Promise<void>((resolve) => s.stdout!.once('data', () => resolve()));
    }
    const tries: Array<[string, string, string, number, string]> = [
      ['frontend → db TCP/5432', 'frontend', 'tcp', 5432, '10.200.1.30'],
      ['backend → db TCP/5432', 'backend', 'tcp', 5432, '10.200.1.30'],
      ['crawler → db TCP/5432', 'crawler', 'tcp', 5432, '10.200.1.30'],
      ['crawler → backend TCP/80', 'crawler', 'tcp', 80, '10.200.1.20'],
      ['frontend → crawler TCP/9999', 'frontend', 'tcp', 9999, '10.200.1.50'],
      ['backend → db UDP/5353', 'backend', 'udp', 5353, '10.200.1.30'],
      ['db → frontend UDP/5353', 'db', 'udp', 5353, '10.200.1.10'],
    ];
    const rows = [['TRAFFIC', 'RESULT']];
    for (const [label, from, proto, port, ip] of tries) {
      const r = sh(process.execPath, [client, proto, ip, String(port), '--timeout', '700'], { ns: `${tag}-${from}` });
      const res = JSON.parse(r.stdout.trim() || '{"result":"error"}').result as string;
      rows.push([label, colour(res === 'ok' ? 'ALLOWED (reply)' : res === 'timeout' ? 'DROPPED (no reply)' : res)]);
    }
    const p = sh('ping', ['-c1', '-W1', '10.200.1.20'], { ns: `${tag}-frontend` });
    rows.push(['frontend → backend ICMP echo', colour(p.code === 0 ? 'ALLOWED (reply)' : 'DROPPED (no reply)')]);
    await waitForProxyPolicy(stateDir);
    // L7 through the proxy: HTTP on the backend's 8080 and gRPC on 50051 are redirected by the
    // datapath to `membrane proxy`, which applies policies/l7/http and policies/l7/grpc.
    const web = spawn('nsenter', [`--net=/run/netns/${tag}-backend`, process.execPath, server, '--http', '8080'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(web);
    await new Promise<void>((resolve) => web.stdout!.once('data', () => resolve()));
    const grpcPeer = path.join(root, 'scripts', 'demo-grpc.mjs');
    const g = spawn('nsenter', [`--net=/run/netns/${tag}-backend`, process.execPath, grpcPeer, 'server', '50051'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(g);
    await new Promise<void>((resolve) => g.stdout!.once('data', () => resolve()));
    for (const [label, target] of [['frontend → backend HTTP GET /api/items', '/api/items'], ['frontend → backend HTTP GET /admin', '/admin']] as const) {
      const r = sh(process.execPath, [client, 'http', '10.200.1.20', '8080', '--path', target, '--timeout', '2000'], { ns: `${tag}-frontend` });
      const res = JSON.parse(r.stdout.trim() || '{"result":"error"}') as { result: string; status?: number; body?: string };
      const body = (res.body ?? '').trim().slice(0, 30);
      rows.push([label, colour(res.status === 200 ? 'ALLOWED (200)' : res.status ? `DENIED (${res.status} ${body})` : res.result)]);
    }
    for (const method of ['GetItem', 'DeleteItem']) {
      const r = sh(process.execPath, [grpcPeer, 'call', '10.200.1.20:50051', method], { ns: `${tag}-frontend` });
      const res = JSON.parse(r.stdout.trim() || '{"ok":false,"code":-1,"details":"no answer"}') as { ok: boolean; code: number; details: string };
      rows.push([`frontend → backend gRPC ${method}`, colour(res.ok ? 'ALLOWED (OK)' : `DENIED (grpc-status ${res.code}${res.details ? `: ${res.details}` : ''})`)]);
    }
    rows.push(...(await fqdnDemo(tag, node, dir, server, client, children)));
    process.stdout.write(table(rows));
    process.stdout.write(bold('\nmembrane observe (what the datapath decided, and which policy decided it):\n\n'));
    const obs = sh(process.execPath, [membrane, 'observe', '--socket', socket, '--json']);
    const frows = [['SOURCE', 'DESTINATION', 'PROTO', 'VERDICT', 'EGRESS', 'INGRESS']];
    for (const line of obs.stdout.split('\n').filter(Boolean)) {
      const f = JSON.parse(line);
      if (!f.source.name && !f.destination.name) continue; // e.g. IPv6 router solicitations
      const who = (x: { namespace: string | null; name: string | null; ip: string; port: number }) => `${x.name ? `${x.namespace}/${x.name}` : x.ip}${x.port ? `:${x.port}` : ''}`;
      const l7 = !f.l7
        ? ''
        : f.l7.type === 'dns'
          ? ` ${f.l7.query} → ${f.l7.rcode}${f.l7.ips.length ? ` ${f.l7.ips.join(',')} ttl ${f.l7.ttl}` : ''}`
          : ` ${f.l7.method} ${f.l7.url} → ${f.l7.code}${f.l7.grpcStatus ? ` grpc-status ${f.l7.grpcStatus}` : ''}`;
      frows.push([who(f.source), who(f.destination), f.protocol + (f.l7 ? `/${f.l7.type}` : ''), colour(f.verdict + (f.dropReason ? ` ${f.dropReason}` : '')) + l7, sideText(f.egress), sideText(f.ingress)]);
    }
    process.stdout.write(table(frows));
  } finally {
    cleanup();
    process.stdout.write('\ncleaned up: namespaces, programs, pins and processes removed\n');
  }
}

/** Waits (up to 15 s) until `membrane proxy` serves the agent's policy: before, it denies redirected requests. */
async function waitForProxyPolicy(stateDir: string): Promise<void> {
  const revision = () =>
    new Promise<number>((resolve) => {
      const req = http.get({ socketPath: path.join(stateDir, 'proxy.sock'), path: '/v1/status', timeout: 1000 }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => {
          try {
            resolve(Number((JSON.parse(b) as { revision?: number }).revision ?? 0));
          } catch {
            resolve(0);
          }
        });
      });
      req.on('error', () => resolve(0));
      req.on('timeout', () => req.destroy());
    });
  for (let i = 0; i < 150 && (await revision()) < 1; i++) await new Promise((r) => setTimeout(r, 100));
}

/** Installs Debian packages for commands the live part needs (root on Debian only). */
function ensurePackages(cmds: Record<string, string>): void {
  const pkgs = Object.entries(cmds).filter(([c]) => sh('sh', ['-c', `command -v ${c} || test -x /usr/sbin/${c}`]).code !== 0).map(([, p]) => p);
  if (pkgs.length === 0 || sh('sh', ['-c', 'command -v apt-get']).code !== 0) return;
  process.stdout.write(`installing ${pkgs.join(' ')} (apt-get)…\n`);
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/**
 * The FQDN allowlist of policies/fqdn/fqdn-allowlist.yaml at work: empire-hq may resolve
 * *.example.com through kube-dns (the DNS proxy), and connect to :443 only on IPs learned for
 * api.example.com.
 */
async function fqdnDemo(tag: string, node: string, dir: string, server: string, client: string, children: ChildProcess[]): Promise<string[][]> {
  const rows: string[][] = [];
  sh('ip', ['route', 'add', 'local', '93.184.216.0/24', 'dev', 'lo'], { ns: node });
  const world = spawn('nsenter', [`--net=/run/netns/${node}`, process.execPath, server, '--tcp', '443', '--host', '0.0.0.0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(world);
  await new Promise<void>((resolve) => world.stdout!.once('data', () => resolve()));
  const dnsmasq = spawn(
    'nsenter',
    [
      `--net=/run/netns/${tag}-coredns`,
      'dnsmasq',
      '-k',
      '-C',
      '/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      '--listen-address=10.200.0.53',
      `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
      '--host-record=api.example.com,93.184.216.34,60',
      '--host-record=www.example.com,93.184.216.35,60',
      '--host-record=evil.org,93.184.216.66,60',
    ],
    { stdio: 'ignore' },
  );
  children.push(dnsmasq);
  await new Promise((r) => setTimeout(r, 300));
  const from = `${tag}-empire-hq`;
  const connect = (ip: string) => {
    const r = sh(process.execPath, [client, 'tcp', ip, '443', '--timeout', '700'], { ns: from });
    const res = JSON.parse(r.stdout.trim() || '{"result":"error"}').result as string;
    return colour(res === 'ok' ? 'ALLOWED (reply)' : res === 'timeout' ? 'DROPPED (no reply)' : res);
  };
  const lookup = (name: string) => {
    const r = sh('dig', ['@10.200.0.53', name, '+time=2', '+tries=1', '+noall', '+comments', '+answer'], { ns: from });
    const status = /status: (\w+)/.exec(r.stdout)?.[1] ?? 'no answer';
    const ips = [...r.stdout.matchAll(/\sA\s+(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]);
    return colour(status === 'NOERROR' ? `ANSWERED (${ips.join(', ')})` : `DENIED (${status})`);
  };
  rows.push(['empire-hq → 93.184.216.34:443 before any lookup', connect('93.184.216.34')]);
  rows.push(['empire-hq DNS api.example.com (via the DNS proxy)', lookup('api.example.com')]);
  rows.push(['empire-hq → 93.184.216.34:443 (learned: api.example.com)', connect('93.184.216.34')]);
  rows.push(['empire-hq DNS evil.org', lookup('evil.org')]);
  rows.push(['empire-hq DNS www.example.com', lookup('www.example.com')]);
  rows.push(['empire-hq → 93.184.216.35:443 (www: not in toFQDNs)', connect('93.184.216.35')]);
  return rows;
}

await traceDemo();
await liveDemo();
