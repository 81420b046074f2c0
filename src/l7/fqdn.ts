// SPDX-License-Identifier: Apache-2.0
/**
 * @module l7/fqdn
 *
 * Which identity an IP learned from a DNS answer gets: the contract between the policy engine
 * (which allocates FQDN identities and their policy entries) and the DNS proxy (which writes
 * ipcache entries for learned IPs itself, so FQDN policy keeps working while the agent is down;
 * DESIGN §4 "Who writes FQDN state"). Both derive the identity here, so they cannot disagree.
 * Pure.
 *
 * An FQDN identity is shared by every IP with the same **selector set** and **base** (reference
 * §2.10, §5.4; Cilium ≥ 1.16 "selectors as labels", where prefix labels propagate downwards):
 * - selector set: the keys (`fqdnSelectorKey`) of every toFQDNs selector matching any name the IP
 *   was learned for (node-global cache, §5.4); an IP no selector matches gets no identity;
 * - base: the longest CIDR prefix referenced by policy that contains the IP (it keeps the labels
 *   it would have had without DNS, so toCIDR/toCIDRSet rules and their `except` still select
 *   it), or none (world).
 * Labels: `fqdn:<key>` per selector, `cidr:<base>` when there is a base, and `reserved:world`.
 *
 * The engine pre-allocates the identity of each selector alone (base: none) with its policy
 * entries, so the common case needs no agent round trip; other combinations are allocated when
 * the agent learns the answer (the proxy holds the answer for them, bounded).
 */
import { formatPrefix, parseIp, parsePrefix, prefixContainsIp, type Prefix } from '../labels/cidr.ts';
import type { Label } from '../labels/labels.ts';
import { fqdnSelectorKey, fqdnSelectorMatcher, normalizeDnsName, type DnsRuleSpec } from './dns.ts';

/** What the agent sends the proxy about FQDN identities (with the L7 policy snapshot). */
export interface FqdnIdentityTable {
  /** Every toFQDNs selector of the policy. */
  selectors: DnsRuleSpec[];
  /** CIDR prefixes referenced by policy (the possible bases), canonical text. */
  cidrs: string[];
  /** The FQDN identities allocated now. */
  identities: Array<{ selectors: string[]; base: string | null; id: number }>;
}

/** Table key of a (selector set, base) pair. */
export function fqdnSetKey(selectorKeys: readonly string[], base: string | null): string {
  return `${[...new Set(selectorKeys)].sort().join('\n')}|${base ?? ''}`;
}

/** Identity labels of a (selector set, base) pair. */
export function fqdnIdentityLabels(selectorKeys: readonly string[], base: string | null): Label[] {
  const labels: Label[] = [...new Set(selectorKeys)].sort().map((k) => ({ source: 'fqdn', key: k, value: '' }));
  if (base) labels.push({ source: 'cidr', key: base, value: '' });
  labels.push({ source: 'reserved', key: 'world', value: '' });
  return labels;
}

/** The longest prefix of `bases` containing `ip` (canonical text), or null. */
export function fqdnBaseOf(ip: string, bases: ReadonlyArray<{ text: string; prefix: Prefix }>): string | null {
  if (bases.length === 0) return null; // no toCIDR rules: no address to parse (every new IP comes here)
  const addr = parseIp(ip);
  if (!addr) return null;
  let best: { text: string; prefix: Prefix } | null = null;
  for (const b of bases) {
    if (b.prefix.family !== addr.family || !prefixContainsIp(b.prefix, addr)) continue;
    if (!best || b.prefix.len > best.prefix.len) best = b;
  }
  return best?.text ?? null;
}

/** Parsed bases for {@link fqdnBaseOf}. */
export function parseBases(cidrs: readonly string[]): Array<{ text: string; prefix: Prefix }> {
  const out: Array<{ text: string; prefix: Prefix }> = [];
  for (const c of cidrs) {
    const p = parsePrefix(c);
    if (p) out.push({ text: formatPrefix(p), prefix: p });
  }
  return out;
}

/**
 * The proxy's view of a table: which identity an IP gets for the names it was learned for.
 */
export class FqdnResolver {
  readonly table: FqdnIdentityTable;
  readonly #selectors: Array<{ matches: (name: string) => boolean; key: string }>;
  readonly #bases: Array<{ text: string; prefix: Prefix }>;
  readonly #ids = new Map<string, number>();
  /** name → matching selector keys (names repeat: every answer for them) */
  readonly #byName = new Map<string, string[]>();

  constructor(table: FqdnIdentityTable) {
    this.table = table;
    this.#selectors = table.selectors.map((spec) => ({ matches: fqdnSelectorMatcher(spec), key: fqdnSelectorKey(spec) }));
    this.#bases = parseBases(table.cidrs);
    for (const i of table.identities) this.#ids.set(fqdnSetKey(i.selectors, i.base), i.id);
  }

  /** Keys of the selectors matching a name (any case, trailing dot optional). */
  selectorsOf(name: string): string[] {
    const n = normalizeDnsName(name);
    let keys = this.#byName.get(n);
    if (!keys) {
      keys = this.#selectors.filter((s) => s.matches(n)).map((s) => s.key);
      if (this.#byName.size > 65536) this.#byName.clear();
      this.#byName.set(n, keys);
    }
    return keys;
  }

  /**
   * The identity of an IP learned for `names` (every name the node-global cache holds it for).
   * @returns `none` when no selector matches (no ipcache entry: the IP stays what it was),
   *   `{ id }` when the identity exists, `{ missing }` when the agent has to allocate it first
   */
  identityOf(ip: string, names: Iterable<string>): { none: true } | { id: number; key: string } | { missing: string } {
    const keys = new Set<string>();
    for (const n of names) for (const k of this.selectorsOf(n)) keys.add(k);
    if (keys.size === 0) return { none: true };
    const key = fqdnSetKey([...keys], fqdnBaseOf(ip, this.#bases));
    const id = this.#ids.get(key);
    return id === undefined ? { missing: key } : { id, key };
  }
}
