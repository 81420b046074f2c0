// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/l4-filter
 *
 * L4Filter: everything one direction of a SelectorPolicy says about one (protocol, port range
 * or port name): per peer selector, allow or deny, and the L7 rules (Cilium pkg/policy/l4.go).
 *
 * Merging two rules with the same selector on the same port (reference §2.6, numbered as in
 * `mergePerSelectorPolicy` below):
 * 1. equal → only the origins are merged;
 * 2. deny and allow → deny wins wholesale;
 * 3. both allow with L7 → parsers must agree (http, dns and kafka do not mix) or the policy
 *    cannot be computed (PolicyMergeError); rule lists are unioned;
 * 4. one side with L7 rules and one without → a wildcard L7 rule is added: L7 allow-all, still
 *    redirected (§2.7).
 */
import type { DnsRule, HttpRule, KafkaRule } from '../api/types.ts';
import type { CachedSelector } from './selector-cache.ts';
import type { L7Parser } from './types.ts';
import { protoName } from './types.ts';

export class PolicyMergeError extends Error {
  readonly code = 'MBR_ERR_POLICY_MERGE';
}

/** An L7 rule together with the policy it came from (for allowedBy). */
export interface OriginL7<T> {
  rule: T;
  origin: string;
}

export interface PerSelectorPolicy {
  deny: boolean;
  /** L7 parser when the traffic is redirected; null = no L7 (plain allow or deny). */
  parser: L7Parser | null;
  http: OriginL7<HttpRule>[];
  dns: OriginL7<DnsRule>[];
  kafka: OriginL7<KafkaRule>[];
  /** Origins of rules that allow every L7 request on this port (rule 4, enableDefaultDeny=false, host). */
  wildcardL7: string[];
  derivedFrom: Set<string>;
}

/** Port spec of a filter: a concrete range, or a named port to resolve per endpoint/peer. */
export interface FilterPort {
  proto: number;
  port: number;
  endPort: number;
  name?: string;
}

export function filterKey(p: FilterPort): string {
  if (p.name) return `${p.name}/${protoName(p.proto)}`;
  return p.endPort > p.port ? `${p.port}-${p.endPort}/${protoName(p.proto)}` : `${p.port}/${protoName(p.proto)}`;
}

export class L4Filter {
  readonly port: FilterPort;
  readonly key: string;
  /** selector key → (selector, policy) */
  readonly perSelector = new Map<string, { selector: CachedSelector; policy: PerSelectorPolicy }>();

  constructor(port: FilterPort) {
    this.port = port;
    this.key = filterKey(port);
  }

  /** Merges a rule's contribution for one selector (rules 1–4 above). */
  add(selector: CachedSelector, incoming: PerSelectorPolicy): void {
    const existing = this.perSelector.get(selector.key);
    if (!existing) {
      this.perSelector.set(selector.key, { selector, policy: incoming });
      return;
    }
    existing.policy = mergePerSelectorPolicy(existing.policy, incoming, this.key);
  }

  /** True when any selector's traffic is redirected on this filter. */
  hasRedirect(): boolean {
    for (const { policy } of this.perSelector.values()) if (!policy.deny && policy.parser) return true;
    return false;
  }
}

function clone(p: PerSelectorPolicy): PerSelectorPolicy {
  return { ...p, http: [...p.http], dns: [...p.dns], kafka: [...p.kafka], wildcardL7: [...p.wildcardL7], derivedFrom: new Set(p.derivedFrom) };
}

/** Merge two policies of the same selector on the same port (reference §2.6). */
export function mergePerSelectorPolicy(a: PerSelectorPolicy, b: PerSelectorPolicy, where: string): PerSelectorPolicy {
  // 2. deny wins wholesale
  if (a.deny !== b.deny) return clone(a.deny ? a : b);
  const out = clone(a);
  for (const d of b.derivedFrom) out.derivedFrom.add(d);
  if (a.deny) return out; // 1. both deny: origins merged
  // 3. parser compatibility
  if (a.parser && b.parser && a.parser !== b.parser) {
    throw new PolicyMergeError(`cannot merge conflicting L7 parsers (${a.parser} and ${b.parser}) on port ${where}`);
  }
  if (!a.parser && !b.parser) return out;
  out.parser = a.parser ?? b.parser;
  // 4. a side without L7 rules allows every request (wildcard L7 rule)
  if (!a.parser) out.wildcardL7.push(...[...a.derivedFrom]);
  if (!b.parser) out.wildcardL7.push(...[...b.derivedFrom]);
  if (b.parser) {
    out.http.push(...b.http);
    out.dns.push(...b.dns);
    out.kafka.push(...b.kafka);
    out.wildcardL7.push(...b.wildcardL7);
  }
  out.wildcardL7 = [...new Set(out.wildcardL7)].sort();
  return out;
}
