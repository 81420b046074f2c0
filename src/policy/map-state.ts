// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/map-state
 *
 * SelectorPolicy + one endpoint → MapState, the set of policy-map entries for that endpoint
 * (Cilium pkg/policy/mapstate.go, distillery.go), and the lookup the datapath performs on it.
 *
 * Entries are computed per peer identity. A candidate key k is dropped when a key k' of the
 * same identity or of identity 0, in the same direction, covers k's (proto, port) and has a
 * higher precedence (deny 255 > redirect 2 > allow 1; reference §2.5). Because coverage only
 * relates an identity with itself and with identity 0, the entries of identity X depend only
 * on X's candidates and the identity-0 entries: a change of X's selections recomputes X alone.
 */
import type { L4Filter, PerSelectorPolicy } from './l4-filter.ts';
import { PolicyMergeError } from './l4-filter.ts';
import { rangeToPrefixes } from './port-range.ts';
import type { SelectorPolicy } from './resolve.ts';
import {
  DIRECTIONS,
  PRECEDENCE_ALLOW,
  PRECEDENCE_DENY,
  PRECEDENCE_REDIRECT,
  PROTO_ANY,
  entriesEqual,
  keyMatches,
  keyPrefixLen,
  keyString,
  portCovers,
  type Direction,
  type MapChanges,
  type PolicyEntry,
  type PolicyKey,
} from './types.ts';

export interface KeyedEntry {
  key: PolicyKey;
  entry: PolicyEntry;
}

/** Resolves named ports (reference §2.8). */
export interface NamedPortResolver {
  /** Ports of the subject endpoint itself with this name and protocol (ingress). */
  own(name: string, proto: number): number[];
  /** Ports named so on pods of a peer identity; identity 0 = any pod on the node (egress). */
  peer(identity: number, name: string, proto: number): number[];
}

export const noNamedPorts: NamedPortResolver = { own: () => [], peer: () => [] };

type Candidates = Map<string, KeyedEntry>;

function addCandidate(into: Candidates, key: PolicyKey, entry: PolicyEntry): void {
  const ks = keyString(key);
  const cur = into.get(ks);
  if (!cur) {
    into.set(ks, { key, entry });
    return;
  }
  if (entry.precedence > cur.entry.precedence) into.set(ks, { key, entry });
  else if (entry.precedence === cur.entry.precedence) {
    if (entry.redirect !== cur.entry.redirect) {
      throw new PolicyMergeError(`conflicting L7 parsers (${cur.entry.redirect} and ${entry.redirect}) for ${ks}`);
    }
    const d = new Set([...cur.entry.derivedFrom, ...entry.derivedFrom]);
    into.set(ks, { key, entry: { ...cur.entry, derivedFrom: [...d].sort() } });
  }
}

/** Keys and entry of one (filter, selector) for one peer identity. */
function filterEntries(dir: Direction, f: L4Filter, identity: number, policy: PerSelectorPolicy, ports: NamedPortResolver, into: Candidates): void {
  const entry: PolicyEntry = {
    deny: policy.deny,
    redirect: policy.deny ? null : policy.parser,
    precedence: policy.deny ? PRECEDENCE_DENY : policy.parser ? PRECEDENCE_REDIRECT : PRECEDENCE_ALLOW,
    derivedFrom: [...policy.derivedFrom].sort(),
  };
  const { proto } = f.port;
  if (proto === PROTO_ANY) {
    addCandidate(into, { identity, direction: dir, proto: 0, port: 0, portPrefixLen: 0 }, entry);
    return;
  }
  let ranges: Array<[number, number]>;
  if (f.port.name) {
    const resolved = dir === 'ingress' ? ports.own(f.port.name, proto) : ports.peer(identity, f.port.name, proto);
    ranges = resolved.map((p) => [p, p]);
  } else if (f.port.port === 0) {
    ranges = [[0, 65535]];
  } else {
    ranges = [[f.port.port, f.port.endPort]];
  }
  for (const [a, b] of ranges) {
    for (const { port, prefixLen } of rangeToPrefixes(a, b)) {
      addCandidate(into, { identity, direction: dir, proto, port, portPrefixLen: prefixLen }, entry);
    }
  }
}

/** Keeps the candidates no broader-or-equal, higher-precedence key suppresses. */
function prune(cands: KeyedEntry[], against: KeyedEntry[]): KeyedEntry[] {
  return cands.filter(({ key, entry }) => {
    for (const o of against) {
      if (o.key.direction !== key.direction) continue;
      if (o.entry.precedence > entry.precedence && portCovers(o.key, key)) return false;
    }
    return true;
  });
}

/** The outcome of the datapath's lookup (reference §2.5). */
export interface LookupResult {
  /** The entry that decided, or null (no entry: default deny). */
  match: KeyedEntry | null;
  /** Which lookup decided: the peer's own entry (L3) or the any-peer entry (L4). */
  via: 'l3' | 'l4' | null;
}

export class MapState {
  /** identity → (key string → entry) */
  readonly #byIdentity = new Map<number, Map<string, KeyedEntry>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Every entry, in a stable order. */
  entries(): KeyedEntry[] {
    const out: KeyedEntry[] = [];
    for (const id of [...this.#byIdentity.keys()].sort((a, b) => a - b)) {
      const m = this.#byIdentity.get(id)!;
      for (const ks of [...m.keys()].sort()) out.push(m.get(ks)!);
    }
    return out;
  }

  /** Every entry, in no particular order (cheaper than entries()). */
  unsortedEntries(): KeyedEntry[] {
    const out: KeyedEntry[] = [];
    for (const m of this.#byIdentity.values()) for (const e of m.values()) out.push(e);
    return out;
  }

  entriesOf(identity: number): KeyedEntry[] {
    return [...(this.#byIdentity.get(identity)?.values() ?? [])];
  }

  identities(): number[] {
    return [...this.#byIdentity.keys()];
  }

  /**
   * Replaces the entries of one identity and records the difference.
   * @param changes accumulates adds and deletes
   */
  setIdentity(identity: number, entries: KeyedEntry[], changes?: MapChanges): void {
    const old = this.#byIdentity.get(identity) ?? new Map<string, KeyedEntry>();
    const next = new Map<string, KeyedEntry>();
    for (const e of entries) next.set(keyString(e.key), e);
    if (changes) {
      for (const [ks, e] of old) if (!next.has(ks)) changes.deletes.push(e.key);
      for (const [ks, e] of next) {
        const o = old.get(ks);
        if (!o || !entriesEqual(o.entry, e.entry)) changes.adds.push(e);
      }
    }
    this.#size += next.size - old.size;
    if (next.size === 0) this.#byIdentity.delete(identity);
    else this.#byIdentity.set(identity, next);
  }

  /**
   * The datapath's lookup (reference §2.5, numbered as in bpf/lib/policy.h):
   * 1. longest match for (peer identity, proto, port): a deny decides at once;
   * 2. longest match for (identity 0, proto, port);
   * 3. the L4-only entry wins if it is a deny, or there is no L3 entry, or it redirects and the
   *    L3 entry does not, or both are alike and its prefix is longer; else the L3 entry;
   * 4. no entry: default deny.
   */
  lookup(direction: Direction, identity: number, proto: number, port: number): LookupResult {
    const best = (id: number): KeyedEntry | null => {
      let b: KeyedEntry | null = null;
      for (const e of this.#byIdentity.get(id)?.values() ?? []) {
        if (e.key.direction !== direction || !keyMatches(e.key, proto, port)) continue;
        if (!b || keyPrefixLen(e.key) > keyPrefixLen(b.key)) b = e;
      }
      return b;
    };
    const l3 = identity === 0 ? null : best(identity);
    if (l3?.entry.deny) return { match: l3, via: 'l3' }; // 1.
    const l4 = best(0); // 2.
    if (!l3 && !l4) return { match: null, via: null }; // 4.
    if (!l3) return { match: l4, via: 'l4' };
    if (!l4) return { match: l3, via: 'l3' };
    // 3.
    if (l4.entry.deny) return { match: l4, via: 'l4' };
    const r4 = l4.entry.redirect ? 1 : 0;
    const r3 = l3.entry.redirect ? 1 : 0;
    if (r4 > r3 || (r4 === r3 && keyPrefixLen(l4.key) > keyPrefixLen(l3.key))) return { match: l4, via: 'l4' };
    return { match: l3, via: 'l3' };
  }
}

/**
 * Builds and maintains the MapState of one endpoint from its SelectorPolicy.
 * Call `build()` once, then `updateIdentities()` when selections change.
 */
export class EndpointMapBuilder {
  readonly policy: SelectorPolicy;
  readonly ports: NamedPortResolver;
  readonly state = new MapState();
  #wildcard: KeyedEntry[] = [];

  constructor(policy: SelectorPolicy, ports: NamedPortResolver) {
    this.policy = policy;
    this.ports = ports;
  }

  /** Candidates of one peer identity (0 = wildcard selectors). */
  #candidates(identity: number): KeyedEntry[] {
    const into: Candidates = new Map();
    for (const dir of DIRECTIONS) {
      for (const f of this.policy[dir].filters.values()) {
        for (const { selector, policy } of f.perSelector.values()) {
          if (identity === 0 ? !selector.wildcard : selector.wildcard || !selector.selections.has(identity)) continue;
          filterEntries(dir, f, identity, policy, this.ports, into);
        }
      }
    }
    return [...into.values()];
  }

  /** All identities some non-wildcard selector of this policy selects. */
  #selected(): Set<number> {
    const ids = new Set<number>();
    for (const dir of DIRECTIONS) {
      for (const f of this.policy[dir].filters.values()) {
        for (const { selector } of f.perSelector.values()) if (!selector.wildcard) for (const id of selector.selections) ids.add(id);
      }
    }
    return ids;
  }

  /** Computes every entry. */
  build(changes?: MapChanges): MapState {
    const w = this.#candidates(0);
    this.#wildcard = prune(w, w);
    this.state.setIdentity(0, this.#wildcard, changes);
    for (const id of this.#selected()) this.#rebuildIdentity(id, changes);
    return this.state;
  }

  #rebuildIdentity(id: number, changes?: MapChanges): void {
    const c = this.#candidates(id);
    this.state.setIdentity(id, prune(c, [...c, ...this.#wildcard]), changes);
  }

  /**
   * Recomputes the entries of identities whose selection changed.
   * @param ids identities added to or removed from any selector
   * @param changes accumulates the resulting adds and deletes
   */
  updateIdentities(ids: Iterable<number>, changes: MapChanges): void {
    for (const id of ids) if (id !== 0) this.#rebuildIdentity(id, changes);
  }
}
