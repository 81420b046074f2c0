// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/selector-cache
 *
 * Caches, for every distinct peer selector in use, the set of identities it selects, and
 * updates those sets when identities come and go (Cilium pkg/policy/selectorcache.go). The
 * wildcard selector is special: it selects every identity and is keyed as identity 0 in maps.
 */
import type { LabelSelector, PeerSelector } from '../api/types.ts';
import type { Identity } from '../identity/allocator.ts';
import { NAMESPACE_LABEL } from '../identity/endpoint-labels.ts';
import { isWildcardSelector, selectorMatches, selectorString } from '../labels/selector.ts';
import { fqdnSelectorKey } from '../l7/dns.ts';

export class CachedSelector {
  readonly key: string;
  readonly peer: PeerSelector | null;
  readonly wildcard: boolean;
  readonly selections = new Set<number>();
  /** Namespaces a label selector is restricted to (an `In` on the pod namespace), for indexing. */
  readonly namespaces: readonly string[] | null;

  constructor(key: string, peer: PeerSelector | null) {
    this.key = key;
    this.peer = peer;
    this.wildcard = peer === null || (peer.type === 'labels' && isWildcardSelector(peer.selector));
    const nsReq = peer?.type === 'labels' ? peer.selector.requirements.find((r) => r.key === `k8s:${NAMESPACE_LABEL}` && r.operator === 'In') : undefined;
    this.namespaces = nsReq ? nsReq.values : null;
  }

  /** True when this selector selects an identity. */
  selects(identity: Identity): boolean {
    if (this.wildcard) return true;
    const peer = this.peer!;
    if (peer.type === 'labels') return selectorMatches(peer.selector, identity.labels);
    return identity.labels.has('fqdn', fqdnSelectorKey(peer));
  }

  /** Readable form for explanations. */
  toString(): string {
    return this.key;
  }
}

/** Canonical key of a peer selector (null = wildcard). */
export function peerKey(peer: PeerSelector | null): string {
  if (peer === null) return '{}';
  if (peer.type === 'labels') return selectorString(peer.selector);
  return `fqdn:${fqdnSelectorKey(peer)}`;
}

export interface SelectionChange {
  selector: CachedSelector;
  added: number[];
  removed: number[];
}

export class SelectorCache {
  readonly #selectors = new Map<string, CachedSelector>();
  readonly #identities = new Map<number, Identity>();
  /** namespace → identity ids, to evaluate namespace-scoped selectors quickly */
  readonly #byNamespace = new Map<string, Set<number>>();

  /** The wildcard selector, shared. */
  readonly wildcard: CachedSelector;

  constructor() {
    this.wildcard = new CachedSelector('{}', null);
    this.#selectors.set('{}', this.wildcard);
  }

  /**
   * Returns the cached selector for a peer, computing its selections on first use.
   * Call before building map entries from it, or MapChanges may miss identities.
   */
  add(peer: PeerSelector | null): CachedSelector {
    const key = peerKey(peer);
    let cs = this.#selectors.get(key);
    if (cs) return cs;
    cs = new CachedSelector(key, peer);
    if (!cs.wildcard) for (const id of this.#candidates(cs)) if (cs.selects(this.#identities.get(id)!)) cs.selections.add(id);
    this.#selectors.set(key, cs);
    return cs;
  }

  /** A label selector as a cached selector (used for synthesized rules such as allow-localhost). */
  addLabels(selector: LabelSelector): CachedSelector {
    return this.add({ type: 'labels', field: 'entities', selector });
  }

  #candidates(cs: CachedSelector): Iterable<number> {
    if (!cs.namespaces) return this.#identities.keys();
    const out: number[] = [];
    for (const ns of cs.namespaces) for (const id of this.#byNamespace.get(ns) ?? []) out.push(id);
    return out;
  }

  identity(id: number): Identity | undefined {
    return this.#identities.get(id);
  }

  identities(): IterableIterator<Identity> {
    return this.#identities.values();
  }

  /**
   * Adds and removes identities and updates every cached selector.
   * @returns per selector, which identities it gained and lost
   */
  updateIdentities(added: Identity[], removed: number[]): SelectionChange[] {
    const changes = new Map<CachedSelector, SelectionChange>();
    const change = (cs: CachedSelector) => {
      let c = changes.get(cs);
      if (!c) changes.set(cs, (c = { selector: cs, added: [], removed: [] }));
      return c;
    };
    for (const id of removed) {
      const identity = this.#identities.get(id);
      if (!identity) continue;
      this.#identities.delete(id);
      const ns = identity.labels.get('k8s', NAMESPACE_LABEL);
      if (ns !== undefined) this.#byNamespace.get(ns)?.delete(id);
      for (const cs of this.#selectors.values()) if (cs.selections.delete(id)) change(cs).removed.push(id);
    }
    for (const identity of added) {
      this.#identities.set(identity.id, identity);
      const ns = identity.labels.get('k8s', NAMESPACE_LABEL);
      if (ns !== undefined) {
        let set = this.#byNamespace.get(ns);
        if (!set) this.#byNamespace.set(ns, (set = new Set()));
        set.add(identity.id);
      }
      for (const cs of this.#selectors.values()) {
        if (cs.wildcard) continue;
        if (cs.namespaces && (ns === undefined || !cs.namespaces.includes(ns))) continue;
        if (cs.selects(identity)) {
          cs.selections.add(identity.id);
          change(cs).added.push(identity.id);
        }
      }
    }
    return [...changes.values()];
  }

  /** Drops selectors no filter uses any more. */
  prune(inUse: Set<string>): void {
    for (const key of this.#selectors.keys()) if (key !== '{}' && !inUse.has(key)) this.#selectors.delete(key);
  }
}
