// SPDX-License-Identifier: Apache-2.0
/**
 * @module endpoint/plumbing
 *
 * Standalone endpoint plumbing (DESIGN §3.4 `membrane endpoint up|down`, §4 topology), the
 * equivalent of a CNI ADD/DEL. It runs in the namespace that plays the node (on a real node the
 * host; in tests a namespace entered with `nsenter --net=/run/netns/NODE`) and, per endpoint
 * with a `netns`, builds:
 *
 * ```
 *  node netns (this process)                         pod netns (ep.netns)
 *  lo: GATEWAY/32 (default 169.254.1.1)              lo up
 *  ip_forward=1                                      eth0: IP/32 for each IPv4 address
 *  mbrXXXXXXXXXXX (veth, up, rp_filter=0) <───────►  eth0 (veth peer)
 *  route IP/32 dev mbrXXXXXXXXXXX scope link         route GATEWAY dev eth0 scope link
 *                                                    route default via GATEWAY dev eth0
 *                                                    neigh GATEWAY lladdr <mbr… MAC> permanent
 * ```
 *
 * The pod resolves the gateway through a permanent neighbour entry (gateway → MAC of the
 * node-side veth), written by us. With `arp_ignore=0` (the default) the node would answer ARP
 * for the gateway anyway, since it is a local address; the static entry keeps pods working on
 * nodes that set `net.ipv4.conf.all.arp_ignore=1` (kube-proxy in IPVS mode does), where the
 * node only answers for addresses configured on the receiving interface. So no proxy ARP and no
 * address on the veth are needed. Nothing here adds an uplink, NAT or a route out of the node
 * namespace.
 *
 * Every step first reads the current state (`ip -j`) and changes only what is missing or
 * wrong, so `endpointUp` is idempotent and completes half-built endpoints; the report lists
 * exactly the commands that ran.
 *
 * Decisions:
 * 1. The node-side name is `mbr` + the first 11 hex digits of sha256(`namespace/name`)
 *    (Cilium: `lxc` + 11 hex digits), 14 characters, stable across restarts.
 * 2. Addresses and node routes are converged: IPv4 addresses on the pod's eth0 and routes on
 *    the node-side veth that the endpoints file no longer lists are removed (the interfaces
 *    belong to Membrane). IPv6 addresses are not plumbed yet (DESIGN §2: IPv4 end to end now);
 *    the report says so.
 * 3. `endpointDown` deletes the node-side veth (which removes its peer, its routes and any tc
 *    programs attached to it) and the pod namespaces the file lists, then removes the gateway
 *    address from `lo` when no Membrane veth (`mbr` + 11 hex digits) is left in the node
 *    namespace. `ip_forward` is left on (other software on a node may rely on it).
 * 4. Endpoints are processed one after another; a failure on one endpoint does not stop the
 *    others. If anything failed, the call rejects with a {@link PlumbingFailedError} carrying
 *    the partial report and one {@link PlumbingError} per failure.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { EngineError } from '../errors.ts';
import { parseIp } from '../labels/cidr.ts';
import type { EndpointEntry, EndpointsFile } from './endpoints-file.ts';
import { ip, ipJson, ipReason, ipSync, type IpAddr, type IpLink, type IpNeigh, type IpRoute } from './ip.ts';

/** The pod-side interface name. */
export const POD_IFNAME = 'eth0';
/** Node-side interface names made by {@link hostIfname}. */
export const HOST_IFNAME_RE = /^mbr[0-9a-f]{11}$/;
/** Where `ip netns` keeps named namespaces. */
const NETNS_DIR = '/run/netns';

/** A failed plumbing step. The message reads `ns/name: STEP: reason`. */
export class PlumbingError extends EngineError {
  /** `namespace/name` of the endpoint, or `node` for node-wide steps. */
  readonly endpoint: string;
  /** The interface the step was about, when there is one. */
  readonly ifname: string | undefined;
  /** The step: the command line that failed, e.g. `ip link add mbr… type veth peer name eth0 netns X`. */
  readonly step: string;
  /** Why it failed (ip's message, without `RTNETLINK answers:`). */
  readonly reason: string;

  /**
   * @param endpoint `namespace/name` or `node`
   * @param ifname the interface concerned, if any
   * @param step the command or action that failed
   * @param reason why
   */
  constructor(endpoint: string, ifname: string | undefined, step: string, reason: string) {
    super(`${endpoint}: ${step}: ${reason}`, 'MBR_ERR_PLUMBING');
    this.name = 'PlumbingError';
    this.endpoint = endpoint;
    this.ifname = ifname;
    this.step = step;
    this.reason = reason;
  }
}

/** `endpointUp`/`endpointDown` failed for some endpoints; the others were done. */
export class PlumbingFailedError extends EngineError {
  /** What was done before and despite the failures. */
  readonly report: Report;
  /** One error per failed endpoint (or node step). */
  readonly failures: readonly PlumbingError[];

  /**
   * @param report the partial report
   * @param failures at least one
   */
  constructor(report: Report, failures: readonly PlumbingError[]) {
    super(failures.map((f) => f.message).join('\n'), 'MBR_ERR_PLUMBING');
    this.name = 'PlumbingFailedError';
    this.report = report;
    this.failures = failures;
  }
}

/**
 * The endpoints file asks for something that cannot be plumbed (an endpoint with `netns` but no
 * IPv4 address, two endpoints sharing a `netns`, a `netns` that is the node's own namespace).
 * Each problem reads `file:line: ns/name: field: message`. Nothing was changed.
 */
export class PlumbingInputError extends EngineError {
  /** Every problem found. */
  readonly problems: readonly string[];

  /** @param problems at least one */
  constructor(problems: readonly string[]) {
    super(problems.join('\n'), 'MBR_ERR_PLUMBING_INPUT');
    this.name = 'PlumbingInputError';
    this.problems = problems;
  }
}

/** One thing that was done (a command that ran), or a note. */
export interface ReportAction {
  /** `namespace/name` or `node`. */
  endpoint: string;
  /** The command line that ran, e.g. `ip netns add prod-frontend`, or a note. */
  action: string;
}

/** What happened to one endpoint. */
export interface EndpointReport {
  /** `namespace/name`. */
  endpoint: string;
  /** Node-side interface name. */
  ifname: string;
  /** The pod's network namespace. */
  netns: string;
  /**
   * up: `created` (nothing was there), `completed` (some of it was there), `unchanged`;
   * down: `removed` (something was deleted), `absent` (nothing was there);
   * either: `failed`.
   */
  state: 'created' | 'completed' | 'unchanged' | 'removed' | 'absent' | 'failed';
}

/** The result of `endpointUp` / `endpointDown`. */
export interface Report {
  /** Commands that ran and notes, in order. Empty when nothing needed doing. */
  actions: ReportAction[];
  /** One entry per endpoint with a `netns`, in file order. */
  endpoints: EndpointReport[];
}

/** An endpoint whose node-side veth exists (see {@link listPlumbed}). */
export interface PlumbedEndpoint {
  endpoint: EndpointEntry;
  /** Node-side interface name. */
  ifname: string;
  /** Its ifindex in the node namespace (where tc programs attach). */
  ifindex: number;
}

/**
 * The node-side veth name of an endpoint: `mbr` + 11 hex digits of sha256(`namespace/name`).
 * Deterministic, 14 characters (kernel limit 15), distinct for distinct endpoints in practice
 * (44 bits of hash).
 * @param ep the endpoint (only `namespace` and `name` are used)
 * @returns the interface name
 * @example hostIfname({ namespace: 'prod', name: 'frontend' }) // 'mbr' + 11 hex digits
 */
export function hostIfname(ep: { namespace: string; name: string }): string {
  return 'mbr' + createHash('sha256').update(`${ep.namespace}/${ep.name}`).digest('hex').slice(0, 11);
}

/** `namespace/name`. */
function refOf(ep: { namespace: string; name: string }): string {
  return `${ep.namespace}/${ep.name}`;
}

/** The IPv4 addresses of an endpoint, in file order, in dotted-quad canonical form. */
function ipv4Of(ep: EndpointEntry): string[] {
  const out: string[] = [];
  for (const a of ep.ips) {
    const p = parseIp(a);
    if (p?.family !== 4) continue;
    const n = Number(p.addr);
    const text = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
    if (!out.includes(text)) out.push(text);
  }
  return out;
}

/**
 * Checks what cannot be plumbed, before anything is changed.
 * @param file the parsed endpoints file
 * @returns problems as `file:line: ns/name: field: message`
 */
export function checkPlumbable(file: EndpointsFile): string[] {
  const problems: string[] = [];
  const byNetns = new Map<string, EndpointEntry>();
  const byIf = new Map<string, EndpointEntry>();
  const self = selfNetnsId();
  for (const ep of file.endpoints) {
    if (ep.netns === undefined) continue;
    const at = `${file.file}:${ep.line}: ${refOf(ep)}`;
    if (ipv4Of(ep).length === 0) problems.push(`${at}: ips: an endpoint with netns needs at least one IPv4 address`);
    const other = byNetns.get(ep.netns);
    if (other) problems.push(`${at}: netns: '${ep.netns}' is also the namespace of ${refOf(other)} (line ${other.line})`);
    else byNetns.set(ep.netns, ep);
    const ifname = hostIfname(ep);
    const clash = byIf.get(ifname);
    if (clash) problems.push(`${at}: interface name ${ifname} is also that of ${refOf(clash)} (line ${clash.line}); rename one`);
    else byIf.set(ifname, ep);
    if (self !== undefined && netnsId(ep.netns) === self)
      problems.push(`${at}: netns: '${ep.netns}' is the node's own network namespace`);
  }
  return problems;
}

/** dev:ino of a namespace file, to compare namespaces. */
function netnsId(name: string): string | undefined {
  try {
    const st = statSync(`${NETNS_DIR}/${name}`);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

function selfNetnsId(): string | undefined {
  try {
    const st = statSync('/proc/self/ns/net');
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** Accumulates the actions of one endpoint and runs its commands. */
class Step {
  readonly actions: ReportAction[] = [];
  constructor(
    readonly endpoint: string,
    readonly ifname: string | undefined,
  ) {}

  /** Runs `ip ARGS` (in `netns` when given); records it; throws PlumbingError on failure. */
  async run(args: string[], netns?: string): Promise<void> {
    const line = ['ip', ...(netns === undefined ? [] : ['-n', netns]), ...args].join(' ');
    let r;
    try {
      r = await ip(args, netns === undefined ? {} : { netns });
    } catch (e) {
      throw new PlumbingError(this.endpoint, this.ifname, line, (e as Error).message);
    }
    if (r.code !== 0) throw new PlumbingError(this.endpoint, this.ifname, line, ipReason(r.stderr));
    this.actions.push({ endpoint: this.endpoint, action: line });
  }

  /** Reads `ip -j ARGS`; `undefined` when ip fails with "does not exist"; throws otherwise. */
  async read<T>(args: string[], netns?: string): Promise<T[] | undefined> {
    const line = ['ip', ...(netns === undefined ? [] : ['-n', netns]), '-j', ...args].join(' ');
    let out;
    try {
      out = await ipJson<T>(args, netns === undefined ? {} : { netns });
    } catch (e) {
      throw new PlumbingError(this.endpoint, this.ifname, line, (e as Error).message);
    }
    if (out.value) return out.value;
    if (/does not exist|Cannot find device/i.test(out.result.stderr)) return undefined;
    throw new PlumbingError(this.endpoint, this.ifname, line, ipReason(out.result.stderr));
  }

  /** Writes a /proc/sys value when it differs; records it. */
  sysctl(path: string, value: string): void {
    let current: string | undefined;
    try {
      current = readFileSync(path, 'utf8').trim();
    } catch {
      current = undefined;
    }
    if (current === value) return;
    try {
      writeFileSync(path, value);
    } catch (e) {
      throw new PlumbingError(this.endpoint, this.ifname, `write ${path}=${value}`, (e as NodeJS.ErrnoException).code ?? (e as Error).message);
    }
    this.actions.push({ endpoint: this.endpoint, action: `write ${path}=${value}` });
  }

  note(text: string): void {
    this.actions.push({ endpoint: this.endpoint, action: text });
  }
}

/** Normalizes a route dst (`10.0.0.1` → `10.0.0.1/32`). */
function dstOf(r: IpRoute): string {
  return r.dst === 'default' || r.dst.includes('/') ? r.dst : `${r.dst}/32`;
}

/**
 * Node-wide set-up: gateway /32 on lo, lo up, IPv4 forwarding on.
 * @param gateway the gateway address
 * @returns the actions taken
 * @throws PlumbingError
 */
export async function nodeUp(gateway: string): Promise<ReportAction[]> {
  const s = new Step('node', 'lo');
  const [lo] = (await s.read<IpLink>(['addr', 'show', 'dev', 'lo'])) ?? [];
  if (!lo) throw new PlumbingError('node', 'lo', 'ip -j addr show dev lo', 'no loopback interface');
  if (!lo.flags.includes('UP')) await s.run(['link', 'set', 'lo', 'up']);
  const has = (lo.addr_info ?? []).some((a) => a.family === 'inet' && a.local === gateway && a.prefixlen === 32);
  if (!has) await s.run(['addr', 'add', `${gateway}/32`, 'dev', 'lo']);
  s.sysctl('/proc/sys/net/ipv4/ip_forward', '1');
  return s.actions;
}

/**
 * Plumbs one endpoint (CNI ADD), completing whatever part is missing.
 * Precondition: runs in the node namespace; the endpoint has a `netns` and an IPv4 address
 * (see {@link checkPlumbable}).
 * @param ep the endpoint
 * @param gateway the node's gateway address
 * @returns what was done and the endpoint's state
 * @throws PlumbingError naming the endpoint, interface and step
 */
export async function plumbEndpoint(ep: EndpointEntry, gateway: string): Promise<{ actions: ReportAction[]; report: EndpointReport }> {
  const netns = ep.netns;
  const ifname = hostIfname(ep);
  const ref = refOf(ep);
  if (netns === undefined) throw new PlumbingError(ref, undefined, 'plumb', 'the endpoint has no netns');
  const s = new Step(ref, ifname);
  let existed = 0;

  // 1. The pod namespace.
  if (existsSync(`${NETNS_DIR}/${netns}`)) existed++;
  else await s.run(['netns', 'add', netns]);

  // 2. The veth pair: node side IFNAME here, pod side eth0 in the pod namespace, made in one
  //    step so no half-made pair is left behind with a temporary name.
  let host: IpLink | undefined = (await s.read<IpLink>(['link', 'show', 'dev', ifname]))?.[0];
  let pod: IpLink | undefined = (await s.read<IpLink>(['addr', 'show', 'dev', POD_IFNAME], netns))?.[0];
  if (host) {
    const [detail] = (await s.read<IpLink>(['-d', 'link', 'show', 'dev', ifname])) ?? [];
    if (detail?.linkinfo?.info_kind !== 'veth')
      throw new PlumbingError(ref, ifname, `ip -d link show dev ${ifname}`, `${ifname} exists and is not a veth (${detail?.linkinfo?.info_kind ?? 'unknown kind'})`);
    const paired = pod !== undefined && pod.link_index === host.ifindex && host.link_index === pod.ifindex;
    if (!paired) {
      // The node side exists but its peer is not this pod's eth0 (e.g. the pod namespace was
      // deleted and made again): start the pair over.
      await s.run(['link', 'del', ifname]);
      host = undefined;
      pod = (await s.read<IpLink>(['addr', 'show', 'dev', POD_IFNAME], netns))?.[0];
    } else existed++;
  }
  if (!host) {
    const add = ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', POD_IFNAME, 'netns', netns];
    if (pod) throw new PlumbingError(ref, ifname, `ip ${add.join(' ')}`, `${POD_IFNAME} already exists in netns ${netns} and is not the peer of ${ifname}`);
    await s.run(add);
    host = (await s.read<IpLink>(['link', 'show', 'dev', ifname]))?.[0];
    pod = (await s.read<IpLink>(['addr', 'show', 'dev', POD_IFNAME], netns))?.[0];
  }
  if (!host || !pod) throw new PlumbingError(ref, ifname, `ip link add ${ifname} type veth`, 'the veth pair is not there after creating it');

  // 3. Node side: up; no reverse-path filtering on it (the effective value is the max of
  //    conf/all and conf/IF; Cilium also sets 0 on its lxc devices).
  if (!host.flags.includes('UP')) await s.run(['link', 'set', ifname, 'up']);
  s.sysctl(`/proc/sys/net/ipv4/conf/${ifname}/rp_filter`, '0');

  // 4. Pod side: lo up, eth0 up, its /32 addresses (and no stale IPv4 ones).
  const [podLo] = (await s.read<IpLink>(['link', 'show', 'dev', 'lo'], netns)) ?? [];
  if (podLo && !podLo.flags.includes('UP')) await s.run(['link', 'set', 'lo', 'up'], netns);
  if (!pod.flags.includes('UP')) await s.run(['link', 'set', POD_IFNAME, 'up'], netns);
  const want = ipv4Of(ep);
  const have: IpAddr[] = (pod.addr_info ?? []).filter((a) => a.family === 'inet');
  for (const a of have) if (!(a.prefixlen === 32 && want.includes(a.local))) await s.run(['addr', 'del', `${a.local}/${a.prefixlen}`, 'dev', POD_IFNAME], netns);
  for (const a of want) if (!have.some((h) => h.local === a && h.prefixlen === 32)) await s.run(['addr', 'add', `${a}/32`, 'dev', POD_IFNAME], netns);
  const skipped = ep.ips.filter((a) => parseIp(a)?.family === 6);
  if (skipped.length) s.note(`note: IPv6 ${skipped.join(', ')} not plumbed (IPv4 datapath only)`);

  // 5. Pod routes: the gateway on-link, the default route via the gateway.
  const routes = (await s.read<IpRoute>(['-4', 'route', 'show', 'table', 'main'], netns)) ?? [];
  const gwRoute = routes.find((r) => dstOf(r) === `${gateway}/32`);
  if (!gwRoute || gwRoute.dev !== POD_IFNAME || gwRoute.scope !== 'link' || gwRoute.gateway !== undefined) {
    await s.run(['route', gwRoute ? 'replace' : 'add', gateway, 'dev', POD_IFNAME, 'scope', 'link'], netns);
  }
  const def = routes.find((r) => r.dst === 'default');
  if (!def || def.gateway !== gateway || def.dev !== POD_IFNAME) {
    await s.run(['route', def ? 'replace' : 'add', 'default', 'via', gateway, 'dev', POD_IFNAME], netns);
  }
  // The gateway's MAC, statically (see the module comment on arp_ignore).
  if (host.address) {
    const neigh = (await s.read<IpNeigh>(['neigh', 'show', 'dev', POD_IFNAME], netns)) ?? [];
    const gw = neigh.find((n) => n.dst === gateway);
    if (!gw || gw.lladdr?.toLowerCase() !== host.address.toLowerCase() || !(gw.state ?? []).includes('PERMANENT'))
      await s.run(['neigh', 'replace', gateway, 'lladdr', host.address, 'dev', POD_IFNAME, 'nud', 'permanent'], netns);
  }

  // 6. Node routes: each pod address via the veth (and none that the file no longer lists).
  const hostRoutes = (await s.read<IpRoute>(['-4', 'route', 'show', 'table', 'main', 'dev', ifname])) ?? [];
  for (const r of hostRoutes) if (!want.some((a) => dstOf(r) === `${a}/32`)) await s.run(['route', 'del', dstOf(r), 'dev', ifname]);
  for (const a of want) if (!hostRoutes.some((r) => dstOf(r) === `${a}/32`)) await s.run(['route', 'add', `${a}/32`, 'dev', ifname]);

  const changed = s.actions.some((a) => !a.action.startsWith('note:'));
  const state = !changed ? 'unchanged' : existed === 0 ? 'created' : 'completed';
  return { actions: s.actions, report: { endpoint: ref, ifname, netns, state } };
}

/**
 * Removes one endpoint's plumbing (CNI DEL): the node-side veth (its peer, routes and tc
 * programs go with it) and the pod namespace. Missing pieces are not an error.
 * @param ep the endpoint (must have `netns`)
 * @returns what was done and the endpoint's state
 * @throws PlumbingError naming the endpoint, interface and step
 */
export async function unplumbEndpoint(ep: EndpointEntry): Promise<{ actions: ReportAction[]; report: EndpointReport }> {
  const netns = ep.netns;
  const ifname = hostIfname(ep);
  const ref = refOf(ep);
  if (netns === undefined) throw new PlumbingError(ref, undefined, 'unplumb', 'the endpoint has no netns');
  const s = new Step(ref, ifname);
  const [host] = (await s.read<IpLink>(['-d', 'link', 'show', 'dev', ifname])) ?? [];
  if (host) {
    if (host.linkinfo?.info_kind !== 'veth')
      throw new PlumbingError(ref, ifname, `ip -d link show dev ${ifname}`, `${ifname} is not a veth; not deleting it`);
    await s.run(['link', 'del', ifname]);
  }
  if (existsSync(`${NETNS_DIR}/${netns}`)) {
    const self = selfNetnsId();
    if (self !== undefined && netnsId(netns) === self) throw new PlumbingError(ref, ifname, `ip netns del ${netns}`, 'that is the node\'s own namespace');
    await s.run(['netns', 'del', netns]);
  }
  return { actions: s.actions, report: { endpoint: ref, ifname, netns, state: s.actions.length ? 'removed' : 'absent' } };
}

/**
 * Node-wide tear-down: removes the gateway /32 from lo when no Membrane veth is left.
 * @param gateway the gateway address
 * @returns the actions taken
 * @throws PlumbingError
 */
export async function nodeDown(gateway: string): Promise<ReportAction[]> {
  const s = new Step('node', 'lo');
  const links = (await s.read<IpLink>(['link', 'show'])) ?? [];
  const left = links.filter((l) => HOST_IFNAME_RE.test(l.ifname));
  if (left.length) {
    s.note(`note: gateway ${gateway} kept on lo: ${left.length} other endpoint veth(s) remain (${left.map((l) => l.ifname).join(', ')})`);
    return s.actions;
  }
  const [lo] = (await s.read<IpLink>(['addr', 'show', 'dev', 'lo'])) ?? [];
  if ((lo?.addr_info ?? []).some((a) => a.family === 'inet' && a.local === gateway && a.prefixlen === 32))
    await s.run(['addr', 'del', `${gateway}/32`, 'dev', 'lo']);
  return s.actions;
}

/**
 * `membrane endpoint up`: node set-up, then every endpoint with a `netns`. Idempotent.
 * Precondition: runs in the node namespace.
 * @param file the parsed endpoints file
 * @returns what was done
 * @throws PlumbingInputError before changing anything when the file cannot be plumbed
 * @throws PlumbingFailedError after trying every endpoint, when some step failed
 * @example
 * const report = await endpointUp(readEndpointsFile('endpoints.yaml'));
 * for (const a of report.actions) console.log(`${a.endpoint}: ${a.action}`);
 */
export async function endpointUp(file: EndpointsFile): Promise<Report> {
  const problems = checkPlumbable(file);
  if (problems.length) throw new PlumbingInputError(problems);
  const report: Report = { actions: [], endpoints: [] };
  const failures: PlumbingError[] = [];
  try {
    report.actions.push(...(await nodeUp(file.gateway)));
  } catch (e) {
    throw new PlumbingFailedError(report, [asPlumbingError(e, 'node', 'lo')]);
  }
  for (const ep of file.endpoints) {
    if (ep.netns === undefined) continue;
    try {
      const r = await plumbEndpoint(ep, file.gateway);
      report.actions.push(...r.actions);
      report.endpoints.push(r.report);
    } catch (e) {
      failures.push(asPlumbingError(e, refOf(ep), hostIfname(ep)));
      report.endpoints.push({ endpoint: refOf(ep), ifname: hostIfname(ep), netns: ep.netns, state: 'failed' });
    }
  }
  if (failures.length) throw new PlumbingFailedError(report, failures);
  return report;
}

/**
 * `membrane endpoint down`: removes what {@link endpointUp} made for this file. Idempotent.
 * Precondition: runs in the node namespace.
 * @param file the parsed endpoints file
 * @returns what was done
 * @throws PlumbingFailedError after trying every endpoint, when some step failed
 */
export async function endpointDown(file: EndpointsFile): Promise<Report> {
  const report: Report = { actions: [], endpoints: [] };
  const failures: PlumbingError[] = [];
  for (const ep of file.endpoints) {
    if (ep.netns === undefined) continue;
    try {
      const r = await unplumbEndpoint(ep);
      report.actions.push(...r.actions);
      report.endpoints.push(r.report);
    } catch (e) {
      failures.push(asPlumbingError(e, refOf(ep), hostIfname(ep)));
      report.endpoints.push({ endpoint: refOf(ep), ifname: hostIfname(ep), netns: ep.netns, state: 'failed' });
    }
  }
  try {
    report.actions.push(...(await nodeDown(file.gateway)));
  } catch (e) {
    failures.push(asPlumbingError(e, 'node', 'lo'));
  }
  if (failures.length) throw new PlumbingFailedError(report, failures);
  return report;
}

function asPlumbingError(e: unknown, endpoint: string, ifname: string): PlumbingError {
  return e instanceof PlumbingError ? e : new PlumbingError(endpoint, ifname, 'plumb', (e as Error).message);
}

/**
 * The ifindex of an interface in this process's network namespace, through `ip -j link show`
 * (not /sys/class/net, which shows the namespace that mounted /sys after `nsenter --net`).
 * @param ifname interface name
 * @returns its ifindex
 * @throws PlumbingError when the interface does not exist
 */
export function ifindexOf(ifname: string): number {
  const r = ipSync(['-j', 'link', 'show', 'dev', ifname]);
  if (r.code !== 0) throw new PlumbingError('node', ifname, `ip -j link show dev ${ifname}`, ipReason(r.stderr));
  const [link] = JSON.parse(r.stdout) as IpLink[];
  if (!link) throw new PlumbingError('node', ifname, `ip -j link show dev ${ifname}`, 'no such interface');
  return link.ifindex;
}

/**
 * The endpoints of the file whose node-side veth exists in this namespace (one `ip` call).
 * @param file the parsed endpoints file
 * @returns those endpoints with their interface name and ifindex, in file order
 * @throws PlumbingError when the links cannot be listed
 */
export async function listPlumbed(file: EndpointsFile): Promise<PlumbedEndpoint[]> {
  const s = new Step('node', undefined);
  const links = (await s.read<IpLink>(['link', 'show', 'type', 'veth'])) ?? [];
  const byName = new Map(links.map((l) => [l.ifname, l]));
  const out: PlumbedEndpoint[] = [];
  for (const ep of file.endpoints) {
    if (ep.netns === undefined) continue;
    const ifname = hostIfname(ep);
    const link = byName.get(ifname);
    if (link) out.push({ endpoint: ep, ifname, ifindex: link.ifindex });
  }
  return out;
}
