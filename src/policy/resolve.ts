// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/resolve
 *
 * Rules → SelectorPolicy for one subject identity (Cilium pkg/policy/resolve.go,
 * repository.go). The SelectorPolicy is per identity and shared by every endpoint with that
 * identity; per-endpoint details (named ingress ports) are applied when its MapState is built.
 *
 * Per direction (reference §2.3):
 * 1. no selecting rule has elements for the direction → not enforced (allow all);
 * 2. ≥1 selecting rule has enableDefaultDeny (unset = true) → default deny;
 * 3. otherwise a lowest-precedence wildcard allow-all is added, and L7 rules of those rules
 *    only give visibility (a wildcard L7 rule is added);
 * 4. ingress default deny also allows everything from the host (allow-localhost, DESIGN §2),
 *    and the host is wildcarded at L7 on ingress (Cilium `createL4IngressFilter`).
 */
import type { DirectionalRule, L4Protocol, PeerSelector, Rule } from '../api/types.ts';
import type { Identity } from '../identity/allocator.ts';
import { ID_HOST } from '../identity/reserved.ts';
import { withRequirements } from '../labels/selector.ts';
import { L4Filter, type FilterPort, type PerSelectorPolicy } from './l4-filter.ts';
import type { CachedSelector, SelectorCache } from './selector-cache.ts';
import {
  DIRECTIONS,
  ORIGIN_ALLOW_LOCALHOST,
  ORIGIN_NO_DEFAULT_DENY,
  PROTO_ANY,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
  type Direction,
  type L7Parser,
} from './types.ts';

export interface DirectionPolicy {
  enforced: boolean;
  defaultDeny: boolean;
  /** filter key → filter */
  filters: Map<string, L4Filter>;
  /** Policies with rules selecting the subject in this direction. */
  selectedBy: string[];
  /** Filters using a named port (resolved per endpoint or per peer). */
  hasNamedPorts: boolean;
}

export interface SelectorPolicy {
  identity: number;
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
  /** Rule-engine revision it was computed at. */
  revision: number;
}

function protocolsOf(p: L4Protocol): number[] {
  switch (p) {
    case 'ANY':
      return [PROTO_TCP, PROTO_UDP, PROTO_SCTP];
    case 'TCP':
      return [PROTO_TCP];
    case 'UDP':
      return [PROTO_UDP];
    case 'SCTP':
      return [PROTO_SCTP];
    case 'ICMP':
      return [PROTO_ICMP];
    case 'ICMPV6':
      return [PROTO_ICMPV6];
  }
}

function parserOf(dr: DirectionalRule, rules: DirectionalRule['toPorts'][number]['rules'], proto: number): L7Parser | null {
  if (dr.deny || !rules) return null;
  if (rules.dns && rules.dns.length > 0) return 'dns';
  if (proto !== PROTO_TCP) return null;
  if (rules.http && rules.http.length > 0) return 'http';
  if (rules.kafka && rules.kafka.length > 0) return 'kafka';
  return null;
}

function emptyPolicy(deny: boolean, origin: string): PerSelectorPolicy {
  return { deny, parser: null, http: [], dns: [], kafka: [], wildcardL7: [], derivedFrom: new Set([origin]) };
}

/**
 * Computes the SelectorPolicy of one identity.
 * @param subject the identity whose policy is computed
 * @param rules the rules selecting it (Repository.rulesSelecting)
 * @param cache selector cache; selectors are added to it before entries are derived, so later
 *   identity changes reach this policy's filters
 * @param revision repository revision
 * @throws PolicyMergeError when two rules cannot be merged (the caller keeps the old policy)
 */
export function resolvePolicy(subject: Identity, rules: Rule[], cache: SelectorCache, revision: number): SelectorPolicy {
  const out = { identity: subject.id, revision } as SelectorPolicy;
  for (const dir of DIRECTIONS) out[dir] = resolveDirection(dir, rules, cache);
  return out;
}

function resolveDirection(dir: Direction, allRules: Rule[], cache: SelectorCache): DirectionPolicy {
  const rules = allRules.filter((r) => (dir === 'ingress' ? r.hasIngress : r.hasEgress));
  const policy: DirectionPolicy = {
    enforced: rules.length > 0,
    defaultDeny: rules.some((r) => r.defaultDeny[dir]),
    filters: new Map(),
    selectedBy: [...new Set(rules.map((r) => r.origin.ref))].sort(),
    hasNamedPorts: false,
  };
  if (!policy.enforced) return policy; // 1.
  // fromRequires/toRequires of every selecting rule narrow every endpoint peer (§2.12).
  const requires = rules.flatMap((r) => r[dir].flatMap((dr) => dr.requires));
  const filterFor = (port: FilterPort): L4Filter => {
    const f = new L4Filter(port);
    const existing = policy.filters.get(f.key);
    if (existing) return existing;
    policy.filters.set(f.key, f);
    if (port.name) policy.hasNamedPorts = true;
    return f;
  };
  const host = cache.identity(ID_HOST);
  let hostSelector: CachedSelector | undefined;

  for (const rule of rules) {
    const origin = rule.origin.ref;
    for (const dr of rule[dir]) {
      let peers: Array<PeerSelector | null>;
      if (dr.peers === null) {
        if (dr.toPorts.length === 0) continue; // no L3 and no L4: allows nothing (§2.4)
        peers = [null];
      } else {
        peers = dr.peers.map((p) =>
          p.type === 'labels' && p.field === 'endpoints' && requires.length > 0 ? { ...p, selector: withRequirements(p.selector, requires) } : p,
        );
      }
      if (peers.length === 0) continue; // explicit empty list selects nothing
      const selectors = peers.map((p) => cache.add(p));
      if (dr.toPorts.length === 0) {
        const f = filterFor({ proto: PROTO_ANY, port: 0, endPort: 0 });
        for (const sel of selectors) f.add(sel, emptyPolicy(dr.deny, origin));
        continue;
      }
      for (const pr of dr.toPorts) {
        for (const pp of pr.ports) {
          for (const proto of protocolsOf(pp.protocol)) {
            const f = filterFor({ proto, port: pp.port, endPort: pp.endPort ?? pp.port, name: pp.name });
            const parser = parserOf(dr, pr.rules, proto);
            for (const sel of selectors) {
              const psp = emptyPolicy(dr.deny, origin);
              if (parser) {
                psp.parser = parser;
                if (parser === 'http') psp.http = (pr.rules?.http ?? []).map((r) => ({ rule: r, origin }));
                if (parser === 'dns') psp.dns = (pr.rules?.dns ?? []).map((r) => ({ rule: r, origin }));
                if (parser === 'kafka') psp.kafka = (pr.rules?.kafka ?? []).map((r) => ({ rule: r, origin }));
                if (!rule.defaultDeny[dir]) psp.wildcardL7.push(ORIGIN_NO_DEFAULT_DENY); // 3.
              }
              f.add(sel, psp);
              // 4. the host is wildcarded at L7 on ingress
              if (parser && dir === 'ingress' && host && sel.selects(host)) {
                hostSelector ??= cache.addLabels({ requirements: [{ key: 'reserved:host', operator: 'Exists', values: [] }] });
                f.add(hostSelector, { ...emptyPolicy(false, ORIGIN_ALLOW_LOCALHOST), parser, wildcardL7: [ORIGIN_ALLOW_LOCALHOST] });
              }
            }
          }
        }
      }
    }
  }
  if (!policy.defaultDeny) {
    // 3. lowest-precedence allow-all
    filterFor({ proto: PROTO_ANY, port: 0, endPort: 0 }).add(cache.wildcard, emptyPolicy(false, ORIGIN_NO_DEFAULT_DENY));
  } else if (dir === 'ingress') {
    // 4. allow-localhost
    hostSelector ??= cache.addLabels({ requirements: [{ key: 'reserved:host', operator: 'Exists', values: [] }] });
    filterFor({ proto: PROTO_ANY, port: 0, endPort: 0 }).add(hostSelector, emptyPolicy(false, ORIGIN_ALLOW_LOCALHOST));
  }
  return policy;
}
