// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/engine
 *
 * PolicyEngine: the pure policy pipeline of one node. It holds the Repository, the identities
 * (endpoints, reserved, CIDR and FQDN), the userspace ipcache, the SelectorCache, one
 * SelectorPolicy per subject identity and one MapState per endpoint. Every mutation returns
 * the MapChanges it causes for each endpoint whose policy has been computed, so the agent
 * programs differences, never everything again.
 *
 * Ordering (as in Cilium's resolve.go): identities are synchronised into the SelectorCache
 * before policies are resolved, so selectors created while resolving already see them; a
 * SelectorPolicy is resolved before its MapState is built from the cached selections.
 */
import type { Rule } from '../api/types.ts';
import { IdentityAllocator, type Identity } from '../identity/allocator.ts';
import { endpointIdentityLabels, NAMESPACE_LABEL } from '../identity/endpoint-labels.ts';
import { IpCache } from '../identity/ipcache.ts';
import { ID_HOST, RESERVED_IDENTITIES } from '../identity/reserved.ts';
import { formatPrefix, parseIp, parsePrefix } from '../labels/cidr.ts';
import { LabelSet } from '../labels/labels.ts';
import { selectorMatches } from '../labels/selector.ts';
import { fqdnSelectorKey, fqdnSelectorMatcher } from '../l7/dns.ts';
import { fqdnBaseOf, fqdnIdentityLabels, fqdnSetKey, parseBases, type FqdnIdentityTable } from '../l7/fqdn.ts';
import { EndpointMapBuilder, MapState, type NamedPortResolver } from './map-state.ts';
import { Repository } from './repository.ts';
import { resolvePolicy, type SelectorPolicy } from './resolve.ts';
import { SelectorCache } from './selector-cache.ts';
import { entriesEqual, keyString, PROTO_SCTP, PROTO_TCP, PROTO_UDP, type MapChanges } from './types.ts';

export interface NamedPort {
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

/** An endpoint as the engine needs it (standalone endpoints file or a Kubernetes pod). */
export interface EndpointSpec {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ips: string[];
  namedPorts?: Record<string, NamedPort>;
  serviceAccount?: string;
  audit?: boolean;
}

export interface EngineEndpoint {
  /** `namespace/name` */
  ref: string;
  spec: EndpointSpec;
  identity: Identity;
}

/** What one mutation changed. */
export interface EngineChanges {
  /** endpoint ref → map changes (only endpoints whose policy has been computed) */
  byEndpoint: Map<string, MapChanges>;
  /**
   * endpoint ref → why its policy could not be recomputed. The engine drops that endpoint's
   * computed state (endpointPolicy() throws until the conflict is gone); what the datapath
   * holds is kept by the consumer (EndpointManager resynchronises it in full on recovery).
   */
  errors: Map<string, Error>;
  identitiesAdded: Identity[];
  identitiesRemoved: number[];
}

/** The computed policy of one endpoint. */
export interface EndpointPolicyView {
  endpoint: EngineEndpoint;
  selectorPolicy: SelectorPolicy;
  mapState: MapState;
}

const PROTO_NUM: Record<string, number> = { TCP: PROTO_TCP, UDP: PROTO_UDP, SCTP: PROTO_SCTP };

function emptyChanges(): EngineChanges {
  return { byEndpoint: new Map(), errors: new Map(), identitiesAdded: [], identitiesRemoved: [] };
}

interface EndpointSets {
  identities: Map<number, Identity>;
  clusterIps: Set<string>;
  ipcache: Map<string, number>;
}

interface Built {
  builder: EndpointMapBuilder;
  /** refs of endpoints sharing this builder */
  endpoints: Set<string>;
}

export class PolicyEngine {
  readonly repository = new Repository();
  readonly allocator = new IdentityAllocator();
  readonly selectorCache = new SelectorCache();
  readonly ipcache = new IpCache();
  readonly #endpoints = new Map<string, EngineEndpoint>();
  readonly #namespaces = new Map<string, Record<string, string>>();
  readonly #hostIps: string[];
  /** identity → SelectorPolicy (or the error that prevented computing it) */
  readonly #selectorPolicies = new Map<number, SelectorPolicy>();
  /** builder key → builder */
  readonly #builders = new Map<string, Built>();
  /** endpoint ref → builder key */
  readonly #endpointBuilder = new Map<string, string>();
  /** While > 0, mutations only record what they affect; the outermost bulk() syncs once. */
  #bulkDepth = 0;
  #bulkAffected = new Set<number>();
  #bulkChanges: EngineChanges | null = null;
  /** Endpoint-derived sets, rebuilt only after endpoint changes. */
  #epCache: EndpointSets | null = null;
  /** ipcache as last written: prefix text → identity */
  readonly #ipcacheState = new Map<string, number>();
  /** learned DNS names → IPs (node-global, reference §5.4) */
  readonly #fqdn = new Map<string, Set<string>>();
  /** learned IP → names holding it */
  readonly #fqdnByIp = new Map<string, Set<string>>();
  /** FQDN identity per fqdnSetKey, selectors and bases as of the last sync (learnFqdnFast) */
  #fqdnIdBySet = new Map<string, number>();
  #fqdnSelectorList: Array<{ key: string; matches: (name: string) => boolean }> = [];
  #fqdnBases: ReturnType<typeof parseBases> = [];
  /** learned name → keys of the toFQDNs selectors matching it, for the selector list #fqdnKeysSig */
  readonly #fqdnKeysOf = new Map<string, string[]>();
  #fqdnKeysSig = '';
  /** FQDN identities as of the last sync (what the DNS proxy is sent) */
  #fqdnTable: FqdnIdentityTable = { selectors: [], cidrs: [], identities: [] };
  /** identities currently in the selector cache */
  readonly #live = new Set<number>();

  /**
   * @param options.hostIps addresses of the node itself (identity host), e.g. the pods' gateway
   */
  constructor(options: { hostIps?: string[] } = {}) {
    this.#hostIps = options.hostIps ?? [];
    const reserved = RESERVED_IDENTITIES.map((r) => this.allocator.get(r.id)!);
    this.selectorCache.updateIdentities(reserved, []);
    for (const r of reserved) this.#live.add(r.id);
    this.#rebuildIpCache();
  }

  // ---- inputs -------------------------------------------------------------------------

  /**
   * Runs several mutations and brings everything up to date once at the end (start-up,
   * reloading a directory). Mutations inside return empty changes; bulk() returns them all.
   */
  bulk(fn: () => void): EngineChanges {
    this.#bulkDepth++;
    this.#bulkChanges ??= emptyChanges();
    let failure: unknown;
    try {
      fn();
    } catch (e) {
      failure = e;
    } finally {
      this.#bulkDepth--;
    }
    if (this.#bulkDepth > 0) {
      if (failure !== undefined) throw failure;
      return emptyChanges();
    }
    // The outermost bulk always syncs what was done, even when `fn` threw part-way, so the
    // engine never keeps half-recorded state; the error is rethrown after.
    const changes = this.#bulkChanges!;
    const affected = this.#bulkAffected;
    this.#bulkChanges = null;
    this.#bulkAffected = new Set();
    this.#sync(changes, affected);
    if (failure !== undefined) throw failure;
    return changes;
  }

  /** Sets namespace labels; endpoints in changed namespaces get new identities. */
  setNamespaces(list: Array<{ name: string; labels: Record<string, string> }>): EngineChanges {
    this.#namespaces.clear();
    for (const ns of list) this.#namespaces.set(ns.name, ns.labels);
    const changes = emptyChanges();
    for (const ep of [...this.#endpoints.values()]) this.#putEndpoint(ep.spec, changes, false);
    this.#sync(changes, new Set());
    return changes;
  }

  upsertEndpoint(spec: EndpointSpec): EngineChanges {
    const changes = emptyChanges();
    this.#putEndpoint(spec, changes, true);
    this.#sync(changes, new Set());
    return changes;
  }

  removeEndpoint(ref: string): EngineChanges {
    const changes = emptyChanges();
    const ep = this.#endpoints.get(ref);
    if (ep) {
      this.#endpoints.delete(ref);
      this.#epCache = null;
      this.#detachBuilder(ref);
      if (ep.spec.namedPorts) this.#invalidateNamedPortUsers();
    }
    this.#sync(changes, new Set());
    return changes;
  }

  /**
   * Replaces every rule of one policy object (empty = delete it).
   * Subjects of the old and new rules get their policy recomputed.
   */
  replacePolicyObject(ref: string, rules: Rule[]): EngineChanges {
    const changes = emptyChanges();
    const old = this.repository.replaceObject(ref, rules);
    // Only policies already computed can be stale; the rest are computed on first use.
    const affected = new Set<number>();
    for (const id of this.#selectorPolicies.keys()) {
      const identity = this.allocator.get(id);
      if (!identity) continue;
      for (const r of [...old, ...rules]) {
        if (this.#subjectSelects(r, identity)) {
          affected.add(id);
          break;
        }
      }
    }
    this.#sync(changes, affected);
    return changes;
  }

  /**
   * Records IPs from an allowed DNS answer for a name (reference §5.4): they get FQDN
   * identities for every toFQDNs selector matching the name.
   */
  learnFqdn(name: string, ips: string[]): EngineChanges {
    const key = name.toLowerCase().replace(/\.?$/, '.');
    this.#recordFqdn(key, ips);
    const changes = emptyChanges();
    this.#sync(changes, new Set());
    return changes;
  }

  #recordFqdn(key: string, ips: readonly string[]): void {
    let set = this.#fqdn.get(key);
    if (!set) this.#fqdn.set(key, (set = new Set()));
    for (const ip of ips) {
      set.add(ip);
      let names = this.#fqdnByIp.get(ip);
      if (!names) this.#fqdnByIp.set(ip, (names = new Set()));
      names.add(key);
    }
  }

  /**
   * The DNS proxy's common case without a full sync: IPs learned for names whose identities
   * already exist (src/l7/fqdn.ts: the selector set and base of each IP has an identity with its
   * policy entries). Only the ipcache changes.
   * @returns the ipcache entries written (prefix → identity), or null, having changed nothing,
   *   when some IP needs an identity that does not exist yet (then use learnFqdn)
   */
  learnFqdnFast(list: ReadonlyArray<{ name: string; ips: readonly string[] }>): Map<string, number> | null {
    if (this.#bulkDepth > 0) return null;
    const epSets = this.#endpointSets();
    const plan = new Map<string, number>();
    const norm = list.map(({ name, ips }) => ({ key: name.toLowerCase().replace(/\.?$/, '.'), ips }));
    const pending = new Map<string, Set<string>>();
    for (const { key, ips } of norm) for (const ip of ips) {
      let s = pending.get(ip);
      if (!s) pending.set(ip, (s = new Set(this.#fqdnByIp.get(ip) ?? [])));
      s.add(key);
    }
    for (const [ip, names] of pending) {
      const prefix = hostPrefix(ip);
      if (epSets.clusterIps.has(prefix) || !prefix.includes('/')) continue; // §2.10; not an address
      const keys = new Set<string>();
      for (const n of names) for (const k of this.#keysOf(n)) keys.add(k);
      if (keys.size === 0) continue;
      const id = this.#fqdnIdBySet.get(fqdnSetKey([...keys], this.#fqdnBases.length ? fqdnBaseOf(ip, this.#fqdnBases) : null));
      if (id === undefined || !this.#live.has(id)) return null;
      plan.set(prefix, id);
    }
    for (const { key, ips } of norm) this.#recordFqdn(key, ips);
    const written = new Map<string, number>();
    for (const [prefix, id] of plan) {
      if (this.#ipcacheState.get(prefix) === id || epSets.ipcache.has(prefix)) continue;
      this.ipcache.upsert(prefix, id);
      this.#ipcacheState.set(prefix, id);
      written.set(prefix, id);
    }
    return written;
  }

  /** Keys of the toFQDNs selectors (as of the last sync) matching a learned name. */
  #keysOf(name: string): string[] {
    let keys = this.#fqdnKeysOf.get(name);
    if (!keys) {
      keys = this.#fqdnSelectorList.filter((sel) => sel.matches(name)).map((sel) => sel.key);
      this.#fqdnKeysOf.set(name, keys);
    }
    return keys;
  }

  /** Forgets a learned name (or some of its IPs). */
  forgetFqdn(name: string, ips?: string[]): EngineChanges {
    const key = name.toLowerCase().replace(/\.?$/, '.');
    const set = this.#fqdn.get(key);
    if (set) {
      for (const ip of ips ?? [...set]) {
        const names = this.#fqdnByIp.get(ip);
        names?.delete(key);
        if (names?.size === 0) this.#fqdnByIp.delete(ip);
      }
      if (ips) for (const ip of ips) set.delete(ip);
      if (!ips || set.size === 0) {
        this.#fqdn.delete(key);
        this.#fqdnKeysOf.delete(key);
      }
    }
    const changes = emptyChanges();
    this.#sync(changes, new Set());
    return changes;
  }

  // ---- queries ------------------------------------------------------------------------

  endpoint(ref: string): EngineEndpoint | undefined {
    return this.#endpoints.get(ref);
  }

  endpoints(): EngineEndpoint[] {
    return [...this.#endpoints.values()];
  }

  /** The endpoint owning an IP, if any. */
  endpointByIp(ip: string): EngineEndpoint | undefined {
    const norm = parseIp(ip);
    if (!norm) return undefined;
    for (const ep of this.#endpoints.values()) {
      for (const a of ep.spec.ips) {
        const p = parseIp(a);
        if (p && p.family === norm.family && p.addr === norm.addr) return ep;
      }
    }
    return undefined;
  }

  isHostIp(ip: string): boolean {
    const norm = parseIp(ip);
    return !!norm && this.#hostIps.some((h) => {
      const p = parseIp(h);
      return p !== null && p.family === norm.family && p.addr === norm.addr;
    });
  }

  /** Identity of an address as the datapath resolves it. */
  identityOfIp(ip: string): number {
    return this.ipcache.lookup(ip);
  }

  /**
   * Computes (or returns) an endpoint's policy.
   * @throws PolicyMergeError when its policy cannot be computed
   */
  endpointPolicy(ref: string): EndpointPolicyView {
    const ep = this.#endpoints.get(ref);
    if (!ep) throw new Error(`unknown endpoint ${ref}`);
    let key = this.#endpointBuilder.get(ref);
    if (!key) {
      const sp = this.#selectorPolicy(ep.identity);
      key = this.#builderKey(ep, sp);
      let built = this.#builders.get(key);
      if (!built) {
        const builder = new EndpointMapBuilder(sp, this.portResolver(ep));
        builder.build();
        built = { builder, endpoints: new Set() };
        this.#builders.set(key, built);
      }
      built.endpoints.add(ref);
      this.#endpointBuilder.set(ref, key);
    }
    const b = this.#builders.get(key)!.builder;
    return { endpoint: ep, selectorPolicy: b.policy, mapState: b.state };
  }

  /** Computes every endpoint's policy; returns errors per endpoint. */
  computeAll(): Map<string, Error> {
    const errors = new Map<string, Error>();
    for (const ref of this.#endpoints.keys()) {
      try {
        this.endpointPolicy(ref);
      } catch (e) {
        errors.set(ref, e as Error);
      }
    }
    return errors;
  }

  // ---- internals ----------------------------------------------------------------------

  #subjectSelects(rule: Rule, identity: Identity): boolean {
    const ns = identity.labels.get('k8s', NAMESPACE_LABEL);
    if (rule.namespace !== undefined && rule.namespace !== ns) return false;
    return selectorMatches(rule.subject, identity.labels);
  }

  #selectorPolicy(identity: Identity): SelectorPolicy {
    let sp = this.#selectorPolicies.get(identity.id);
    if (!sp) {
      sp = resolvePolicy(identity, this.repository.rulesSelecting(identity.labels), this.selectorCache, this.repository.revision);
      this.#selectorPolicies.set(identity.id, sp);
    }
    return sp;
  }

  #builderKey(ep: EngineEndpoint, sp: SelectorPolicy): string {
    const named = sp.ingress.hasNamedPorts || sp.egress.hasNamedPorts;
    return named ? `${ep.identity.id}|${ep.ref}` : `${ep.identity.id}`;
  }

  /** Named-port resolution for one endpoint: its own ports (ingress) and its peers' (egress). */
  portResolver(ep: EngineEndpoint): NamedPortResolver {
    const own = (name: string, proto: number) => {
      const np = ep.spec.namedPorts?.[name];
      return np && PROTO_NUM[np.protocol] === proto ? [np.port] : [];
    };
    const peer = (identity: number, name: string, proto: number) => {
      const ports = new Set<number>();
      for (const other of this.#endpoints.values()) {
        if (identity !== 0 && other.identity.id !== identity) continue;
        const np = other.spec.namedPorts?.[name];
        if (np && PROTO_NUM[np.protocol] === proto) ports.add(np.port);
      }
      return [...ports];
    };
    return { own, peer };
  }

  #putEndpoint(spec: EndpointSpec, changes: EngineChanges, invalidateNamed: boolean): void {
    const ref = `${spec.namespace}/${spec.name}`;
    const labels = endpointIdentityLabels(spec.labels, spec.namespace, this.#namespaces.get(spec.namespace) ?? {}, spec.serviceAccount);
    const { identity } = this.allocator.allocate(labels);
    const prev = this.#endpoints.get(ref);
    this.#endpoints.set(ref, { ref, spec, identity });
    this.#epCache = null;
    const portsChanged = !prev || prev.identity.id !== identity.id || JSON.stringify(prev.spec.namedPorts) !== JSON.stringify(spec.namedPorts);
    if (prev && portsChanged) {
      const oldKey = this.#endpointBuilder.get(ref);
      const hadBuilder = oldKey !== undefined;
      // what the endpoint was last given: a pending named-port rebuild has not been diffed yet
      const oldState = hadBuilder ? (this.#pendingRebuilds.get(oldKey)?.old ?? this.#builders.get(oldKey)!.builder.state) : undefined;
      this.#detachBuilder(ref);
      if (hadBuilder) this.#rematerialize(ref, oldState, changes);
    }
    // Peers resolve egress named ports from the ports of every endpoint of an identity: they
    // change when this endpoint gains, changes or loses named ports, or takes them elsewhere.
    if (invalidateNamed && portsChanged && (spec.namedPorts || prev?.spec.namedPorts)) this.#invalidateNamedPortUsers();
  }

  #detachBuilder(ref: string): void {
    const key = this.#endpointBuilder.get(ref);
    if (!key) return;
    this.#endpointBuilder.delete(ref);
    const built = this.#builders.get(key);
    if (built) {
      built.endpoints.delete(ref);
      if (built.endpoints.size === 0) {
        this.#builders.delete(key);
        this.#pendingRebuilds.delete(key);
      }
    }
  }

  /** Recomputes one endpoint's map state and records the difference from `oldState`. */
  #rematerialize(ref: string, oldState: MapState | undefined, changes: EngineChanges): void {
    try {
      const view = this.endpointPolicy(ref);
      mergeInto(changes, ref, diffStates(oldState, view.mapState));
    } catch (e) {
      changes.errors.set(ref, e as Error);
    }
  }

  /** Builders whose egress resolves named ports against peers must be rebuilt. */
  #invalidateNamedPortUsers(): void {
    for (const [key, built] of this.#builders) {
      if (!built.builder.policy.egress.hasNamedPorts) continue;
      const fresh = new EndpointMapBuilder(built.builder.policy, built.builder.ports);
      let error: Error | undefined;
      try {
        fresh.build();
      } catch (e) {
        error = e as Error; // reported by the sync, which drops the builder
      }
      // Several invalidations before one sync (bulk): the diff must start from the state the
      // endpoints were last given, not from an intermediate rebuild nobody saw.
      const old = this.#pendingRebuilds.get(key)?.old ?? built.builder.state;
      this.#pendingRebuilds.set(key, { old, fresh, error });
      built.builder = fresh;
    }
  }

  readonly #pendingRebuilds = new Map<string, { old: MapState; fresh: EndpointMapBuilder; error?: Error }>();

  /**
   * Brings identities, ipcache, selector cache, selector policies and map states up to date.
   * @param affected subject identities whose rules changed
   */
  #sync(changes: EngineChanges, affected: Set<number>): void {
    if (this.#bulkDepth > 0) {
      for (const id of affected) this.#bulkAffected.add(id);
      const bc = this.#bulkChanges!;
      for (const [k, v] of changes.byEndpoint) mergeInto(bc, k, v);
      for (const [k, v] of changes.errors) bc.errors.set(k, v);
      return;
    }
    this.#doSync(changes, affected);
  }

  #doSync(changes: EngineChanges, affected: Set<number>): void {
    // 1. desired identities: endpoints, CIDR prefixes in rules, learned FQDN IPs
    const desired = new Map<number, Identity>();
    for (const r of RESERVED_IDENTITIES) desired.set(r.id, this.allocator.get(r.id)!);
    const epc = this.#endpointSets();
    for (const [id, identity] of epc.identities) desired.set(id, identity);
    const clusterIps = epc.clusterIps;
    const prefixIdentities = new Map<string, number>();
    for (const prefix of this.#cidrPrefixes()) {
      const p = parsePrefix(prefix)!;
      const text = formatPrefix(p);
      if (clusterIps.has(text)) continue; // cluster IPs keep their identity (§2.10)
      const { identity } = this.allocator.allocate(cidrLabels(text));
      desired.set(identity.id, identity);
      prefixIdentities.set(text, identity.id);
    }
    // FQDN identities (src/l7/fqdn.ts): each selector alone is pre-allocated, so the DNS proxy
    // can write a learned IP's ipcache entry without the agent; learned IPs get the identity of
    // their (selector set, base prefix).
    const fqdnSelectors = this.#fqdnSelectors();
    const bases = parseBases([...prefixIdentities.keys()]);
    const fqdnIds: FqdnIdentityTable['identities'] = [];
    const bySet = new Map<string, Identity>();
    const fqdnIdentity = (keys: string[], base: string | null): Identity => {
      const setKey = fqdnSetKey(keys, base);
      let identity = bySet.get(setKey);
      if (identity) return identity;
      identity = this.allocator.allocate(new LabelSet(fqdnIdentityLabels(keys, base))).identity;
      bySet.set(setKey, identity);
      if (!desired.has(identity.id)) fqdnIds.push({ selectors: [...new Set(keys)].sort(), base, id: identity.id });
      desired.set(identity.id, identity);
      return identity;
    };
    for (const sel of fqdnSelectors) fqdnIdentity([fqdnSelectorKey(sel)], null);
    // Names → matching selector keys, kept while the selectors stay the same (names repeat
    // across syncs; learned IPs can be many).
    const selectorsSig = fqdnSelectors.map((sel) => fqdnSelectorKey(sel)).join('\n');
    if (this.#fqdnKeysSig !== selectorsSig) {
      this.#fqdnKeysSig = selectorsSig;
      this.#fqdnKeysOf.clear();
      this.#fqdnSelectorList = fqdnSelectors.map((sel) => ({ key: fqdnSelectorKey(sel), matches: fqdnSelectorMatcher(sel) }));
    }
    const keysOf = (name: string) => this.#keysOf(name);
    const ipKeys = new Map<string, Set<string>>();
    for (const [name, ips] of this.#fqdn) {
      const keys = keysOf(name);
      if (keys.length === 0) continue;
      for (const ip of ips) {
        let s = ipKeys.get(ip);
        if (!s) ipKeys.set(ip, (s = new Set()));
        for (const k of keys) s.add(k);
      }
    }
    const learned = new Map<string, number>();
    for (const [ip, keys] of ipKeys) {
      const text = hostPrefix(ip);
      if (clusterIps.has(text)) continue; // toFQDNs never selects cluster IPs (§2.10)
      if (!parsePrefix(ip)) continue;
      learned.set(text, fqdnIdentity([...keys], bases.length ? fqdnBaseOf(ip, bases) : null).id);
    }
    for (const [text, id] of learned) prefixIdentities.set(text, id);
    this.#fqdnIdBySet = new Map([...bySet].map(([k, i]) => [k, i.id]));
    this.#fqdnBases = bases;
    this.#fqdnTable = { selectors: fqdnSelectors, cidrs: bases.map((b) => b.text), identities: fqdnIds };
    // 2. selector cache
    const added: Identity[] = [];
    const removed: number[] = [];
    for (const [id, identity] of desired) if (!this.#live.has(id)) added.push(identity);
    for (const id of this.#live) if (!desired.has(id)) removed.push(id);
    for (const i of added) this.#live.add(i.id);
    for (const id of removed) {
      this.#live.delete(id);
      this.allocator.release(id);
      this.#selectorPolicies.delete(id);
    }
    changes.identitiesAdded.push(...added);
    changes.identitiesRemoved.push(...removed);
    const selectionChanges = this.selectorCache.updateIdentities(added, removed);
    // 3. ipcache
    this.#rebuildIpCache(prefixIdentities);
    // 4. policies of affected subjects (new identities are computed lazily on first use)
    for (const id of affected) this.#selectorPolicies.delete(id);
    // 5. map states
    const touched = new Set<number>();
    for (const c of selectionChanges) for (const id of [...c.added, ...c.removed]) touched.add(id);
    for (const [key, built] of [...this.#builders]) {
      const refs = [...built.endpoints];
      const pending = this.#pendingRebuilds.get(key);
      if (affected.has(built.builder.policy.identity)) {
        const oldState = pending?.old ?? built.builder.state;
        this.#builders.delete(key);
        for (const ref of refs) this.#endpointBuilder.delete(ref);
        // Endpoints that shared the old builder usually share the new one: diff once per builder.
        const diffs = new Map<MapState, MapChanges>();
        for (const ref of refs) {
          try {
            const view = this.endpointPolicy(ref);
            let mc = diffs.get(view.mapState);
            if (!mc) diffs.set(view.mapState, (mc = diffStates(oldState, view.mapState)));
            mergeInto(changes, ref, mc);
          } catch (e) {
            changes.errors.set(ref, e as Error);
          }
        }
        continue;
      }
      let mc: MapChanges;
      try {
        if (pending?.error) throw pending.error;
        mc = pending ? diffStates(pending.old, built.builder.state) : { adds: [], deletes: [] };
        if (touched.size > 0) {
          const update: MapChanges = { adds: [], deletes: [] };
          built.builder.updateIdentities(touched, update);
          composeInto(mc, update);
        }
      } catch (e) {
        // New selections (or named ports) make two rules collide on one key (PolicyMergeError):
        // the endpoints keep what they were given; their policy is computed again on demand.
        this.#builders.delete(key);
        for (const ref of refs) {
          this.#endpointBuilder.delete(ref);
          changes.errors.set(ref, e as Error);
        }
        continue;
      }
      if (mc.adds.length || mc.deletes.length) for (const ref of refs) mergeInto(changes, ref, mc);
    }
    this.#pendingRebuilds.clear();
    if (affected.size > 0) this.#pruneSelectors();
  }

  #endpointSets(): EndpointSets {
    if (this.#epCache) return this.#epCache;
    const sets: EndpointSets = { identities: new Map(), clusterIps: new Set(), ipcache: new Map() };
    for (const ip of this.#hostIps) {
      sets.clusterIps.add(hostPrefix(ip));
      sets.ipcache.set(hostPrefix(ip), ID_HOST);
    }
    for (const ep of this.#endpoints.values()) {
      sets.identities.set(ep.identity.id, ep.identity);
      for (const ip of ep.spec.ips) {
        sets.clusterIps.add(hostPrefix(ip));
        sets.ipcache.set(hostPrefix(ip), ep.identity.id);
      }
    }
    this.#epCache = sets;
    return sets;
  }

  /** Writes the difference between the desired ipcache and the last one into `ipcache`. */
  #rebuildIpCache(prefixIdentities: Map<string, number> = new Map()): void {
    const epIpcache = this.#endpointSets().ipcache;
    // cluster addresses win over CIDR/FQDN prefixes of the same text (reference §2.10)
    const desiredOf = (prefix: string) => epIpcache.get(prefix) ?? prefixIdentities.get(prefix);
    for (const [prefix] of this.#ipcacheState) {
      if (desiredOf(prefix) === undefined) {
        this.ipcache.delete(prefix);
        this.#ipcacheState.delete(prefix);
      }
    }
    const write = (prefix: string, id: number) => {
      if (this.#ipcacheState.get(prefix) !== id) {
        this.ipcache.upsert(prefix, id);
        this.#ipcacheState.set(prefix, id);
      }
    };
    for (const [prefix, id] of prefixIdentities) if (!epIpcache.has(prefix)) write(prefix, id);
    for (const [prefix, id] of epIpcache) write(prefix, id);
  }

  /** Forgets cached selectors no computed policy uses (they are recreated on demand). */
  #pruneSelectors(): void {
    const inUse = new Set<string>();
    for (const sp of this.#selectorPolicies.values()) {
      for (const dir of ['ingress', 'egress'] as const) for (const f of sp[dir].filters.values()) for (const k of f.perSelector.keys()) inUse.add(k);
    }
    for (const built of this.#builders.values()) {
      for (const dir of ['ingress', 'egress'] as const) for (const f of built.builder.policy[dir].filters.values()) for (const k of f.perSelector.keys()) inUse.add(k);
    }
    this.selectorCache.prune(inUse);
  }

  /** Every prefix named by a `cidr:` requirement in any rule (including excepts). */
  #cidrPrefixes(): Set<string> {
    const out = new Set<string>();
    for (const rule of this.repository.allRules()) {
      for (const dr of [...rule.ingress, ...rule.egress]) {
        for (const p of dr.peers ?? []) {
          if (p.type !== 'labels') continue;
          for (const r of p.selector.requirements) if (r.key.startsWith('cidr:')) out.add(r.key.slice(5));
        }
      }
    }
    return out;
  }

  #fqdnSelectors(): Array<{ matchName?: string; matchPattern?: string }> {
    const seen = new Map<string, { matchName?: string; matchPattern?: string }>();
    for (const rule of this.repository.allRules()) {
      for (const dr of rule.egress) for (const p of dr.peers ?? []) if (p.type === 'fqdn') seen.set(fqdnSelectorKey(p), p);
    }
    return [...seen.values()];
  }

  /** The FQDN identities allocated now, for the DNS proxy (src/l7/fqdn.ts). */
  fqdnTable(): FqdnIdentityTable {
    return this.#fqdnTable;
  }

  /** Learned DNS names and their IPs (node-global, reference §5.4). */
  fqdnNames(): Map<string, string[]> {
    return new Map([...this.#fqdn].map(([n, ips]) => [n, [...ips]]));
  }

  /** Current ipcache as prefix → identity (for programming the datapath). */
  ipcacheEntries(): Map<string, number> {
    return new Map(this.#ipcacheState);
  }
}

const hostPrefixCache = new Map<string, string>();
/** Bound of hostPrefixCache (addresses not in canonical IPv4 text; cleared when reached). */
const HOST_PREFIX_CACHE_MAX = 65536;

/** A dotted quad already in canonical form (no leading zeros): its host prefix is `ip/32`. */
const CANONICAL_V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * `a.b.c.d` → `a.b.c.d/32` in canonical form. Canonical IPv4 text (what DNS answers and
 * endpoint files give) needs no parsing; anything else is parsed once and cached (endpoint
 * addresses repeat every sync).
 */
function hostPrefix(ip: string): string {
  if (CANONICAL_V4.test(ip)) return `${ip}/32`;
  let p = hostPrefixCache.get(ip);
  if (p === undefined) {
    const parsed = parsePrefix(ip);
    p = parsed ? formatPrefix(parsed) : ip;
    if (hostPrefixCache.size >= HOST_PREFIX_CACHE_MAX) hostPrefixCache.clear();
    hostPrefixCache.set(ip, p);
  }
  return p;
}


function cidrLabels(prefix: string): LabelSet {
  return new LabelSet([
    { source: 'cidr', key: prefix, value: '' },
    { source: 'reserved', key: 'world', value: '' },
  ]);
}

/** Difference between two map states as MapChanges. */
export function diffStates(oldState: MapState | undefined, next: MapState): MapChanges {
  const out: MapChanges = { adds: [], deletes: [] };
  const old = new Map((oldState?.unsortedEntries() ?? []).map((e) => [keyString(e.key), e]));
  const nxt = new Map(next.unsortedEntries().map((e) => [keyString(e.key), e]));
  for (const [ks, e] of old) if (!nxt.has(ks)) out.deletes.push(e.key);
  for (const [ks, e] of nxt) {
    const o = old.get(ks);
    if (!o || !entriesEqual(o.entry, e.entry)) out.adds.push(e);
  }
  return out;
}

/**
 * Appends `later` to `into` as if applied after it. Both are in normal form (no key both added
 * and deleted) and so is the result: per key, the later add or delete wins. Concatenating the
 * lists instead would leave a key in both, and a consumer writing adds before deletes
 * (EndpointManager.apply) would delete a key that was deleted and then added back, while one
 * writing deletes first would keep a key that was added and then deleted.
 */
function composeInto(into: MapChanges, later: MapChanges): void {
  if (later.adds.length === 0 && later.deletes.length === 0) return;
  const touched = new Set<string>();
  for (const k of later.deletes) touched.add(keyString(k));
  for (const a of later.adds) touched.add(keyString(a.key));
  into.adds = into.adds.filter((a) => !touched.has(keyString(a.key)));
  into.deletes = into.deletes.filter((k) => !touched.has(keyString(k)));
  into.adds.push(...later.adds);
  into.deletes.push(...later.deletes);
}

function mergeInto(changes: EngineChanges, ref: string, mc: MapChanges): void {
  const cur = changes.byEndpoint.get(ref);
  if (!cur) {
    changes.byEndpoint.set(ref, { adds: [...mc.adds], deletes: [...mc.deletes] });
    return;
  }
  composeInto(cur, mc);
}
