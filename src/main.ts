// SPDX-License-Identifier: Apache-2.0
/**
 * @module main
 *
 * Composition root of `membrane agent` in standalone mode (DESIGN §3.4): constructs the policy
 * engine, the datapath, the endpoint manager, the flow store and the API server, wires them,
 * and keeps them in step with the policies directory and the endpoints file.
 *
 * Every reload runs on one queue, so edits apply one after another. An edit that fails
 * validation is refused: the objects it would change keep their previous version, the error is
 * reported in `membrane status`, and the policy revision does not change.
 */
import { existsSync, readdirSync, watch, writeFileSync, type Dirent, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type http from 'node:http';
import { loadPolicyPaths } from './api/load.ts';
import type { Problem, Rule } from './api/types.ts';
import { readSettings, type Settings } from './config.ts';
import { load, query, ConfigFlags, RingbufReader, PROGRAMS, type LoadedObject } from './datapath/index.ts';
import { readEndpointsFile, type EndpointsFile } from './endpoint/endpoints-file.ts';
import { EndpointManager } from './endpoint/manager.ts';
import { listPlumbed } from './endpoint/plumbing.ts';
import { rulesByObject } from './endpoint/standalone.ts';
import { NumberTable, StateStore } from './endpoint/state-store.ts';
import { startApiServer } from './observe/api.ts';
import { FlowStore, flowOf, type FlowContext } from './observe/flows.ts';
import { PolicyEngine } from './policy/engine.ts';
import { buildL7Snapshot } from './policy/l7-policy.ts';
import type { FqdnIdentityTable } from './l7/fqdn.ts';
import type { EndpointL7Policy } from './l7/policy.ts';
import { ProxySupervisor } from '../proxy/core/supervisor.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface AgentOptions {
  policies: string[];
  endpoints: string;
  audit: boolean;
  socket: string;
  stateDir: string;
  bpfRoot: string;
  uplinks: string[];
  config?: string;
  log?: (msg: string) => void;
}

interface StatusError {
  file: string;
  line: number;
  object?: string;
  field?: string;
  message: string;
}

function problemToError(p: Problem): StatusError {
  return { file: p.file, line: p.line, ...(p.object ? { object: p.object } : {}), ...(p.field ? { field: p.field } : {}), message: p.message };
}

export class Agent {
  readonly opts: AgentOptions;
  readonly settings: Settings;
  readonly engine: PolicyEngine;
  readonly flows: FlowStore;
  revision = 0;
  #log: (msg: string) => void;
  #store: StateStore;
  #objects: LoadedObject[] = [];
  #manager!: EndpointManager;
  #ringbuf?: RingbufReader;
  #server?: http.Server;
  #proxy?: ProxySupervisor;
  #watchers: FSWatcher[] = [];
  #timers: NodeJS.Timeout[] = [];
  #queue: Promise<void> = Promise.resolve();
  #endpointsFile: EndpointsFile;
  /** policy object ref → its rules and file, as applied */
  #applied = new Map<string, { rules: Rule[]; json: string; file: string }>();
  #policyErrors: StatusError[] = [];
  /** Last L7 policy sent per endpoint: kept for endpoints whose policy cannot be computed. */
  #lastL7 = new Map<string, EndpointL7Policy>();
  #endpointErrors: StatusError[] = [];
  #endpointPolicyErrors = new Map<string, string>();
  #monoOffsetMs = Date.now() - Number(process.hrtime.bigint() / 1_000_000n);

  private constructor(opts: AgentOptions, settings: Settings, engine: PolicyEngine, endpointsFile: EndpointsFile, store: StateStore) {
    this.opts = opts;
    this.settings = settings;
    this.engine = engine;
    this.#endpointsFile = endpointsFile;
    this.#store = store;
    this.flows = new FlowStore(settings.flowBufferSize);
    this.#log = opts.log ?? ((m) => process.stderr.write(`${new Date().toISOString()} agent: ${m}\n`));
  }

  /**
   * Starts the agent: computes policy, programs and attaches the datapath, serves the API and
   * watches its inputs.
   * @throws when the datapath cannot be loaded or the socket cannot be served
   */
  static async start(opts: AgentOptions): Promise<Agent> {
    const settings = readSettings(opts.config);
    const store = new StateStore(opts.stateDir);
    const persisted = store.read();
    let endpointsFile: EndpointsFile;
    const startErrors: StatusError[] = [];
    try {
      endpointsFile = readEndpointsFile(opts.endpoints);
    } catch (e) {
      const problems = (e as { problems?: string[] }).problems ?? [(e as Error).message];
      for (const p of problems) startErrors.push({ file: opts.endpoints, line: Number(/:(\d+):/.exec(p)?.[1] ?? 0), message: p });
      endpointsFile = { file: opts.endpoints, gateway: '169.254.1.1', namespaces: [], endpoints: [] };
    }
    const engine = new PolicyEngine({ hostIps: [endpointsFile.gateway] });
    engine.allocator.restore(persisted.identities);
    const agent = new Agent(opts, settings, engine, endpointsFile, store);
    agent.#endpointErrors = startErrors;
    await agent.#init(persisted);
    return agent;
  }

  async #init(persisted: ReturnType<StateStore['read']>): Promise<void> {
    const { buildBpf } = (await import(pathToFileURL(path.join(root, 'scripts', 'build-bpf.mjs')).href)) as { buildBpf: (o: object) => Promise<string[]> };
    await buildBpf({ quiet: true });
    // The DNS cache (the proxy's, reference §5.6) before anything is programmed: the first
    // reconciliation must keep the ipcache entries of learned IPs.
    this.#proxy = new ProxySupervisor({ stateDir: this.opts.stateDir, bpfRoot: this.opts.bpfRoot, agentSocket: this.opts.socket, config: this.opts.config, log: this.#log });
    const fqdnNames = await this.#proxy.fqdnNames();
    if (fqdnNames.length) this.#log(`restored ${fqdnNames.length} DNS name(s) from the proxy's cache`);
    // policies and endpoints into the engine, in one pass
    const loaded = loadPolicyPaths(this.opts.policies);
    this.#policyErrors = loaded.problems.filter((p) => p.severity === 'error').map(problemToError);
    for (const p of loaded.problems.filter((p) => p.severity === 'warning')) this.#log(`warning: ${p.file}:${p.line}: ${p.object ?? ''} ${p.field ?? ''}: ${p.message}`);
    this.engine.bulk(() => {
      this.engine.setNamespaces(this.#endpointsFile.namespaces);
      for (const ep of this.#endpointsFile.endpoints) this.engine.upsertEndpoint(ep);
      for (const { name, ips } of fqdnNames) this.engine.learnFqdn(name, ips);
      for (const [ref, rules] of rulesByObject(loaded.rules)) {
        this.engine.replacePolicyObject(ref, rules);
        this.#applied.set(ref, { rules, json: JSON.stringify(rules), file: rules[0]!.origin.location.file });
      }
    });
    this.revision = 1;
    // datapath
    const config = {
      flags: this.opts.audit ? ConfigFlags.AUDIT : 0,
      eventsPerSec: this.settings.eventRateLimit,
      eventsBurst: this.settings.eventBurst,
      hostIdentity: 1,
    };
    // every uplink must exist before anything is loaded, pinned or attached
    for (const u of this.opts.uplinks) {
      try {
        query(u, 'ingress');
      } catch (e) {
        throw new Error(`uplink ${u}: ${(e as Error).message}; nothing was loaded or attached`);
      }
    }
    const lxc = load({ objectPath: path.join(root, 'build', 'bpf', 'bpf_lxc.o'), pinRoot: this.opts.bpfRoot, config });
    this.#objects.push(lxc);
    let fromNetdev: number | undefined;
    const hostObj = path.join(root, 'build', 'bpf', 'bpf_host.o');
    if (existsSync(hostObj)) {
      const host = load({ objectPath: hostObj, pinRoot: this.opts.bpfRoot });
      this.#objects.push(host);
      fromNetdev = host.program(PROGRAMS.fromNetdev);
    }
    this.#log(`datapath loaded (pins ${this.opts.bpfRoot}${lxc.reusedPinnedMaps.length ? `, reused ${lxc.reusedPinnedMaps.length} pinned maps` : ''})`);
    this.#manager = new EndpointManager({
      engine: this.engine,
      policy: lxc.policy(),
      ipcache: lxc.ipcache(),
      endpoints: lxc.endpoints(),
      programs: { fromContainer: lxc.program(PROGRAMS.fromContainer), toContainer: lxc.program(PROGRAMS.toContainer), fromNetdev },
      epIds: new NumberTable(persisted.endpointIds),
      cookies: new NumberTable(persisted.cookies),
    });
    // remembered for `membrane cleanup`
    writeFileSync(path.join(this.opts.stateDir, 'uplinks.json'), JSON.stringify(this.opts.uplinks));
    // Uplinks first (each was checked before loading): a failed attach names the interface and
    // the step and leaves the endpoints untouched (nothing half-programmed).
    for (const u of this.opts.uplinks) {
      try {
        this.#manager.attachUplink(u);
      } catch (e) {
        throw new Error(`uplink ${u}: ${(e as Error).message}; endpoints were not programmed`);
      }
      this.#log(`uplink ${u}: attached`);
    }
    await this.#reconcile();
    this.#persist();
    // events → flows
    const flowCtx: FlowContext = {
      endpointOfIp: (ip) => this.engine.endpointByIp(ip)?.ref,
      originsOfCookie: (c) => this.#manager.originsOfCookie(c),
      wallClockOf: (ts) => this.#monoOffsetMs + Number(ts / 1_000_000n),
    };
    this.#ringbuf = RingbufReader.fromFd(lxc.mapFd('mbr_events_v1'));
    this.#ringbuf.start((events) => {
      for (const ev of events) this.flows.add(flowOf(flowCtx, ev));
    }, { onError: (e) => this.#log(`event reader stopped: ${e.message}`) });
    // API
    this.#server = await startApiServer(this.opts.socket, {
      status: () => this.status(),
      flows: (n, filter) => this.flows.last(n, filter),
      subscribe: (fn) => this.flows.subscribe(fn),
      ingest: (body) => this.flows.addRaw(body),
      fqdn: (update) =>
        new Promise((resolve, reject) =>
          this.#enqueue('DNS cache update', () => {
            try {
              resolve({ fqdn: this.applyFqdn(update) });
            } catch (e) {
              reject(e as Error);
            }
          }),
        ),
    });
    this.#log(`serving ${this.opts.socket}; policy revision ${this.revision}`);
    this.#startProxy();
    this.#watch();
  }

  /**
   * The L7 proxy (DESIGN §3.4, §4): the redirect routing in this (node) namespace, the proxy
   * process (started detached unless one runs for this state dir) and its first policy. Never
   * fails the agent: problems are logged and pushes retried.
   */
  #startProxy(): void {
    if (!this.#proxy) return;
    try {
      this.#proxy.ensureRouting();
      this.#proxy.ensureRunning();
    } catch (e) {
      this.#log(`proxy: ${(e as Error).message}`);
    }
    this.#pushL7();
  }

  /** Sends the L7 policy of the enforced endpoints to the proxy (after every applied change). */
  #pushL7(): void {
    if (!this.#proxy) return;
    try {
      this.#proxy.push(buildL7Snapshot(this.engine, this.revision, this.opts.audit, this.#manager.enforced.keys(), this.#lastL7));
    } catch (e) {
      this.#log(`proxy policy: ${(e as Error).message}`);
    }
  }

  /** Programs every plumbed endpoint from scratch against the maps as they are. */
  async #reconcile(): Promise<void> {
    const plumbed = await listPlumbed(this.#endpointsFile);
    const errors = this.#manager.reconcile(plumbed, this.revision);
    this.#endpointPolicyErrors = errors;
    for (const [ref, err] of errors) this.#log(`${ref}: keeps its previous policy: ${err}`);
  }

  #persist(): void {
    this.#store.write({
      version: 1,
      identities: this.engine.allocator.snapshot(),
      endpointIds: this.#manager.epIds.toJSON(),
      cookies: this.#manager.cookies.toJSON(),
    });
  }

  #enqueue(what: string, fn: () => Promise<void> | void): void {
    this.#queue = this.#queue.then(fn).catch((e) => this.#log(`${what} failed: ${(e as Error).stack ?? e}`));
  }

  #watch(): void {
    const debounce = (fn: () => void, ms = 150) => {
      let t: NodeJS.Timeout | undefined;
      return () => {
        if (t) clearTimeout(t);
        t = setTimeout(fn, ms);
      };
    };
    const policyReload = debounce(() => this.#enqueue('policy reload', () => this.reloadPolicies()));
    const endpointsReload = debounce(() => this.#enqueue('endpoints reload', () => this.reloadEndpoints()));
    for (const p of this.opts.policies) {
      // watch the directory (editors replace files by rename), or the file's directory
      const isDir = existsSync(p) && !p.endsWith('.yaml') && !p.endsWith('.yml') && !p.endsWith('.json');
      if (isDir) this.#watchTree(p, policyReload);
      else {
        try {
          this.#watchers.push(watch(path.dirname(p), policyReload));
        } catch (e) {
          this.#log(`cannot watch ${path.dirname(p)}: ${(e as Error).message}`);
        }
      }
    }
    const epDir = path.dirname(path.resolve(this.opts.endpoints));
    const epBase = path.basename(this.opts.endpoints);
    this.#watchers.push(
      watch(epDir, (_ev, name) => {
        if (!name || name === epBase || name.startsWith(epBase)) endpointsReload();
      }),
    );
    // Interfaces come and go outside the agent (`membrane endpoint up|down`): look every 2 s.
    this.#timers.push(setInterval(() => this.#enqueue('plumbing check', () => this.#checkPlumbing()), 2000));
    // Conntrack entries of closed flows expire; keep the LRU map tidy.
    this.#timers.push(setInterval(() => this.#enqueue('persist', () => this.#persist()), 30000));
  }

  /**
   * Watches a directory and its subdirectories with one non-recursive watcher each. Node 20's
   * `recursive: true` on Linux stops reporting a file once it has been replaced by rename (as
   * editors save), so later edits were missed. New subdirectories are picked up on the next event.
   */
  #watchTree(root: string, onChange: () => void): void {
    const watched = new Set<string>();
    const scan = (dir: string) => {
      if (!watched.has(dir)) {
        try {
          const forget = () => {
            w.close();
            watched.delete(dir);
          };
          const w = watch(dir, () => {
            if (existsSync(dir)) scan(dir);
            else forget(); // a directory made again under this name gets a new watcher
            onChange();
          });
          w.on('error', forget);
          watched.add(dir);
          this.#watchers.push(w);
        } catch (e) {
          this.#log(`cannot watch ${dir}: ${(e as Error).message}`);
          return;
        }
      }
      let entries: Dirent[] = [];
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        /* gone */
      }
      for (const ent of entries) if (ent.isDirectory()) scan(path.join(dir, ent.name));
    };
    scan(root);
  }

  async #checkPlumbing(): Promise<void> {
    const plumbed = await listPlumbed(this.#endpointsFile);
    const now = new Map(plumbed.map((p) => [`${p.endpoint.namespace}/${p.endpoint.name}`, p.ifindex]));
    const enforced = this.#manager.enforced;
    let changed = now.size !== enforced.size;
    for (const [ref, ifindex] of now) if (enforced.get(ref)?.ifindex !== ifindex) changed = true;
    if (!changed) return;
    for (const ref of [...enforced.keys()]) if (!now.has(ref)) this.#manager.forget(ref);
    await this.#reconcile();
    this.#persist();
    this.#pushL7();
    this.#log(`plumbing changed: ${now.size} endpoint(s) enforced`);
  }

  /**
   * Mirrors the DNS proxy's cache changes in the engine and programs what follows (FQDN
   * identities for new selector sets, their policy entries, ipcache entries); the proxy gets
   * a new snapshot when the FQDN identity table changed.
   * @returns the FQDN identity table after the change
   */
  applyFqdn(update: { learn: Array<{ name: string; ips: string[] }>; forget: Array<{ name: string; ips: string[] }> }): FqdnIdentityTable {
    // the common case: every IP has an identity already (the proxy wrote the entries too)
    if (update.forget.length === 0) {
      const written = this.engine.learnFqdnFast(update.learn);
      if (written) {
        this.#manager.upsertIpcache(written);
        return this.engine.fqdnTable();
      }
    }
    const before = JSON.stringify(this.engine.fqdnTable());
    const changes = this.engine.bulk(() => {
      for (const { name, ips } of update.learn) this.engine.learnFqdn(name, ips);
      for (const { name, ips } of update.forget) this.engine.forgetFqdn(name, ips);
    });
    const touched = changes.byEndpoint.size > 0 || changes.identitiesAdded.length > 0 || changes.identitiesRemoved.length > 0;
    if (touched) {
      this.revision++;
      const failed = this.#manager.apply(changes, this.revision);
      for (const [ref, err] of failed) this.#log(`${ref}: keeps its previous policy: ${err}`);
    } else this.#manager.syncIpcache();
    const table = this.engine.fqdnTable();
    if (JSON.stringify(table) !== before) this.#pushL7();
    return table;
  }

  /** Re-reads the policy paths and applies what changed (refused objects keep their version). */
  async reloadPolicies(): Promise<void> {
    const loaded = loadPolicyPaths(this.opts.policies);
    const errors = loaded.problems.filter((p) => p.severity === 'error');
    this.#policyErrors = errors.map(problemToError);
    const badFiles = new Set(errors.map((p) => p.file));
    const next = new Map<string, { rules: Rule[]; json: string; file: string }>();
    for (const [ref, rules] of rulesByObject(loaded.rules)) next.set(ref, { rules, json: JSON.stringify(rules), file: rules[0]!.origin.location.file });
    // a refused object keeps its previous version: objects of a file with errors that are missing now
    for (const [ref, prev] of this.#applied) if (!next.has(ref) && badFiles.has(prev.file)) next.set(ref, prev);
    const changedRefs: string[] = [];
    for (const [ref, obj] of next) if (this.#applied.get(ref)?.json !== obj.json) changedRefs.push(ref);
    for (const ref of this.#applied.keys()) if (!next.has(ref)) changedRefs.push(ref);
    if (changedRefs.length === 0) {
      if (errors.length) this.#log(`policy edit refused: ${errors.length} problem(s), e.g. ${errors[0]!.file}:${errors[0]!.line}: ${errors[0]!.message}`);
      return;
    }
    const changes = this.engine.bulk(() => {
      for (const ref of changedRefs) this.engine.replacePolicyObject(ref, next.get(ref)?.rules ?? []);
    });
    this.#applied = next;
    this.revision++;
    const failed = this.#manager.apply(changes, this.revision);
    this.#endpointPolicyErrors = failed;
    for (const [ref, err] of failed) this.#log(`${ref}: keeps its previous policy: ${err}`);
    this.#persist();
    this.#pushL7();
    this.#log(`policy revision ${this.revision}: ${changedRefs.length} object(s) changed${errors.length ? `, ${errors.length} problem(s) refused` : ''}`);
  }

  /** Re-reads the endpoints file and applies what changed. */
  async reloadEndpoints(): Promise<void> {
    let file: EndpointsFile;
    try {
      file = readEndpointsFile(this.opts.endpoints);
    } catch (e) {
      const problems = (e as { problems?: string[] }).problems ?? [(e as Error).message];
      this.#endpointErrors = problems.map((p) => ({ file: this.opts.endpoints, line: Number(/:(\d+):/.exec(p)?.[1] ?? 0), message: p }));
      this.#log(`endpoints edit refused: ${problems[0]}`);
      return;
    }
    this.#endpointErrors = [];
    const prev = new Map(this.#endpointsFile.endpoints.map((e) => [`${e.namespace}/${e.name}`, e]));
    const cur = new Map(file.endpoints.map((e) => [`${e.namespace}/${e.name}`, e]));
    const changes = this.engine.bulk(() => {
      if (JSON.stringify(file.namespaces) !== JSON.stringify(this.#endpointsFile.namespaces)) this.engine.setNamespaces(file.namespaces);
      for (const [ref] of prev) if (!cur.has(ref)) this.engine.removeEndpoint(ref);
      for (const [ref, ep] of cur) {
        const p = prev.get(ref);
        if (!p || JSON.stringify({ ...p, line: 0 }) !== JSON.stringify({ ...ep, line: 0 })) this.engine.upsertEndpoint(ep);
      }
    });
    this.#endpointsFile = file;
    this.revision++;
    // Peers' entries for changed identities are written before any ipcache update (forget()
    // rewrites the ipcache): otherwise a relabelled pod's new identity could reach the maps
    // before the deny entries that apply to it.
    this.#manager.apply(changes, this.revision);
    for (const [ref] of prev) if (!cur.has(ref)) this.#manager.forget(ref);
    await this.#reconcile();
    this.#persist();
    this.#pushL7();
    this.#log(`endpoints reloaded: ${file.endpoints.length} endpoint(s); policy revision ${this.revision}`);
  }

  /** The status document of `membrane status --json`. */
  status(): Record<string, unknown> {
    const endpoints = [...this.#manager.enforced.values()].map((e) => {
      const ep = this.engine.endpoint(e.ref);
      let ingress = false;
      let egress = false;
      try {
        const v = this.engine.endpointPolicy(e.ref);
        ingress = v.selectorPolicy.ingress.enforced;
        egress = v.selectorPolicy.egress.enforced;
      } catch {
        /* reported as error */
      }
      return {
        namespace: ep?.spec.namespace,
        name: ep?.spec.name,
        identity: ep?.identity.id,
        ips: ep?.spec.ips ?? [],
        interface: e.ifname,
        epId: e.epId,
        enforced: e.attached && !e.error && e.revision === this.revision,
        policyRevision: e.revision,
        ingressEnforced: ingress,
        egressEnforced: egress,
        audit: this.opts.audit || !!ep?.spec.audit,
        ...(e.error ? { error: e.error } : {}),
      };
    });
    const errors: StatusError[] = [...this.#policyErrors, ...this.#endpointErrors];
    for (const [ref, err] of this.#endpointPolicyErrors) errors.push({ file: this.opts.endpoints, line: 0, object: ref, message: `policy cannot be computed: ${err}` });
    const ready = endpoints.every((e) => e.enforced);
    return {
      ready,
      policyRevision: this.revision,
      endpoints,
      errors,
      audit: this.opts.audit,
      bpfRoot: this.opts.bpfRoot,
      stateDir: this.opts.stateDir,
      flows: this.flows.size,
    };
  }

  /** Stops the agent and leaves enforcement in place (programs attached, maps pinned). */
  async stop(): Promise<void> {
    for (const w of this.#watchers) w.close();
    for (const t of this.#timers) clearInterval(t);
    this.#proxy?.close();
    await this.#queue.catch(() => {});
    if (this.#server) await new Promise<void>((r) => this.#server!.close(() => r()));
    if (this.#ringbuf) await this.#ringbuf.close();
    this.#persist();
    for (const o of this.#objects) o.close();
  }
}
