// SPDX-License-Identifier: Apache-2.0
/**
 * @module endpoint/manager
 *
 * EndpointManager: regenerates enforced endpoints (Cilium's endpoint regeneration, resolve.go
 * PolicyOwner): it turns the policy engine's MapState and MapChanges into writes of the pinned
 * maps and attaches the tc programs.
 *
 * Ordering rules, so that no change opens an enforcement gap:
 * 1. policy entries are written before an endpoint's map entry says a direction is enforced,
 *    and the endpoint entry is written before its programs are attached (an interface without
 *    an endpoint entry is not ours to enforce);
 * 2. within a change, additions and updates are written before deletions;
 * 3. an endpoint whose policy cannot be computed keeps what the maps hold (or, when it never
 *    had a policy, denies everything in both directions); either way it is not marked ready.
 */
import { attach, detach, type EndpointsMap, type IpcacheMap, type PolicyMap, type PolicyEntryDesc, type PolicyKeyDesc, endpointFlags, PROGRAMS } from '../datapath/index.ts';
import type { EngineChanges, PolicyEngine } from '../policy/engine.ts';
import type { KeyedEntry } from '../policy/map-state.ts';
import type { L7Parser, PolicyKey } from '../policy/types.ts';
import { parsePrefix } from '../labels/cidr.ts';
import type { EndpointEntry } from './endpoints-file.ts';
import { NumberTable } from './state-store.ts';

/** Proxy port per L7 parser: the port tells the proxy which rule sets apply (DESIGN §4). */
export const PROXY_PORTS: Readonly<Record<L7Parser, number>> = Object.freeze({ http: 15001, kafka: 15002, dns: 15053 });

export interface ProgramFds {
  fromContainer: number;
  toContainer: number;
  fromNetdev?: number;
}

export interface EnforcedEndpoint {
  ref: string;
  ifname: string;
  ifindex: number;
  epId: number;
  /** Policy revision its maps reflect; 0 = never programmed. */
  revision: number;
  attached: boolean;
  error?: string;
}

/** A policy map key as text (for set membership). */
function policyKeyText(d: PolicyKeyDesc): string {
  return `${d.epId}/${d.identity}/${d.egress ? 1 : 0}/${d.proto}/${d.port}/${d.portPrefixLen}`;
}

export class EndpointManager {
  readonly #engine: PolicyEngine;
  readonly #policy: PolicyMap;
  readonly #ipcache: IpcacheMap;
  readonly #endpoints: EndpointsMap;
  readonly #programs: ProgramFds;
  readonly epIds: NumberTable;
  readonly cookies: NumberTable;
  /** cookie → the policies behind it */
  readonly #cookieOrigins = new Map<number, string[]>();
  /** ref → enforced endpoint */
  readonly enforced = new Map<string, EnforcedEndpoint>();
  /** prefix → ipcache value last written */
  readonly #ipcacheWritten = new Map<string, string>();

  constructor(opts: {
    engine: PolicyEngine;
    policy: PolicyMap;
    ipcache: IpcacheMap;
    endpoints: EndpointsMap;
    programs: ProgramFds;
    epIds: NumberTable;
    cookies: NumberTable;
  }) {
    this.#engine = opts.engine;
    this.#policy = opts.policy;
    this.#ipcache = opts.ipcache;
    this.#endpoints = opts.endpoints;
    this.#programs = opts.programs;
    this.epIds = opts.epIds;
    this.cookies = opts.cookies;
  }

  /** The policies behind a cookie written into the policy map (for verdict events). */
  originsOfCookie(cookie: number): string[] {
    const cached = this.#cookieOrigins.get(cookie);
    if (cached) return cached;
    const key = this.cookies.keyOf(cookie);
    const origins = key ? key.split('\n').filter(Boolean) : [];
    this.#cookieOrigins.set(cookie, origins);
    return origins;
  }

  /** Endpoint ref of an ep id. */
  refOfEpId(epId: number): string | undefined {
    for (const e of this.enforced.values()) if (e.epId === epId) return e.ref;
    return this.epIds.keyOf(epId);
  }

  #desc(epId: number, k: PolicyKey, e?: KeyedEntry['entry']): PolicyEntryDesc {
    const key: PolicyKeyDesc = { epId, identity: k.identity, egress: k.direction === 'egress', proto: k.proto, port: k.port, portPrefixLen: k.proto === 0 ? 0 : k.portPrefixLen };
    if (!e) return { ...key, deny: false, proxyPort: 0, cookie: 0 };
    const cookieKey = e.derivedFrom.join('\n');
    const cookie = this.cookies.get(cookieKey);
    this.#cookieOrigins.set(cookie, e.derivedFrom);
    return { ...key, deny: e.deny, proxyPort: e.redirect ? PROXY_PORTS[e.redirect] : 0, cookie };
  }

  #flags(ref: string): number {
    const view = this.#engine.endpointPolicy(ref);
    return endpointFlags({ ingress: view.selectorPolicy.ingress.enforced, egress: view.selectorPolicy.egress.enforced, audit: !!view.endpoint.spec.audit });
  }

  /**
   * Reconciles everything with the maps as they are (start-up and restart): writes the full
   * desired state and removes stale entries left by a previous run.
   * @param plumbed endpoints whose node-side interface exists
   * @param revision current policy revision
   * @returns per endpoint ref, the error that kept it from being programmed
   */
  reconcile(plumbed: Array<{ endpoint: EndpointEntry; ifname: string; ifindex: number }>, revision: number): Map<string, string> {
    const errors = new Map<string, string>();
    const desired = new Map<string, PolicyEntryDesc>();
    const keyOf = policyKeyText;
    const live = new Map<string, EnforcedEndpoint>();
    for (const p of plumbed) {
      const ref = `${p.endpoint.namespace}/${p.endpoint.name}`;
      const epId = this.epIds.get(ref);
      try {
        const view = this.#engine.endpointPolicy(ref);
        for (const e of view.mapState.unsortedEntries()) {
          const d = this.#desc(epId, e.key, e.entry);
          desired.set(keyOf(d), d);
        }
        live.set(ref, { ref, ifname: p.ifname, ifindex: p.ifindex, epId, revision, attached: false });
      } catch (e) {
        errors.set(ref, (e as Error).message);
        // keep whatever the maps hold for it (fail closed: previous policy)
        for (const cur of this.#policy.list(epId)) desired.set(keyOf(cur), cur);
        live.set(ref, { ref, ifname: p.ifname, ifindex: p.ifindex, epId, revision: 0, attached: false, error: (e as Error).message });
      }
    }
    // 1., 2. policy entries: write desired, then delete stale
    const current = this.#policy.list();
    const curByKey = new Map(current.map((c) => [keyOf(c), c]));
    const writes = [...desired.values()].filter((d) => {
      const c = curByKey.get(keyOf(d));
      return !c || c.deny !== d.deny || c.proxyPort !== d.proxyPort || c.cookie !== d.cookie;
    });
    this.#policy.upsertMany(writes);
    // the ipcache needs the enforced set (local endpoints carry their ep id and interface)
    this.enforced.clear();
    for (const [ref, e] of live) this.enforced.set(ref, e);
    this.syncIpcache();
    for (const e of live.values()) {
      // An endpoint whose policy cannot be computed keeps its flags; one that never had any is
      // enforced in both directions with no entries: it denies (fail closed, never wide open).
      const flags = e.error ? (this.#endpoints.get(e.ifindex)?.flags ?? endpointFlags({ ingress: true, egress: true, audit: false })) : this.#flags(e.ref);
      this.#endpoints.set(e.ifindex, { epId: e.epId, identity: this.#engine.endpoint(e.ref)!.identity.id, flags });
    }
    const stale = current.filter((c) => !desired.has(keyOf(c)));
    this.#policy.deleteMany(stale);
    // endpoints map entries of interfaces that are no longer ours
    const liveIfindexes = new Set([...live.values()].map((e) => e.ifindex));
    for (const [ifindex] of this.#endpoints.entries()) if (!liveIfindexes.has(ifindex)) this.#endpoints.delete(ifindex);
    // attach (atomic replace of a previous run's programs)
    for (const e of live.values()) {
      try {
        attach(e.ifname, 'ingress', this.#programs.fromContainer);
        attach(e.ifname, 'egress', this.#programs.toContainer);
        e.attached = true;
      } catch (err) {
        e.error = (err as Error).message;
        errors.set(e.ref, e.error);
      }
    }
    return errors;
  }

  /**
   * Writes ipcache entries the engine added without a sync (PolicyEngine.learnFqdnFast): host
   * prefixes of world addresses, never an enforced endpoint's.
   */
  upsertIpcache(entries: Map<string, number>): void {
    const writes: Array<[{ addr: string; prefixLen: number }, { identity: number; epId: number; ifindex: number; flags: number }]> = [];
    for (const [prefix, identity] of entries) {
      const [addr, len] = prefix.split('/');
      if (!addr || addr.includes(':')) continue; // IPv4 only for now (DESIGN §2)
      writes.push([{ addr, prefixLen: Number(len) }, { identity, epId: 0, ifindex: 0, flags: 0 }]);
      this.#ipcacheWritten.set(prefix, `${identity}/0/0`);
    }
    if (writes.length) this.#ipcache.setMany(writes);
  }

  /** Writes the engine's ipcache (with local endpoint ids) where it differs from what was written. */
  syncIpcache(): void {
    const desired = new Map<string, { identity: number; epId: number; ifindex: number }>();
    for (const [prefix, identity] of this.#engine.ipcacheEntries()) {
      const p = parsePrefix(prefix);
      if (!p || p.family !== 4) continue; // the datapath is IPv4-only for now (DESIGN §2)
      desired.set(prefix, { identity, epId: 0, ifindex: 0 });
    }
    for (const e of this.enforced.values()) {
      const ep = this.#engine.endpoint(e.ref);
      if (!ep) continue;
      for (const ip of ep.spec.ips) {
        const p = parsePrefix(ip);
        if (!p || p.family !== 4) continue;
        desired.set(`${ip}/32`, { identity: ep.identity.id, epId: e.epId, ifindex: e.ifindex });
      }
    }
    if (this.#ipcacheWritten.size === 0) {
      for (const [k] of this.#ipcache.entries()) this.#ipcacheWritten.set(`${k.addr}/${k.prefixLen}`, '?');
    }
    const toKey = (prefix: string) => {
      const [addr, len] = prefix.split('/');
      return { addr: addr!, prefixLen: Number(len) };
    };
    const writes: Array<[ReturnType<typeof toKey>, { identity: number; epId: number; ifindex: number; flags: number }]> = [];
    for (const [prefix, v] of desired) {
      const text = `${v.identity}/${v.epId}/${v.ifindex}`;
      if (this.#ipcacheWritten.get(prefix) !== text) {
        writes.push([toKey(prefix), { ...v, flags: 0 }]);
        this.#ipcacheWritten.set(prefix, text);
      }
    }
    this.#ipcache.setMany(writes);
    const deletes = [...this.#ipcacheWritten.keys()].filter((p) => !desired.has(p));
    this.#ipcache.deleteMany(deletes.map(toKey));
    for (const p of deletes) this.#ipcacheWritten.delete(p);
  }

  /**
   * Applies incremental engine changes to enforced endpoints.
   * @returns per endpoint ref, the error that kept its previous policy
   */
  apply(changes: EngineChanges, revision: number): Map<string, string> {
    const errors = new Map<string, string>();
    for (const [ref, err] of changes.errors) {
      errors.set(ref, err.message);
      const e = this.enforced.get(ref);
      if (e) e.error = err.message;
    }
    const deletes: PolicyKeyDesc[] = [];
    // An endpoint that had an error holds an older policy (or none) in the maps, not the state
    // the engine's changes are relative to: write its full policy and drop what is not in it.
    const resynced = new Set<string>();
    for (const e of this.enforced.values()) {
      if (!e.error || changes.errors.has(e.ref)) continue;
      try {
        const view = this.#engine.endpointPolicy(e.ref);
        const desired = new Map<string, PolicyEntryDesc>();
        for (const x of view.mapState.unsortedEntries()) {
          const d = this.#desc(e.epId, x.key, x.entry);
          desired.set(policyKeyText(d), d);
        }
        this.#policy.upsertMany(desired.values());
        for (const cur of this.#policy.list(e.epId)) if (!desired.has(policyKeyText(cur))) deletes.push(cur);
        resynced.add(e.ref);
      } catch (err) {
        errors.set(e.ref, (err as Error).message);
        e.error = (err as Error).message;
      }
    }
    for (const [ref, mc] of changes.byEndpoint) {
      const e = this.enforced.get(ref);
      if (!e || changes.errors.has(ref) || resynced.has(ref) || e.error) continue;
      // 2. adds and updates first
      this.#policy.upsertMany(mc.adds.map((a) => this.#desc(e.epId, a.key, a.entry)));
      for (const k of mc.deletes) deletes.push(this.#desc(e.epId, k));
    }
    this.syncIpcache();
    // 1. flags after entries
    for (const e of this.enforced.values()) {
      if (changes.errors.has(e.ref) || (e.error && !resynced.has(e.ref))) continue;
      try {
        const ep = this.#engine.endpoint(e.ref);
        if (!ep) continue;
        this.#endpoints.set(e.ifindex, { epId: e.epId, identity: ep.identity.id, flags: this.#flags(e.ref) });
        e.revision = revision;
        e.error = undefined;
      } catch (err) {
        errors.set(e.ref, (err as Error).message);
        e.error = (err as Error).message;
      }
    }
    this.#policy.deleteMany(deletes);
    return errors;
  }

  /** Stops enforcing an endpoint whose interface is gone or that left the endpoints file. */
  forget(ref: string): void {
    const e = this.enforced.get(ref);
    if (!e) return;
    this.enforced.delete(ref);
    try {
      detach(e.ifname);
    } catch {
      /* interface already gone */
    }
    this.#endpoints.delete(e.ifindex);
    this.#policy.deleteEndpoint(e.epId);
    this.syncIpcache();
  }

  /** Attaches the uplink program (traffic entering the node from outside). */
  attachUplink(ifname: string): void {
    if (!this.#programs.fromNetdev) throw new Error('no from-netdev program loaded');
    attach(ifname, 'ingress', this.#programs.fromNetdev);
  }

  static readonly programs = PROGRAMS;
}
