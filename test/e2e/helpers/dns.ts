// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers/dns
 *
 * Real DNS peers inside test namespaces (DESIGN §5), for the DNS proxy and FQDN policy tests:
 *
 * - {@link startDnsmasq}: dnsmasq from flags only (`-k -C /dev/null --no-resolv --no-hosts
 *   --bind-interfaces`), A/AAAA/CNAME records with per-record TTLs. Starts in ~30 ms. It follows
 *   its own CNAMEs, so `www -> mid -> a` comes back as one chain.
 * - {@link startNsd}: nsd, authoritative for generated zone files (SOA, NS + glue, your records).
 * - {@link startUnbound}: unbound as a recursive resolver with a stub zone per zone, in front of
 *   nsd on another port: CNAME chains across zones are resolved by a real resolver, each record
 *   keeping the TTL it was given (then counting down in unbound's cache).
 * - {@link dig}: one query with `dig`, parsed (rcode, flags, sections; `TIMEOUT` when no reply).
 * - {@link runDnsperf}: `dnsperf` for a fixed time, parsed (qps, latency, optional percentiles).
 *
 * Every file lives in a temp dir (removed on stop and by the harness's cleanup), processes are
 * stopped by pid, nothing under /etc, /run or /var is read or written. Addresses must already
 * exist in the namespace (127.0.0.1 after `createNode`; {@link addLoopbackAddress} adds more).
 *
 * TTL facts measured with dig (dnsmasq 2.90, nsd 4.6.1, unbound 1.17.1):
 * - dnsmasq: `--host-record=NAME,IP,TTL` (one flag per address: a second IPv4 address in the
 *   same flag replaces the first) and `--cname=NAME,TARGET,TTL` answer with exactly that
 *   TTL every time (no countdown: local data is not cached); records without a TTL use
 *   `--local-ttl` (dnsmasq's default is 0). Unknown names are REFUSED (no upstream) unless under
 *   `localDomains` (`--local=/d/`), then NXDOMAIN, without SOA.
 * - nsd: the zone file's TTLs, always the same.
 * - unbound: the first answer carries the zone's TTLs; later answers come from its cache and count
 *   down (a record given 120 shows 118 two seconds later), each record of a chain separately.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { inNs, spawnInNs, type NsProcess } from './ns.ts';
import { which } from './privileges.ts';
import { trackDir, untrackDir } from './registry.ts';

// ---------------------------------------------------------------------------------------------
// dig

/** One resource record as dig prints it. */
export interface DnsAnswer {
  /** Owner name, without the trailing dot. */
  name: string;
  ttl: number;
  /** Class, normally `IN`. */
  class: string;
  /** Type mnemonic: `A`, `AAAA`, `CNAME`, `SOA`… */
  type: string;
  /** The rdata as printed; for CNAME, DNAME, NS and PTR the target without the trailing dot. */
  data: string;
}

/** Result of {@link dig}. */
export interface DigResult {
  /**
   * The response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`…), or `TIMEOUT` when no reply
   * came, or `ERROR` for any other failure (connection refused over TCP, bad arguments; see
   * `error`).
   */
  rcode: string;
  /** Header flags (`qr`, `aa`, `rd`, `ra`, `tc`…). */
  flags: string[];
  answers: DnsAnswer[];
  authority: DnsAnswer[];
  additional: DnsAnswer[];
  /** dig's "Query time", when printed. */
  queryTimeMs?: number;
  /** dig's message when `rcode` is TIMEOUT or ERROR. */
  error?: string;
  /** dig's exit status (0 for any reply, 9 for no reply). */
  exitCode: number;
  /** dig's whole output. */
  raw: string;
}

/** Options of {@link dig}. */
export interface DigOptions {
  /** Query type (default `A`). */
  type?: string;
  /** Over TCP (`+tcp`). */
  tcp?: boolean;
  /** Server port (default 53). */
  port?: number;
  /** How long to wait for a reply, rounded up to whole seconds for `+time` (default 1000). */
  timeoutMs?: number;
  /** Attempts (`+tries`, default 1). */
  tries?: number;
  /** Set RD (default true). */
  recurse?: boolean;
  /** More dig arguments, e.g. `['+noedns']`, `['-b', '10.0.0.5']`. */
  args?: string[];
}

const NAME_DATA_TYPES = new Set(['CNAME', 'DNAME', 'NS', 'PTR']);

/**
 * Sends one query with `dig` from namespace NS and parses the reply
 * (`dig +noall +comments +answer +authority +additional +stats`).
 * @param ns namespace to query from
 * @param server server address (IPv4 or IPv6)
 * @param name the name to look up
 * @param o type, tcp, port, timeoutMs, tries, recurse, extra args
 * @returns the parsed reply; never throws for a timeout or a DNS error (read `rcode`)
 * @throws Error when dig is not installed (Debian: dnsutils)
 * @example
 * const r = await dig(pod, '10.53.0.1', 'www.a.test', { port: 5353 });
 * assert.equal(r.rcode, 'NOERROR');
 * assert.deepEqual(r.answers.map((a) => a.type), ['CNAME', 'A']);
 */
export async function dig(ns: string, server: string, name: string, o: DigOptions = {}): Promise<DigResult> {
  if (!which('dig')) throw new Error('dig is not installed (Debian: apt-get install dnsutils)');
  const seconds = Math.max(1, Math.ceil((o.timeoutMs ?? 1000) / 1000));
  const tries = o.tries ?? 1;
  const args = [`@${server}`, '-p', String(o.port ?? 53), name, o.type ?? 'A'];
  args.push('+noall', '+comments', '+answer', '+authority', '+additional', '+stats', `+time=${seconds}`, `+tries=${tries}`);
  if (o.tcp) args.push('+tcp');
  if (o.recurse === false) args.push('+norecurse');
  args.push(...(o.args ?? []));
  const r = await inNs(ns, 'dig', args, { timeoutMs: seconds * tries * 1000 + 10_000 });
  return parseDig(r.stdout + (r.stderr ? `\n${r.stderr}` : ''), r.code);
}

/**
 * Parses the output of `dig +comments +answer…` (exported for unit tests).
 * @param raw dig's stdout (and stderr)
 * @param exitCode dig's exit status
 */
export function parseDig(raw: string, exitCode: number): DigResult {
  const res: DigResult = { rcode: '', flags: [], answers: [], authority: [], additional: [], exitCode, raw };
  let section: DnsAnswer[] | undefined;
  for (const line of raw.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    if (t.startsWith(';')) {
      const status = /status:\s*([A-Z0-9]+)/.exec(t);
      if (t.includes('->>HEADER<<-') && status) res.rcode = status[1]!;
      const flags = /^;; flags:([^;]*);/.exec(t);
      if (flags) res.flags = flags[1]!.trim().split(/\s+/).filter(Boolean);
      const sec = /^;; (ANSWER|AUTHORITY|ADDITIONAL|QUESTION|OPT PSEUDO)\s*SECTION:/.exec(t);
      if (sec) section = sec[1] === 'ANSWER' ? res.answers : sec[1] === 'AUTHORITY' ? res.authority : sec[1] === 'ADDITIONAL' ? res.additional : undefined;
      const qt = /^;; Query time:\s*(\d+)\s*msec/.exec(t);
      if (qt) res.queryTimeMs = Number(qt[1]);
      if (/timed out|no servers could be reached|communications error|connection refused|couldn't get address/i.test(t) && !res.rcode)
        res.error = (res.error ? `${res.error}; ` : '') + t.replace(/^;;\s*/, '');
      continue;
    }
    const m = /^(\S+)\s+(\d+)\s+([A-Z0-9]+)\s+([A-Z0-9-]+)\s*(.*)$/.exec(t);
    if (m && section) {
      const type = m[4]!;
      let data = m[5]!.trim();
      if (NAME_DATA_TYPES.has(type)) data = stripDot(data);
      section.push({ name: stripDot(m[1]!), ttl: Number(m[2]), class: m[3]!, type, data });
    } else if (!m) {
      // not a record: dig's own complaints ("dig: couldn't get address for …")
      res.error = (res.error ? `${res.error}; ` : '') + t;
    }
  }
  if (res.rcode) {
    delete res.error;
  } else {
    res.rcode = /timed out/i.test(res.error ?? raw) && !/connection refused/i.test(raw) ? 'TIMEOUT' : 'ERROR';
    if (!res.error) res.error = raw.trim() || `dig exited ${exitCode}`;
  }
  return res;
}

function stripDot(s: string): string {
  return s.length > 1 && s.endsWith('.') ? s.slice(0, -1) : s;
}

/**
 * Waits until a DNS server answers anything (any rcode, even REFUSED) to a query for NAME.
 * @param ns namespace to query from
 * @param server server address
 * @param port server port
 * @param o `name` to ask (default `.` SOA), `tcp`, `timeoutMs` overall (default 10 000)
 * @throws Error with the last dig output when it never answers
 */
export async function waitForDns(
  ns: string,
  server: string,
  port: number,
  o: { name?: string; type?: string; tcp?: boolean; timeoutMs?: number; alive?: () => boolean } = {},
): Promise<void> {
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  let last: DigResult | undefined;
  for (;;) {
    last = await dig(ns, server, o.name ?? '.', { port, type: o.type ?? 'SOA', tcp: o.tcp, timeoutMs: 1000, recurse: false });
    if (last.rcode !== 'TIMEOUT' && last.rcode !== 'ERROR') return;
    if (o.alive && !o.alive()) throw new Error(`DNS server ${server}#${port} in ${ns} exited before answering`);
    if (Date.now() > deadline) throw new Error(`DNS server ${server}#${port} in ${ns} never answered: ${last.raw.trim()}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

/**
 * Adds ADDRESS to `lo` in NS (`/32` or `/128 nodad`) unless it is already there, so a server can
 * listen on it.
 * @param ns namespace (one this test created)
 * @param address IPv4 or IPv6 address
 * @throws Error with ip's message on failure
 */
export async function addLoopbackAddress(ns: string, address: string): Promise<void> {
  const v = isIP(address);
  if (!v) throw new Error(`not an IP address: ${address}`);
  const have = await inNs(ns, 'ip', ['-j', 'addr', 'show']);
  const addrs = (JSON.parse(have.stdout || '[]') as Array<{ addr_info?: Array<{ local?: string }> }>).flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
  if (addrs.includes(address)) return;
  const r = await inNs(ns, 'ip', v === 4 ? ['addr', 'add', `${address}/32`, 'dev', 'lo'] : ['addr', 'add', `${address}/128`, 'dev', 'lo', 'nodad']);
  if (r.code !== 0) throw new Error(`ip addr add ${address} dev lo in ${ns}: ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------------
// servers

/** A running DNS server. */
export interface DnsServer {
  /** Its pid (the server itself: nsenter execs it). */
  readonly pid: number;
  readonly ns: string;
  /** Listening address and port (UDP and TCP). */
  readonly address: string;
  readonly port: number;
  /** Its temp dir (configs, zone files, logs). */
  readonly dir: string;
  readonly proc: NsProcess;
  /**
   * Queries received so far, counted from the query log.
   * @throws Error unless started with `logQueries: true`
   */
  queries(): number;
  /** The query log parsed (`logQueries: true`), oldest first. */
  queryLog(): Array<{ name: string; type: string; from: string }>;
  /** Stops it (SIGTERM, then SIGKILL after 2 s) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

function tempDir(kind: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `membrane-${kind}-`));
  trackDir(dir);
  return dir;
}

function requireTool(tool: string, pkg: string): void {
  if (!which(tool)) throw new Error(`${tool} is not installed (Debian: apt-get install ${pkg})`);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad port ${port}`);
}

function checkTtl(ttl: number | undefined, what: string): void {
  if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 0 || ttl > 2147483647)) throw new Error(`bad TTL ${ttl} for ${what}`);
}

function checkName(name: string): string {
  const n = stripDot(name.trim()).toLowerCase();
  if (!/^[a-z0-9_*-]+(\.[a-z0-9_-]+)*$/.test(n)) throw new Error(`bad DNS name '${name}'`);
  return n;
}

/**
 * Starts PROC, waits for the server to answer on ADDRESS#PORT, wraps it as a {@link DnsServer}.
 * Kills it and removes DIR when it never answers.
 */
async function serve(
  proc: NsProcess,
  ns: string,
  address: string,
  port: number,
  dir: string,
  logQueries: boolean,
  parseLog: (text: string) => Array<{ name: string; type: string; from: string }>,
  probe: { name?: string; type?: string } = {},
): Promise<DnsServer> {
  let exited = false;
  void proc.exited.then(() => (exited = true));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await proc.kill('SIGTERM', 2000);
    rmSync(dir, { recursive: true, force: true });
    untrackDir(dir);
  };
  try {
    await waitForDns(ns, address, port, { ...probe, alive: () => !exited });
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\nstdout: ${proc.stdout}\nstderr: ${proc.stderr}`);
  }
  const log = () => parseLog(proc.stdout + proc.stderr);
  return {
    pid: proc.pid,
    ns,
    address,
    port,
    dir,
    proc,
    queries() {
      if (!logQueries) throw new Error('queries() needs logQueries: true');
      return log().length;
    },
    queryLog() {
      if (!logQueries) throw new Error('queryLog() needs logQueries: true');
      return log();
    },
    stop,
  };
}

/** A record served by {@link startDnsmasq}: addresses or one CNAME, never both. */
export interface DnsmasqRecord {
  name: string;
  a?: string[];
  aaaa?: string[];
  /** Target name (dnsmasq must know it: another record here). */
  cname?: string;
  /** TTL of this name's answers (default: the server's `ttl`). */
  ttl?: number;
}

/** Options of {@link startDnsmasq}. */
export interface DnsmasqOptions {
  /** Address to listen on (must exist in the namespace). */
  listen: string;
  /** Port (default 53). */
  port?: number;
  records?: DnsmasqRecord[];
  /** TTL of records without their own (`--local-ttl`; dnsmasq's default is 0). */
  ttl?: number;
  /** Log every query (to count them with `queries()`); costs some speed under dnsperf. */
  logQueries?: boolean;
  /**
   * Domains answered from local data only (`--local=/d/`): unknown names under them get
   * NXDOMAIN instead of REFUSED.
   */
  localDomains?: string[];
  /** Upstream servers (`--server=IP#PORT`) for names not found locally. */
  servers?: string[];
  /** More dnsmasq flags. */
  args?: string[];
}

/**
 * Starts dnsmasq in NS from flags only and resolves once it answers. Its argv:
 * `dnsmasq -k -C /dev/null --no-resolv --no-hosts --no-poll --bind-interfaces --listen-address=A
 * --port=P [--local-ttl=T] [--local=/d/] [--server=…] --host-record=NAME,IP[,TTL] (one per address)
 * --cname=NAME,TARGET[,TTL] --pid-file=DIR/dnsmasq.pid --log-facility=- [--log-queries]`.
 * @param ns namespace (one this test created)
 * @param o listen address, port, records, default TTL, query log, local domains, upstreams
 * @returns the running server
 * @throws Error when dnsmasq is missing, a record is malformed, or it does not answer in 10 s
 * @example
 * const dns = await startDnsmasq(pod, { listen: '127.0.0.1', port: 5353, ttl: 60,
 *   records: [{ name: 'api.example.com', a: ['192.0.2.10'], ttl: 30 }] });
 */
export async function startDnsmasq(ns: string, o: DnsmasqOptions): Promise<DnsServer> {
  requireTool('dnsmasq', 'dnsmasq-base');
  const port = o.port ?? 53;
  checkPort(port);
  if (!isIP(o.listen)) throw new Error(`listen must be an IP address, got '${o.listen}'`);
  checkTtl(o.ttl, 'ttl');
  const args = ['-k', '-C', '/dev/null', '--no-resolv', '--no-hosts', '--no-poll', '--bind-interfaces', `--listen-address=${o.listen}`, `--port=${port}`];
  if (o.ttl !== undefined) args.push(`--local-ttl=${o.ttl}`);
  for (const d of o.localDomains ?? []) args.push(`--local=/${checkName(d)}/`);
  for (const s of o.servers ?? []) args.push(`--server=${s}`);
  for (const rec of o.records ?? []) {
    const name = checkName(rec.name);
    checkTtl(rec.ttl, name);
    const addrs = [...(rec.a ?? []), ...(rec.aaaa ?? [])];
    for (const a of rec.a ?? []) if (isIP(a) !== 4) throw new Error(`${name}: not an IPv4 address: ${a}`);
    for (const a of rec.aaaa ?? []) if (isIP(a) !== 6) throw new Error(`${name}: not an IPv6 address: ${a}`);
    const ttl = rec.ttl !== undefined ? `,${rec.ttl}` : '';
    if (rec.cname !== undefined) {
      if (addrs.length) throw new Error(`${name}: a CNAME cannot have addresses too`);
      args.push(`--cname=${name},${checkName(rec.cname)}${ttl}`);
    } else if (addrs.length) {
      // one address per flag: a --host-record takes at most one IPv4 and one IPv6 address
      for (const a of addrs) args.push(`--host-record=${name},${a}${ttl}`);
    } else {
      throw new Error(`${name}: a record needs a, aaaa or cname`);
    }
  }
  const dir = tempDir('dnsmasq');
  args.push(`--pid-file=${path.join(dir, 'dnsmasq.pid')}`, '--log-facility=-');
  if (o.logQueries) args.push('--log-queries');
  args.push(...(o.args ?? []));
  writeFileSync(path.join(dir, 'argv'), ['dnsmasq', ...args].join('\n') + '\n');
  const proc = spawnInNs(ns, 'dnsmasq', args);
  // dnsmasq[PID]: query[A] name from 10.0.0.1
  const parse = (text: string) =>
    [...text.matchAll(/query\[([A-Za-z0-9]+)\] (\S+) from (\S+)/g)].map((m) => ({ type: m[1]!, name: m[2]!, from: m[3]! }));
  const probe = o.records?.[0] ? { name: checkName(o.records[0].name), type: 'A' } : { name: '.', type: 'SOA' };
  return serve(proc, ns, o.listen, port, dir, !!o.logQueries, parse, probe);
}

/** A record of a zone for {@link startNsd} / {@link startUnbound}. */
export interface ZoneRecord {
  /**
   * Owner: `@` for the apex, a name relative to the zone (`www`), or a full name inside it
   * (`www.a.test`, with or without the trailing dot).
   */
  name: string;
  /** Type mnemonic (`A`, `AAAA`, `CNAME`, `TXT`, `MX`…). */
  type: string;
  /**
   * Rdata in zone-file syntax. CNAME/DNAME/NS/PTR targets are absolute (a trailing dot is added);
   * for other types write absolute names with the dot yourself (`10 mail.a.test.`).
   */
  data: string;
  /** TTL (default: the zone's `ttl`). */
  ttl?: number;
}

/** A zone served by nsd. */
export interface Zone {
  /** Zone apex, e.g. `a.test`. */
  name: string;
  /** `$TTL` of records without their own (default 300). */
  ttl?: number;
  /** SOA minimum, the negative-caching TTL (default 30). */
  negativeTtl?: number;
  records: ZoneRecord[];
}

/** Options of {@link startNsd}. */
export interface NsdOptions {
  /** Address to listen on (must exist in the namespace). */
  listen: string;
  /** Port (default 53). */
  port?: number;
  zones: Zone[];
}

/**
 * The zone file nsd gets for ZONE: SOA (`ns.ZONE.` / `hostmaster.ZONE.`), NS `ns.ZONE.` with glue
 * pointing at NS_ADDRESS (unless the records define `ns` themselves), then the records.
 * Exported for unit tests.
 * @param zone the zone
 * @param nsAddress the authoritative server's address (glue)
 */
export function zoneFile(zone: Zone, nsAddress: string): string {
  const apex = checkName(zone.name);
  checkTtl(zone.ttl, apex);
  checkTtl(zone.negativeTtl, apex);
  const abs = (n: string) => {
    const t = n.trim();
    if (t === '@' || t === '') return `${apex}.`;
    if (t.endsWith('.')) return `${checkName(t)}.`;
    const lower = t.toLowerCase();
    if (lower === apex || lower.endsWith(`.${apex}`)) return `${checkName(t)}.`;
    return `${checkName(`${t}.${apex}`)}.`;
  };
  const lines = [
    `$ORIGIN ${apex}.`,
    `$TTL ${zone.ttl ?? 300}`,
    `@ 3600 IN SOA ns.${apex}. hostmaster.${apex}. 1 3600 600 86400 ${zone.negativeTtl ?? 30}`,
    `@ 3600 IN NS ns.${apex}.`,
  ];
  const owners = new Set(zone.records.map((r) => abs(r.name)));
  if (!owners.has(`ns.${apex}.`)) lines.push(`ns.${apex}. 3600 IN ${isIP(nsAddress) === 6 ? 'AAAA' : 'A'} ${nsAddress}`);
  for (const r of zone.records) {
    const type = r.type.toUpperCase();
    if (!/^[A-Z0-9]+$/.test(type)) throw new Error(`bad record type '${r.type}'`);
    checkTtl(r.ttl, r.name);
    let data = r.data.trim();
    if (NAME_DATA_TYPES.has(type)) data = `${checkName(data)}.`;
    if (/[\n\r]/.test(data)) throw new Error(`record data of ${r.name} has a newline`);
    lines.push(`${abs(r.name)} ${r.ttl ?? ''} IN ${type} ${data}`.replace(/ {2}/g, ' '));
  }
  return lines.join('\n') + '\n';
}

/**
 * Starts nsd in NS, authoritative for ZONES (zone files generated into a temp dir, no database,
 * no remote control, no privilege drop), and resolves once it answers the first zone's SOA.
 * nsd answers with the zone-file TTLs every time; within zones it serves itself it also adds
 * the rest of a CNAME chain.
 * @param ns namespace (one this test created)
 * @param o listen address, port, zones
 * @returns the running server (its `pid` is nsd's main process; its children exit with it).
 *   `queries()` is not available (nsd logs no queries).
 * @throws Error when nsd is missing, nsd-checkconf rejects the config, or it does not answer
 */
export async function startNsd(ns: string, o: NsdOptions): Promise<DnsServer> {
  requireTool('nsd', 'nsd');
  const port = o.port ?? 53;
  checkPort(port);
  if (!isIP(o.listen)) throw new Error(`listen must be an IP address, got '${o.listen}'`);
  if (!o.zones.length) throw new Error('nsd needs at least one zone');
  const dir = tempDir('nsd');
  const conf = [
    'server:',
    `  ip-address: ${o.listen}@${port}`,
    '  server-count: 1',
    '  username: ""',
    '  chroot: ""',
    `  zonesdir: "${dir}"`,
    '  database: ""',
    `  zonelistfile: "${dir}/zone.list"`,
    `  xfrdfile: "${dir}/xfrd.state"`,
    `  xfrdir: "${dir}"`,
    `  pidfile: "${dir}/nsd.pid"`,
    '  logfile: ""',
    '  verbosity: 1',
    '  hide-version: yes',
    '  reuseport: no',
    'remote-control:',
    '  control-enable: no',
  ];
  for (const z of o.zones) {
    const apex = checkName(z.name);
    writeFileSync(path.join(dir, `${apex}.zone`), zoneFile(z, o.listen));
    conf.push('zone:', `  name: "${apex}"`, `  zonefile: "${apex}.zone"`);
  }
  const confFile = path.join(dir, 'nsd.conf');
  writeFileSync(confFile, conf.join('\n') + '\n');
  const check = await inNs(ns, 'nsd-checkconf', [confFile]);
  if (check.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    untrackDir(dir);
    throw new Error(`nsd-checkconf ${confFile}: ${check.stderr.trim() || check.stdout.trim()}`);
  }
  const proc = spawnInNs(ns, 'nsd', ['-d', '-c', confFile]);
  return serve(proc, ns, o.listen, port, dir, false, () => [], { name: checkName(o.zones[0]!.name), type: 'SOA' });
}

/** Options of {@link startUnbound}. */
export interface UnboundOptions {
  /** Resolver address (must exist in the namespace). */
  listen: string;
  /** Resolver port (default 53). */
  port?: number;
  /** Zones, served by nsd and reached by unbound through one stub zone each. */
  zones: Zone[];
  /** nsd's address (default: `listen`). */
  authListen?: string;
  /** nsd's port (default 5300, or 5301 when `port` is 5300). */
  authPort?: number;
  /** Log every query unbound receives (`queries()`, `queryLog()`). */
  logQueries?: boolean;
  /** More `server:` lines for unbound.conf, e.g. `['cache-max-ttl: 5']`. */
  serverConf?: string[];
}

/** What {@link startUnbound} runs: a recursive resolver in front of an authoritative server. */
export interface UnboundSetup extends DnsServer {
  /** The authoritative nsd behind it (query it directly for chains without recursion). */
  readonly nsd: DnsServer;
}

/** Special-use names unbound blocks by default (RFC 6761 local zones). */
const UNBOUND_DEFAULT_ZONES = ['test', 'invalid', 'onion', 'home.arpa', 'local'];

/**
 * Starts nsd (authoritative for ZONES) and unbound (recursive, validator off, one stub zone per
 * zone pointing at nsd, no remote control, no pidfile, no chroot, no privilege drop), both in NS,
 * and resolves when unbound answers. unbound follows CNAME chains across the zones, so
 * `www.a.test CNAME www.b.test`, `www.b.test CNAME edge.c.test`, `edge.c.test A …` all come back
 * in one answer, each record with its own TTL (the chain's lifetime is the minimum). Names
 * outside the zones get SERVFAIL (no root reachable from a test namespace).
 * (unbound alone with `local-data` does not chase a CNAME into another local zone: measured.)
 * @param ns namespace (one this test created)
 * @param o resolver address/port, zones, nsd address/port, query log, extra config
 * @returns the resolver, with `nsd` attached; `stop()` stops both
 * @throws Error when a program is missing, a config is rejected, or a server does not answer
 */
export async function startUnbound(ns: string, o: UnboundOptions): Promise<UnboundSetup> {
  requireTool('unbound', 'unbound');
  const port = o.port ?? 53;
  checkPort(port);
  if (!isIP(o.listen)) throw new Error(`listen must be an IP address, got '${o.listen}'`);
  const authListen = o.authListen ?? o.listen;
  const authPort = o.authPort ?? (port === 5300 && authListen === o.listen ? 5301 : 5300);
  const nsd = await startNsd(ns, { listen: authListen, port: authPort, zones: o.zones });
  let dir: string | undefined;
  try {
    dir = tempDir('unbound');
    const apexes = o.zones.map((z) => checkName(z.name));
    const conf = [
      'server:',
      `  interface: ${o.listen}@${port}`,
      `  port: ${port}`,
      '  interface-automatic: no',
      '  do-ip4: yes',
      '  do-ip6: yes',
      '  do-udp: yes',
      '  do-tcp: yes',
      '  num-threads: 1',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      '  pidfile: ""',
      '  logfile: ""',
      '  use-syslog: no',
      '  verbosity: 1',
      `  log-queries: ${o.logQueries ? 'yes' : 'no'}`,
      '  module-config: "iterator"',
      '  do-not-query-localhost: no',
      '  qname-minimisation: no',
      '  harden-referral-path: no',
      '  prefetch: no',
      '  access-control: 0.0.0.0/0 allow',
      '  access-control: ::/0 allow',
    ];
    for (const d of UNBOUND_DEFAULT_ZONES) {
      if (apexes.some((a) => a === d || a.endsWith(`.${d}`))) conf.push(`  local-zone: "${d}." nodefault`, `  domain-insecure: "${d}."`);
    }
    for (const a of apexes) conf.push(`  domain-insecure: "${a}."`);
    for (const l of o.serverConf ?? []) conf.push(`  ${l}`);
    conf.push('remote-control:', '  control-enable: no');
    for (const a of apexes) conf.push('stub-zone:', `  name: "${a}."`, `  stub-addr: ${authListen}@${authPort}`);
    const confFile = path.join(dir, 'unbound.conf');
    writeFileSync(confFile, conf.join('\n') + '\n');
    const check = await inNs(ns, 'unbound-checkconf', [confFile]);
    if (check.code !== 0) throw new Error(`unbound-checkconf ${confFile}: ${check.stderr.trim() || check.stdout.trim()}`);
    const proc = spawnInNs(ns, 'unbound', ['-d', '-p', '-c', confFile]);
    // [1700000000] unbound[123:0] info: 10.0.0.1 www.a.test. A IN
    const parse = (text: string) =>
      [...text.matchAll(/\] unbound\[[\d:]+\] info: (\S+) (\S+) (\S+) IN$/gm)].map((m) => ({ from: m[1]!, name: stripDot(m[2]!), type: m[3]! }));
    const server = await serve(proc, ns, o.listen, port, dir, !!o.logQueries, parse, { name: apexes[0]!, type: 'SOA' });
    return {
      ...server,
      nsd,
      async stop() {
        await server.stop();
        await nsd.stop();
      },
    };
  } catch (e) {
    await nsd.stop();
    if (dir) {
      rmSync(dir, { recursive: true, force: true });
      untrackDir(dir);
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// dnsperf

/** Whether `dnsperf` is installed (Debian package dnsperf). */
export function dnsperfAvailable(): boolean {
  return which('dnsperf') !== undefined;
}

/** Options of {@link runDnsperf}. */
export interface DnsperfOptions {
  server: string;
  /** Default 53. */
  port?: number;
  /** Queries as `name` (type A) or `name TYPE`; cycled through. Or give `queriesFile`. */
  names?: string[];
  /** A dnsperf data file (one `name TYPE` a line). */
  queriesFile?: string;
  /** Run time in seconds (`-l`). */
  durationS: number;
  /** Rate limit (`-Q`); default none (as fast as the server answers). */
  qps?: number;
  /** Simulated clients, i.e. sockets (`-c`, default 1). */
  clients?: number;
  /** Threads (`-T`, default 1). */
  threads?: number;
  /** Outstanding queries at most (`-q`, default dnsperf's 100). */
  outstanding?: number;
  /** Seconds before a query counts as lost (`-t`, default dnsperf's 5). */
  timeoutS?: number;
  /** Over TCP (`-m tcp`). */
  tcp?: boolean;
  /**
   * Compute latency percentiles: runs with `-v` (one line per query) and sorts them all. dnsperf
   * 2.10 itself prints only average, min, max and stddev.
   */
  percentiles?: boolean;
  /** More dnsperf arguments. */
  args?: string[];
}

/** Result of {@link runDnsperf}. */
export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  /** "Queries per second". */
  qps: number;
  /** "Run time (s)". */
  runTimeS: number;
  /** Counts per response code ("Response codes:" line). */
  rcodes: Record<string, number>;
  latencyAvgMs: number;
  latencyMinMs: number;
  latencyMaxMs: number;
  latencyStdDevMs: number;
  /** Only with `percentiles: true`, over every completed query. */
  latencyP50Ms?: number;
  latencyP90Ms?: number;
  latencyP99Ms?: number;
  latencyP999Ms?: number;
  /** TCP only: "Reconnections" from the "Connection Statistics" part. */
  reconnections?: number;
  /** dnsperf's output without the per-query lines. */
  raw: string;
}

/**
 * Runs dnsperf from NS for `durationS` seconds and parses its summary. dnsperf 2.10.0 (Debian
 * 12) prints, after `Statistics:`: `Queries sent:`, `Queries completed: N (P%)`, `Queries lost:`,
 * `Response codes: NOERROR N (P%), …`, `Run time (s):`, `Queries per second:`,
 * `Average Latency (s): A (min X, max Y)`, `Latency StdDev (s):`; over TCP a `Connection
 * Statistics:` part follows with its own latency lines (connection setup), ignored here.
 * @param ns namespace to run it in
 * @param o server, port, queries, duration, rate, clients, threads, tcp, percentiles
 * @returns the parsed figures
 * @throws Error when dnsperf is missing, exits non-zero, or prints no statistics
 * @example
 * const r = await runDnsperf(pod, { server: '127.0.0.1', port: 5353, names: ['a.test'], durationS: 1 });
 * assert.ok(r.qps > 1000);
 */
export async function runDnsperf(ns: string, o: DnsperfOptions): Promise<DnsperfResult> {
  requireTool('dnsperf', 'dnsperf');
  if (!(o.durationS > 0)) throw new Error('durationS must be > 0');
  let dir: string | undefined;
  let file = o.queriesFile;
  if (!file) {
    if (!o.names?.length) throw new Error('runDnsperf needs names or queriesFile');
    dir = tempDir('dnsperf');
    file = path.join(dir, 'queries');
    const lines = o.names.map((n) => {
      const [name, type] = n.trim().split(/\s+/);
      return `${checkName(name!)} ${(type ?? 'A').toUpperCase()}`;
    });
    writeFileSync(file, lines.join('\n') + '\n');
  }
  const args = ['-s', o.server, '-p', String(o.port ?? 53), '-d', file, '-l', String(o.durationS)];
  if (o.qps !== undefined) args.push('-Q', String(o.qps));
  if (o.clients !== undefined) args.push('-c', String(o.clients));
  if (o.threads !== undefined) args.push('-T', String(o.threads));
  if (o.outstanding !== undefined) args.push('-q', String(o.outstanding));
  if (o.timeoutS !== undefined) args.push('-t', String(o.timeoutS));
  if (o.tcp) args.push('-m', 'tcp');
  if (o.percentiles) args.push('-v');
  args.push(...(o.args ?? []));
  try {
    const limit = (o.durationS + (o.timeoutS ?? 5)) * 1000 + 30_000;
    const r = await inNs(ns, 'dnsperf', args, { timeoutMs: limit });
    if (r.code !== 0) throw new Error(`dnsperf ${args.join(' ')} in ${ns} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return parseDnsperf(r.stdout, o.percentiles ?? false);
  } finally {
    if (dir) {
      rmSync(dir, { recursive: true, force: true });
      untrackDir(dir);
    }
  }
}

/**
 * Parses dnsperf's output (exported for unit tests).
 * @param out dnsperf's stdout
 * @param percentiles whether per-query `-v` lines (`> NOERROR name A 0.000171`) are present
 * @throws Error when there is no `Statistics:` part
 */
export function parseDnsperf(out: string, percentiles = false): DnsperfResult {
  const latencies: number[] = [];
  const kept: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^> \S+ .* ([\d.]+)$/.exec(line);
    if (m) {
      if (percentiles) latencies.push(Number(m[1]) * 1000);
    } else {
      kept.push(line);
    }
  }
  const raw = kept.join('\n');
  const statsAt = raw.indexOf('Statistics:');
  if (statsAt < 0) throw new Error(`dnsperf printed no statistics:\n${raw}`);
  const connAt = raw.indexOf('Connection Statistics:');
  const main = raw.slice(statsAt, connAt > statsAt ? connAt : undefined);
  const num = (re: RegExp, text = main): number => {
    const m = re.exec(text);
    return m ? Number(m[1]) : NaN;
  };
  const rcodes: Record<string, number> = {};
  const rc = /Response codes:\s*(.*)/.exec(main);
  for (const m of (rc?.[1] ?? '').matchAll(/([A-Z0-9]+) (\d+) \(/g)) rcodes[m[1]!] = Number(m[2]);
  const lat = /Average Latency \(s\):\s*([\d.]+) \(min ([\d.]+), max ([\d.]+)\)/.exec(main);
  const res: DnsperfResult = {
    sent: num(/Queries sent:\s*(\d+)/),
    completed: num(/Queries completed:\s*(\d+)/),
    lost: num(/Queries lost:\s*(\d+)/),
    qps: num(/Queries per second:\s*([\d.]+)/),
    runTimeS: num(/Run time \(s\):\s*([\d.]+)/),
    rcodes,
    latencyAvgMs: lat ? Number(lat[1]) * 1000 : NaN,
    latencyMinMs: lat ? Number(lat[2]) * 1000 : NaN,
    latencyMaxMs: lat ? Number(lat[3]) * 1000 : NaN,
    latencyStdDevMs: num(/Latency StdDev \(s\):\s*([\d.]+)/) * 1000,
    raw,
  };
  if (connAt > statsAt) {
    const rec = num(/Reconnections:\s*(\d+)/, raw.slice(connAt));
    if (!Number.isNaN(rec)) res.reconnections = rec;
  }
  if (percentiles && latencies.length) {
    latencies.sort((a, b) => a - b);
    const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(p * latencies.length) - 1))]!;
    res.latencyP50Ms = q(0.5);
    res.latencyP90Ms = q(0.9);
    res.latencyP99Ms = q(0.99);
    res.latencyP999Ms = q(0.999);
  }
  return res;
}
