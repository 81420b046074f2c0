// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers/topology
 *
 * A throw-away standalone node for end-to-end tests (DESIGN §4): a network namespace that
 * plays the node, pod namespaces behind it plumbed by the real CLI
 * (`nsenter --net=/run/netns/NODE node bin/membrane endpoint up --endpoints FILE`), and a
 * temp directory for the endpoints file, policies and state.
 *
 * ```
 *   test process (machine's namespace: never touched, no veth to it, no NAT, no route out)
 *   NODE = mbt<pid><tag><n>   lo: 169.254.1.1/32 ── mbr… veth ── NODE-<ns>.<name> (pod) eth0
 * ```
 *
 * Names are unique per process (the pid is in them) and per call (a counter), so parallel
 * runs never collide; each is at most 15 characters. Everything a node makes is removed by
 * {@link NodeTopology.cleanup}, by exact name and pid, which also runs from `t.after` (when
 * made with `{ t }`), from the harness's root `after()` and, as a last resort, from a process
 * `exit` hook (see registry.ts).
 *
 * @example
 * test('pods talk', async (t) => {
 *   if (!requirePrivileges(t)) return;
 *   const node = await createNode('ep', { t });
 *   node.writeEndpoints([
 *     { name: 'a', namespace: 'prod', labels: { app: 'a' }, ips: ['10.200.1.10'] },
 *     { name: 'b', namespace: 'prod', labels: { app: 'b' }, ips: ['10.200.1.20'] },
 *   ]);
 *   await node.up();
 *   const srv = await startServer(node.pod('prod/b'), { tcp: [8080] });
 *   assert.equal((await tcpRequest(node.pod('prod/a'), '10.200.1.20', 8080)).result, 'ok');
 * });
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { inNs, ipJson, runCmd, spawnInNs, type CmdResult, type NsCommandOptions, type NsProcess } from './ns.ts';
import { deleteNamespace, killPids, trackDir, trackNamespace, trackProcess, untrackDir } from './registry.ts';

/** The repository root. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The CLI as an outside test runs it. */
export const MEMBRANE_BIN = path.join(REPO_ROOT, 'bin', 'membrane');

/** An endpoint to write into the endpoints file (DESIGN §3.1). */
export interface TestEndpoint {
  name: string;
  /** Default `default`. */
  namespace?: string;
  labels?: Record<string, string>;
  ips: string[];
  ports?: Record<string, number | { port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }>;
  audit?: boolean;
  serviceAccount?: string;
  /**
   * `true` (default): give it a network namespace named after the node (`NODE-ns.name`, or a
   * hash when that is too long); `false`: a policy-only endpoint; a string: that exact name
   * (it is still removed by cleanup).
   */
  netns?: boolean | string;
}

/** An endpoint as written, with its namespace name. */
export interface PlannedEndpoint {
  /** `namespace/name`. */
  ref: string;
  name: string;
  namespace: string;
  ips: string[];
  /** Its network namespace, unless policy-only. */
  netns?: string;
}

/** Options of {@link createNode}. */
export interface NodeOptions {
  /** Tie cleanup to this test (`t.after`); otherwise the root after/exit hooks do it. */
  t?: TestContext;
}

/** Options of {@link NodeTopology.writeEndpoints}. */
export interface EndpointsOptions {
  /** `node.gateway` in the file (default: not written, so 169.254.1.1). */
  gateway?: string;
  /** The `namespaces:` list (labels feed namespace selectors). */
  namespaces?: Array<{ name: string; labels?: Record<string, string> }>;
  /** File name inside the node's directory (default `endpoints.yaml`). */
  fileName?: string;
}

/** Counter making node names unique within this process. */
let nodeCounter = 0;

/**
 * A unique node namespace name: `mbt` + pid + tag + counter, at most 15 characters. The tag
 * (letters only) ends the pid's digits, so names of different processes never collide.
 * @param tag a short label (letters; truncated to fit)
 * @returns the name
 */
export function uniqueNodeName(tag = 'n'): string {
  const letters = tag.toLowerCase().replace(/[^a-z]/g, '') || 'n';
  for (;;) {
    const n = String(++nodeCounter);
    const room = 15 - 3 - String(process.pid).length - n.length;
    const name = `mbt${process.pid}${letters.slice(0, Math.max(1, room))}${n}`;
    if (name.length > 15) throw new Error(`cannot make a short enough namespace name (pid ${process.pid}, counter ${n})`);
    if (!existsSync(`/run/netns/${name}`)) return name;
  }
}

/** A node namespace with its pods, endpoints file and temp directory. */
export class NodeTopology {
  /** The node's network namespace name. */
  readonly name: string;
  /** A temp directory owned by this node (endpoints file, policies, state). */
  readonly dir: string;
  /** Path of the endpoints file written by {@link writeEndpoints}. */
  endpointsFile: string;
  /** The endpoints last written. */
  endpoints: PlannedEndpoint[] = [];
  /** Every pod namespace name ever written for this node (all removed by cleanup). */
  private readonly podNamespaces = new Set<string>();
  private readonly pids = new Set<number>();
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private cleaned = false;

  /** Use {@link createNode}. */
  constructor(name: string, dir: string) {
    this.name = name;
    this.dir = dir;
    this.endpointsFile = path.join(dir, 'endpoints.yaml');
  }

  /**
   * The namespace name a test endpoint gets by default: `NODE-<namespace>.<name>`, or
   * `NODE-<12 hex digits>` when that would exceed 64 characters.
   */
  defaultPodNetns(ep: { namespace?: string; name: string }): string {
    const plain = `${this.name}-${ep.namespace ?? 'default'}.${ep.name}`;
    if (plain.length <= 64) return plain;
    return `${this.name}-${createHash('sha256').update(plain).digest('hex').slice(0, 12)}`;
  }

  /**
   * Writes the endpoints file (atomically, by rename, as editors do) and records the pod
   * namespaces for cleanup. Does not plumb: call {@link up}.
   * @param endpoints the endpoints
   * @param opts gateway, namespaces, file name
   * @returns the file's path
   */
  writeEndpoints(endpoints: TestEndpoint[], opts: EndpointsOptions = {}): string {
    const planned: PlannedEndpoint[] = [];
    const doc: Record<string, unknown> = {};
    if (opts.gateway) doc.node = { gateway: opts.gateway };
    if (opts.namespaces) doc.namespaces = opts.namespaces.map((n) => ({ name: n.name, labels: n.labels ?? {} }));
    doc.endpoints = endpoints.map((ep) => {
      const namespace = ep.namespace ?? 'default';
      const netns = ep.netns === false ? undefined : typeof ep.netns === 'string' ? ep.netns : this.defaultPodNetns(ep);
      if (netns) {
        this.podNamespaces.add(netns);
        trackNamespace(netns);
      }
      planned.push({ ref: `${namespace}/${ep.name}`, name: ep.name, namespace, ips: ep.ips, ...(netns ? { netns } : {}) });
      return {
        name: ep.name,
        namespace,
        labels: ep.labels ?? {},
        ips: ep.ips,
        ...(ep.ports ? { ports: ep.ports } : {}),
        ...(netns ? { netns } : {}),
        ...(ep.audit !== undefined ? { audit: ep.audit } : {}),
        ...(ep.serviceAccount ? { serviceAccount: ep.serviceAccount } : {}),
      };
    });
    this.endpoints = planned;
    return this.writeFile(opts.fileName ?? 'endpoints.yaml', stringify(doc), true);
  }

  /**
   * Writes a file into the node's directory atomically (temp file + rename).
   * @param name file name (relative to {@link dir})
   * @param text contents
   * @param asEndpoints also make it the node's {@link endpointsFile}
   * @returns its path
   */
  writeFile(name: string, text: string, asEndpoints = false): string {
    const file = path.join(this.dir, name);
    const tmp = path.join(this.dir, `.${path.basename(name)}.${process.pid}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, file);
    if (asEndpoints) this.endpointsFile = file;
    return file;
  }

  /** The planned endpoint for `namespace/name` (or a bare name when unique). */
  endpoint(ref: string): PlannedEndpoint {
    const hits = this.endpoints.filter((e) => e.ref === ref || (!ref.includes('/') && e.name === ref));
    if (hits.length !== 1) throw new Error(`${hits.length ? 'ambiguous' : 'unknown'} endpoint '${ref}' (have ${this.endpoints.map((e) => e.ref).join(', ')})`);
    return hits[0]!;
  }

  /**
   * The network namespace of an endpoint.
   * @param ref `namespace/name` or a unique name
   */
  pod(ref: string): string {
    const ep = this.endpoint(ref);
    if (!ep.netns) throw new Error(`endpoint ${ep.ref} has no netns`);
    return ep.netns;
  }

  /** The first address of an endpoint. */
  ipOf(ref: string): string {
    const ep = this.endpoint(ref);
    if (!ep.ips[0]) throw new Error(`endpoint ${ep.ref} has no address`);
    return ep.ips[0];
  }

  /**
   * Runs `bin/membrane ARGS…` inside the node namespace, as an outside test would
   * (`nsenter --net=/run/netns/NODE node bin/membrane …`).
   * @param args CLI arguments
   * @param opts env, cwd (default: the repository), timeout
   * @returns exit status and output
   */
  membrane(args: readonly string[], opts: NsCommandOptions = {}): Promise<CmdResult> {
    return inNs(this.name, process.execPath, [MEMBRANE_BIN, ...args], { cwd: REPO_ROOT, ...opts });
  }

  /**
   * Starts a long-running `bin/membrane ARGS…` (e.g. `agent`) inside the node namespace;
   * killed by cleanup unless stopped earlier.
   */
  spawnMembrane(args: readonly string[], opts: NsCommandOptions = {}): NsProcess {
    // MEMBRANE_TEST_NODE_ARGS: extra Node.js flags (e.g. `--cpu-prof`), for profiling under tests and benchmarks
    const nodeArgs = (process.env.MEMBRANE_TEST_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    return this.spawn(process.execPath, [...nodeArgs, MEMBRANE_BIN, ...args], { cwd: REPO_ROOT, ...opts });
  }

  /**
   * `membrane endpoint up --endpoints <endpointsFile>` in the node.
   * @returns the CLI's result
   * @throws Error with the CLI's output when it does not exit 0
   */
  async up(): Promise<CmdResult> {
    return this.expectOk(await this.membrane(['endpoint', 'up', '--endpoints', this.endpointsFile]), 'endpoint up');
  }

  /**
   * `membrane endpoint down --endpoints <endpointsFile>` in the node.
   * @throws Error with the CLI's output when it does not exit 0
   */
  async down(): Promise<CmdResult> {
    return this.expectOk(await this.membrane(['endpoint', 'down', '--endpoints', this.endpointsFile]), 'endpoint down');
  }

  private expectOk(r: CmdResult, what: string): CmdResult {
    if (r.code !== 0) throw new Error(`membrane ${what} in ${this.name} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    return r;
  }

  /** Runs a command in the node namespace (see `inNs`). */
  exec(cmd: string, args: readonly string[] = [], opts: NsCommandOptions = {}): Promise<CmdResult> {
    return inNs(this.name, cmd, args, opts);
  }

  /** Starts a long-running command in the node namespace, killed by cleanup. */
  spawn(cmd: string, args: readonly string[] = [], opts: NsCommandOptions = {}): NsProcess {
    const p = spawnInNs(this.name, cmd, args, opts);
    this.pids.add(p.pid);
    void p.exited.then(() => this.pids.delete(p.pid));
    return p;
  }

  /** `ip -j ARGS…` in the node namespace, parsed. */
  ipJson<T = Record<string, unknown>>(args: readonly string[]): Promise<T[]> {
    return ipJson<T>(this.name, args);
  }

  /**
   * Adds a step to run at the start of {@link cleanup}, before processes are killed and
   * namespaces deleted (e.g. `membrane cleanup --bpf-root …` to remove pins). Steps run in
   * reverse order of registration; a failing step does not stop the others.
   */
  onCleanup(fn: () => Promise<void> | void): void {
    this.cleanups.push(fn);
  }

  /** Every namespace this node made or will make (node first). */
  namespaces(): string[] {
    return [this.name, ...this.podNamespaces];
  }

  /**
   * Removes everything this node made: registered cleanup steps, its processes (by pid), every
   * process still inside its namespaces, the pod namespaces, the node namespace (taking the
   * veths with it) and the temp directory. Idempotent; never throws.
   */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        process.stderr.write(`e2e cleanup step for ${this.name} failed: ${(e as Error).message}\n`);
      }
    }
    await killPids([...this.pids]);
    for (const ns of [...this.podNamespaces, this.name]) await deleteNamespace(ns);
    rmSync(this.dir, { recursive: true, force: true });
    untrackDir(this.dir);
  }
}

/**
 * Makes a node namespace (`ip netns add`, lo up) and its temp directory.
 * @param tag a short label in the name (letters; e.g. 'ep' for endpoint tests)
 * @param opts `t` ties cleanup to that test
 * @returns the node
 * @throws Error when the namespace cannot be made (run `requirePrivileges` first)
 */
export async function createNode(tag = 'n', opts: NodeOptions = {}): Promise<NodeTopology> {
  const name = uniqueNodeName(tag);
  trackNamespace(name);
  const dir = mkdtempSync(path.join(os.tmpdir(), `membrane-e2e-${name}-`));
  trackDir(dir);
  const node = new NodeTopology(name, dir);
  opts.t?.after(() => node.cleanup());
  const add = await runCmd('ip', ['netns', 'add', name]);
  if (add.code !== 0) {
    await node.cleanup();
    throw new Error(`ip netns add ${name}: ${add.stderr.trim()}`);
  }
  const lo = await inNs(name, 'ip', ['link', 'set', 'lo', 'up']);
  if (lo.code !== 0) {
    await node.cleanup();
    throw new Error(`ip link set lo up in ${name}: ${lo.stderr.trim()}`);
  }
  return node;
}

/** Records an already running process (started some other way) for cleanup by pid. */
export function trackPid(pid: number): void {
  trackProcess(pid);
}
