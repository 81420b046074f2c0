// SPDX-License-Identifier: Apache-2.0
/**
 * Helpers for golden policy tests: rule-order permutations (Cilium distillery_test.go `Perm`),
 * readable MapState rendering, and shell-like argument splitting.
 */
import type { DirectionalRule, Rule } from '../../src/api/types.ts';
import type { PolicyEngine } from '../../src/policy/engine.ts';
import { reservedName } from '../../src/identity/reserved.ts';
import { isSyntheticOrigin, protoName, type KeyedEntryLike } from './golden-types.ts';

/** Splits `--http 'GET /x' --from a` like a shell would (single and double quotes). */
export function splitArgs(s: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** A deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  const out: T[][] = [];
  xs.forEach((x, i) => {
    for (const rest of permutations([...xs.slice(0, i), ...xs.slice(i + 1)])) out.push([x, ...rest]);
  });
  return out;
}

/**
 * Orders of the rule elements of a policy set: every element (an ingress/egress/deny entry of a
 * rule, or a whole rule) is a unit. All orders up to 4 units, else the identity plus 24 seeded
 * random orders.
 * @returns rule lists, each a reordering of `rules` (rules and their elements shuffled)
 */
export function ruleOrders(rules: Rule[], seed = 1): Rule[][] {
  type Unit = { rule: number; dir: 'ingress' | 'egress'; el: DirectionalRule };
  const units: Unit[] = [];
  rules.forEach((r, i) => {
    for (const el of r.ingress) units.push({ rule: i, dir: 'ingress', el });
    for (const el of r.egress) units.push({ rule: i, dir: 'egress', el });
  });
  const build = (order: Unit[], ruleOrder: number[]): Rule[] =>
    ruleOrder.map((i) => ({
      ...rules[i]!,
      ingress: order.filter((u) => u.rule === i && u.dir === 'ingress').map((u) => u.el),
      egress: order.filter((u) => u.rule === i && u.dir === 'egress').map((u) => u.el),
    }));
  const identity = rules.map((_, i) => i);
  if (units.length <= 4) {
    return permutations(units).flatMap((order) => (rules.length <= 4 ? permutations(identity) : [identity]).map((ro) => build(order, ro)));
  }
  const rand = rng(seed);
  const shuffle = <T>(xs: T[]): T[] => {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  };
  const out = [build(units, identity)];
  for (let k = 0; k < 24; k++) out.push(build(shuffle(units), shuffle(identity)));
  return out;
}

/** Readable name of an identity: endpoint refs, reserved name, or its cidr/fqdn labels. */
export function identityName(engine: PolicyEngine, id: number): string {
  if (id === 0) return '*';
  const r = reservedName(id);
  if (r) return r;
  const eps = engine.endpoints().filter((e) => e.identity.id === id).map((e) => e.ref).sort();
  if (eps.length) return eps.join('+');
  const identity = engine.allocator.get(id);
  return identity ? identity.labels.toStrings().filter((l) => !l.startsWith('reserved:')).join(',') : `#${id}`;
}

/** Renders a MapState as sorted lines: `ingress prod/frontend TCP/80 allow by CNP/...`. */
export function renderMapState(engine: PolicyEngine, entries: KeyedEntryLike[]): string[] {
  return entries
    .map(({ key, entry }) => {
      const port = key.proto === 0 ? '' : key.portPrefixLen === 0 ? '/*' : key.portPrefixLen === 16 ? `/${key.port}` : `/${key.port}-${key.port + 2 ** (16 - key.portPrefixLen) - 1}`;
      const verdict = entry.deny ? 'deny' : entry.redirect ? `redirect:${entry.redirect}` : 'allow';
      const by = entry.derivedFrom.map((d) => (isSyntheticOrigin(d) ? d : d.replace('CiliumNetworkPolicy/', 'CNP/').replace('CiliumClusterwideNetworkPolicy/', 'CCNP/').replace('NetworkPolicy/', 'NP/')));
      return `${key.direction} ${identityName(engine, key.identity)} ${protoName(key.proto)}${port} ${verdict} by ${by.join(',')}`;
    })
    .sort();
}
