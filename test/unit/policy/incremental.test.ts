// SPDX-License-Identifier: Apache-2.0
/**
 * Incremental policy computation, property-tested (engine promise: "changes to one policy or one
 * endpoint come out as MapChanges, not a recomputation of everything").
 *
 * Per seed: a random world (namespaces with labels, endpoints with random label mixes and named
 * ports, CNP/CCNP/NetworkPolicy objects generated as YAML and loaded through the real validator,
 * learned DNS names) is loaded in one bulk() and every endpoint is computed. Then random
 * mutations run one per step (replace/add/delete a policy object, upsert an endpoint with other
 * labels or named ports, add/remove an endpoint, change namespace labels, learn/forget a name,
 * or a bulk() of several). The MapChanges of every step are applied to a mirror of each
 * endpoint's map, in both orders (deletes then adds; adds then deletes, which is what
 * EndpointManager.apply does), and after every step each mirror, the engine's own MapState and
 * its ipcache must equal a FRESH engine built from the same inputs. Maps are compared rendered
 * with identity names (endpoint refs, reserved names, cidr/fqdn labels), since a fresh engine
 * numbers identities in another order.
 *
 * Every MapChanges must also be in normal form (no key both added and deleted), since the
 * agent writes adds before deletes. A failing seed is shrunk (greedy removal of operations) and
 * printed as a replayable op list. Environment: `INCREMENTAL_SEEDS=n` / `INCREMENTAL_STEPS=n`
 * change the budget, `INCREMENTAL_SEED=n` runs one seed, `INCREMENTAL_NOSHRINK=1` lists every
 * failing seed without shrinking.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import { parsePolicyText } from '../../../src/api/load.ts';
import type { Rule } from '../../../src/api/types.ts';
import { PolicyEngine, type EndpointSpec, type EngineChanges, type NamedPort } from '../../../src/policy/engine.ts';
import type { KeyedEntry } from '../../../src/policy/map-state.ts';
import { keyString } from '../../../src/policy/types.ts';
import { identityName, renderMapState, rng } from '../../helpers/golden.ts';

const GATEWAY = '169.254.1.1';
const SEEDS = Number(process.env.INCREMENTAL_SEEDS ?? 30);
const STEPS = Number(process.env.INCREMENTAL_STEPS ?? 40);

// ---- operations (JSON-serialisable, so a failure can be replayed and shrunk) ---------------

type Op =
  | { t: 'ns'; list: Array<{ name: string; labels: Record<string, string> }> }
  | { t: 'upsert'; spec: EndpointSpec }
  | { t: 'remove'; ref: string }
  | { t: 'policy'; ref: string; yaml: string | null }
  | { t: 'learn'; name: string; ips: string[] }
  | { t: 'forget'; name: string; ips?: string[] }
  | { t: 'bulk'; ops: Op[] };

/** The inputs, as a fresh engine would be given them. */
interface World {
  namespaces: Array<{ name: string; labels: Record<string, string> }>;
  endpoints: Map<string, EndpointSpec>;
  policies: Map<string, Rule[]>;
  fqdn: Map<string, Set<string>>;
}

function dnsKey(name: string): string {
  return name.toLowerCase().replace(/\.?$/, '.');
}

const ruleCache = new Map<string, Rule[]>();

/** YAML → rules of one object (cached: ops are replayed many times while shrinking). */
function rulesOf(yaml: string): Rule[] {
  let r = ruleCache.get(yaml);
  if (!r) {
    const loaded = parsePolicyText(yaml, 'gen.yaml');
    const errs = loaded.problems.filter((p) => p.severity === 'error');
    if (errs.length) throw new Error(`generated policy rejected: ${errs.map((e) => `${e.field}: ${e.message}`).join('; ')}\n${yaml}`);
    r = loaded.rules;
    ruleCache.set(yaml, r);
  }
  return r;
}

/** Applies an op to the engine and the world; removed endpoint refs are reported (their mirror is dropped). */
function perform(engine: PolicyEngine, world: World, op: Op, removed: Set<string>): EngineChanges {
  switch (op.t) {
    case 'ns':
      world.namespaces = op.list;
      return engine.setNamespaces(op.list);
    case 'upsert':
      world.endpoints.set(`${op.spec.namespace}/${op.spec.name}`, op.spec);
      return engine.upsertEndpoint(op.spec);
    case 'remove':
      world.endpoints.delete(op.ref);
      removed.add(op.ref);
      return engine.removeEndpoint(op.ref);
    case 'policy':
      if (op.yaml === null) world.policies.delete(op.ref);
      else world.policies.set(op.ref, rulesOf(op.yaml));
      return engine.replacePolicyObject(op.ref, op.yaml === null ? [] : rulesOf(op.yaml));
    case 'learn': {
      const k = dnsKey(op.name);
      const s = world.fqdn.get(k) ?? new Set<string>();
      for (const ip of op.ips) s.add(ip);
      world.fqdn.set(k, s);
      return engine.learnFqdn(op.name, op.ips);
    }
    case 'forget': {
      const k = dnsKey(op.name);
      const s = world.fqdn.get(k);
      if (s) {
        if (op.ips) for (const ip of op.ips) s.delete(ip);
        if (!op.ips || s.size === 0) world.fqdn.delete(k);
      }
      return engine.forgetFqdn(op.name, op.ips);
    }
    case 'bulk':
      return engine.bulk(() => {
        for (const o of op.ops) perform(engine, world, o, removed);
      });
  }
}

function freshEngine(world: World): PolicyEngine {
  const e = new PolicyEngine({ hostIps: [GATEWAY] });
  e.bulk(() => {
    e.setNamespaces(world.namespaces);
    for (const spec of world.endpoints.values()) e.upsertEndpoint(spec);
    for (const [ref, rules] of world.policies) e.replacePolicyObject(ref, rules);
    for (const [name, ips] of world.fqdn) e.learnFqdn(name, [...ips]);
  });
  const errors = e.computeAll();
  if (errors.size) throw new Error(`fresh engine cannot compute: ${[...errors].map(([r, x]) => `${r}: ${x.message}`).join('; ')}`);
  return e;
}

function renderIpcache(engine: PolicyEngine): string[] {
  return [...engine.ipcacheEntries()].map(([p, id]) => `${p} ${identityName(engine, id)}`).sort();
}

function diffLines(want: string[], got: string[]): string {
  const w = new Set(want);
  const g = new Set(got);
  return [...want.filter((l) => !g.has(l)).map((l) => `  missing: ${l}`), ...got.filter((l) => !w.has(l)).map((l) => `  extra:   ${l}`)].join('\n');
}

interface Failure {
  step: number;
  kind: string;
  message: string;
}

/**
 * Runs ops on one engine, mirroring every endpoint's map from the returned MapChanges, and
 * checks after every op against a fresh engine.
 * @returns the first failure, or null
 */
function run(ops: Op[], stats?: { sameKeyAddDelete: number; changes: number }): Failure | null {
  const engine = new PolicyEngine({ hostIps: [GATEWAY] });
  const world: World = { namespaces: [], endpoints: new Map(), policies: new Map(), fqdn: new Map() };
  /** ref → [deletes-then-adds mirror, adds-then-deletes mirror] */
  const mirrors = new Map<string, [Map<string, KeyedEntry>, Map<string, KeyedEntry>]>();
  for (let step = 0; step < ops.length; step++) {
    const op = ops[step]!;
    const removed = new Set<string>();
    let changes: EngineChanges;
    try {
      changes = perform(engine, world, op, removed);
    } catch (e) {
      return { step, kind: 'throw', message: `engine threw: ${(e as Error).stack}` };
    }
    for (const ref of removed) mirrors.delete(ref);
    if (changes.errors.size) {
      return { step, kind: 'errors', message: `changes.errors: ${[...changes.errors].map(([r, x]) => `${r}: ${x.message}`).join('; ')}` };
    }
    for (const [ref, mc] of changes.byEndpoint) {
      const m = mirrors.get(ref);
      if (!m) continue; // not computed (yet): nothing to diff against
      if (stats) stats.changes++;
      const added = new Set(mc.adds.map((a) => keyString(a.key)));
      const both = mc.deletes.map(keyString).filter((k) => added.has(k));
      if (both.length) {
        // EndpointManager.apply writes adds before deletes: such a key would end up deleted
        if (stats) stats.sameKeyAddDelete++;
        return { step, kind: 'add+delete', message: `${ref}: one MapChanges both adds and deletes ${both.join(', ')}` };
      }
      const [da, ad] = m;
      for (const k of mc.deletes) da.delete(keyString(k));
      for (const a of mc.adds) da.set(keyString(a.key), a);
      for (const a of mc.adds) ad.set(keyString(a.key), a);
      for (const k of mc.deletes) ad.delete(keyString(k));
    }
    // endpoints not computed yet (new ones) are computed now, as the agent's reconcile would
    for (const ref of world.endpoints.keys()) {
      if (mirrors.has(ref)) continue;
      let entries: KeyedEntry[];
      try {
        entries = engine.endpointPolicy(ref).mapState.unsortedEntries();
      } catch (e) {
        return { step, kind: 'compute', message: `endpointPolicy(${ref}) threw: ${(e as Error).message}` };
      }
      mirrors.set(ref, [new Map(entries.map((e) => [keyString(e.key), e])), new Map(entries.map((e) => [keyString(e.key), e]))]);
    }
    let fresh: PolicyEngine;
    try {
      fresh = freshEngine(world);
    } catch (e) {
      return { step, kind: 'fresh', message: (e as Error).message };
    }
    const problems: Array<{ kind: string; text: string }> = [];
    for (const ref of world.endpoints.keys()) {
      const want = renderMapState(fresh, fresh.endpointPolicy(ref).mapState.unsortedEntries());
      let own: string[];
      try {
        own = renderMapState(engine, engine.endpointPolicy(ref).mapState.unsortedEntries());
      } catch (e) {
        problems.push({ kind: 'state', text: `${ref}: endpointPolicy threw ${(e as Error).message}` });
        continue;
      }
      const [da, ad] = mirrors.get(ref)!;
      const gotDa = renderMapState(engine, [...da.values()]);
      const gotAd = renderMapState(engine, [...ad.values()]);
      const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
      if (!same(want, own)) problems.push({ kind: 'state', text: `${ref}: engine MapState differs from a fresh engine:\n${diffLines(want, own)}` });
      if (!same(want, gotDa)) problems.push({ kind: 'mirror-deletes-first', text: `${ref}: mirror (deletes, then adds) differs from a fresh engine:\n${diffLines(want, gotDa)}` });
      if (!same(want, gotAd)) problems.push({ kind: 'mirror-adds-first', text: `${ref}: mirror (adds, then deletes) differs from a fresh engine:\n${diffLines(want, gotAd)}` });
    }
    const ipWant = renderIpcache(fresh);
    const ipGot = renderIpcache(engine);
    if (ipWant.join('\n') !== ipGot.join('\n')) problems.push({ kind: 'ipcache', text: `ipcache differs:\n${diffLines(ipWant, ipGot)}` });
    if (problems.length) {
      const kinds = [...new Set(problems.map((p) => p.kind))].sort().join('+');
      return { step, kind: kinds, message: problems.map((p) => p.text).join('\n') };
    }
  }
  return null;
}

// ---- shrinking -------------------------------------------------------------------------------

/** Greedy shrink: drop top-level ops, inner bulk ops, and unwrap bulks while the same kind of failure remains. */
function shrink(ops: Op[], kind: string): Op[] {
  const fails = (c: Op[]) => run(c)?.kind === kind;
  let cur = ops;
  let progress = true;
  while (progress) {
    progress = false;
    // cut everything after the failing step
    const f = run(cur);
    if (f && f.step + 1 < cur.length) cur = cur.slice(0, f.step + 1);
    for (let i = cur.length - 1; i >= 0; i--) {
      const cand = [...cur.slice(0, i), ...cur.slice(i + 1)];
      if (fails(cand)) {
        cur = cand;
        progress = true;
        continue;
      }
      const op = cur[i]!;
      if (op.t !== 'bulk') continue;
      for (let j = op.ops.length - 1; j >= 0; j--) {
        const inner = [...op.ops.slice(0, j), ...op.ops.slice(j + 1)];
        const c2 = [...cur.slice(0, i), { t: 'bulk' as const, ops: inner }, ...cur.slice(i + 1)];
        if (fails(c2)) {
          cur = c2;
          op.ops = inner;
          progress = true;
        }
      }
      const unwrapped = [...cur.slice(0, i), ...op.ops, ...cur.slice(i + 1)];
      if (fails(unwrapped)) {
        cur = unwrapped;
        progress = true;
      }
    }
  }
  return cur;
}

// ---- generators --------------------------------------------------------------------------------

type Rand = () => number;
const NAMESPACES = ['alpha', 'beta', 'gamma'];
const APPS = ['web', 'api', 'db'];
const FQDN_NAMES = ['a.example.com', 'b.example.com', 'api.test.io'];
const FQDN_IPS = ['192.0.2.10', '192.0.2.11', '198.51.100.7', '10.1.0.10', '203.0.113.5'];
const CIDRS = ['10.0.0.0/8', '10.1.0.0/16', '192.0.2.0/24', '10.1.1.11/32', '203.0.113.5/32', '0.0.0.0/0'];

class Gen {
  readonly r: Rand;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  subset<T>(xs: readonly T[], min = 1): T[] {
    const out = xs.filter(() => this.chance(0.4));
    while (out.length < min) {
      const x = this.pick(xs);
      if (!out.includes(x)) out.push(x);
    }
    return out;
  }

  nsLabels(): Record<string, string> {
    const l: Record<string, string> = {};
    if (this.chance(0.8)) l.env = this.pick(['prod', 'dev']);
    if (this.chance(0.5)) l.team = this.pick(['red', 'blue']);
    return l;
  }

  namespaces(): Array<{ name: string; labels: Record<string, string> }> {
    return NAMESPACES.map((name) => ({ name, labels: this.nsLabels() }));
  }

  namedPorts(): Record<string, NamedPort> | undefined {
    if (this.chance(0.35)) return undefined;
    const np: Record<string, NamedPort> = {};
    if (this.chance(0.6)) np.http = { port: this.pick([80, 8080]), protocol: 'TCP' };
    if (this.chance(0.3)) np.dns = { port: 53, protocol: 'UDP' };
    if (this.chance(0.3)) np.metrics = { port: this.pick([9090, 9091]), protocol: 'TCP' };
    return Object.keys(np).length ? np : undefined;
  }

  endpoint(k: number, ns = this.pick(NAMESPACES)): EndpointSpec {
    const labels: Record<string, string> = {};
    if (this.chance(0.85)) labels.app = this.pick(APPS);
    if (this.chance(0.5)) labels.role = this.pick(['fe', 'be']);
    if (this.chance(0.2)) labels['pod-template-hash'] = `h${this.int(3)}`; // filtered: same identity
    const np = this.namedPorts();
    return { namespace: ns, name: `e${k}`, labels, ips: [`10.1.${NAMESPACES.indexOf(ns)}.${10 + k}`], ...(np ? { namedPorts: np } : {}) };
  }

  labelSel(): Record<string, unknown> {
    switch (this.int(7)) {
      case 0:
        return {};
      case 1:
      case 2:
        return { matchLabels: { app: this.pick(APPS) } };
      case 3:
        return { matchLabels: { role: this.pick(['fe', 'be']) } };
      case 4:
        return { matchExpressions: [{ key: 'app', operator: this.pick(['In', 'NotIn']), values: this.subset(APPS) }] };
      case 5:
        return { matchLabels: { 'io.cilium.k8s.namespace.labels.env': this.pick(['prod', 'dev']) } };
      default:
        return { matchLabels: { 'k8s:io.kubernetes.pod.namespace': this.pick(NAMESPACES), ...(this.chance(0.5) ? { app: this.pick(APPS) } : {}) } };
    }
  }

  cidrSet(): Record<string, unknown> {
    return this.pick([
      { cidr: '10.0.0.0/8', except: ['10.1.2.0/24'] },
      { cidr: '10.1.0.0/16', except: ['10.1.1.11/32'] },
      { cidr: '192.0.2.0/24', except: ['192.0.2.11/32'] },
      { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] },
      { cidr: '198.51.100.0/24' },
    ]);
  }

  /** toPorts for one element; `l7` chooses whether L7 rules may be added. */
  toPorts(dir: 'ingress' | 'egress', l7: boolean): unknown[] {
    const kind = this.int(10);
    if (kind === 0 && l7 && dir === 'egress') {
      return [{ ports: [{ port: '53', protocol: this.pick(['ANY', 'UDP']) }], rules: { dns: [this.pick([{ matchPattern: '*' }, { matchName: 'a.example.com' }, { matchPattern: '*.example.com' }])] } }];
    }
    if (kind <= 2 && l7) {
      const ports = this.subset([{ port: '80', protocol: 'TCP' }, { port: '9090', protocol: 'TCP' }, { port: 'http', protocol: 'TCP' }]);
      return [{ ports, rules: { http: [this.pick([{ method: 'GET', path: '/a' }, { method: 'POST' }, { path: '/b.*' }])] } }];
    }
    const choices = [
      { port: '80', protocol: 'TCP' },
      { port: '8000', endPort: 8100, protocol: 'TCP' },
      { port: '53', protocol: 'ANY' },
      { port: '53', protocol: 'UDP' },
      { port: 'http' },
      { port: 'metrics', protocol: 'TCP' },
      { port: 'dns', protocol: 'UDP' },
      { port: '0', protocol: 'UDP' },
      { port: '9090', protocol: 'TCP' },
      { port: '64', endPort: 127, protocol: 'ANY' },
    ];
    return [{ ports: this.subset(choices) }];
  }

  element(dir: 'ingress' | 'egress', deny: boolean): Record<string, unknown> {
    const from = dir === 'ingress' ? 'from' : 'to';
    const el: Record<string, unknown> = {};
    let peerKind = this.int(deny ? 5 : 7);
    if (dir === 'ingress' && peerKind === 5) peerKind = 0; // toFQDNs is egress only
    switch (peerKind) {
      case 0:
        el[`${from}Endpoints`] = this.chance(0.2) ? [this.labelSel(), this.labelSel()] : [this.labelSel()];
        break;
      case 1:
        el[`${from}Entities`] = this.subset(['world', 'host', 'all', 'cluster', 'remote-node']);
        break;
      case 2:
        el[`${from}CIDR`] = this.subset(CIDRS);
        break;
      case 3:
        el[`${from}CIDRSet`] = [this.cidrSet()];
        break;
      case 4:
        break; // no peer field: wildcard with ports, nothing without
      case 5:
        el.toFQDNs = this.chance(0.5) ? [{ matchName: this.pick(FQDN_NAMES) }] : [{ matchPattern: this.pick(['*.example.com', '*', 'api.*.io']) }];
        break;
      default:
        el[`${from}Endpoints`] = [this.labelSel()];
    }
    const r = this.int(10);
    if (r < 6 || (peerKind === 4 && r < 9)) el.toPorts = this.toPorts(dir, !deny);
    else if (r < 8) el.icmps = [{ fields: [{ type: this.pick([8, 0]), family: 'IPv4' }] }];
    return el;
  }

  ciliumSpec(): Record<string, unknown> {
    const spec: Record<string, unknown> = { endpointSelector: this.chance(0.25) ? {} : this.pick([{ matchLabels: { app: this.pick(APPS) } }, { matchLabels: { role: this.pick(['fe', 'be']) } }, { matchExpressions: [{ key: 'app', operator: 'Exists' }] }]) };
    let any = false;
    for (const [field, dir, deny] of [
      ['ingress', 'ingress', false],
      ['egress', 'egress', false],
      ['ingressDeny', 'ingress', true],
      ['egressDeny', 'egress', true],
    ] as const) {
      if (!this.chance(deny ? 0.2 : 0.55)) continue;
      const n = 1 + this.int(2);
      spec[field] = Array.from({ length: n }, () => (this.chance(0.05) ? {} : this.element(dir, deny)));
      any = true;
    }
    if (!any) spec.ingress = [this.element('ingress', false)];
    if (this.chance(0.15)) spec.enableDefaultDeny = { [this.pick(['ingress', 'egress'])]: false };
    return spec;
  }

  netpolPeer(): Record<string, unknown> {
    switch (this.int(4)) {
      case 0:
        return { podSelector: { matchLabels: { app: this.pick(APPS) } } };
      case 1:
        return { namespaceSelector: this.chance(0.3) ? {} : { matchLabels: { env: this.pick(['prod', 'dev']) } } };
      case 2:
        return { namespaceSelector: { matchLabels: { team: this.pick(['red', 'blue']) } }, podSelector: { matchLabels: { app: this.pick(APPS) } } };
      default:
        return { ipBlock: this.pick([{ cidr: '10.0.0.0/8', except: ['10.1.2.0/24'] }, { cidr: '192.0.2.0/24' }]) };
    }
  }

  netpolRules(dir: 'ingress' | 'egress'): unknown[] {
    const key = dir === 'ingress' ? 'from' : 'to';
    return Array.from({ length: this.int(3) }, () => {
      const r: Record<string, unknown> = {};
      if (this.chance(0.7)) r[key] = [this.netpolPeer()];
      if (this.chance(0.6)) r.ports = this.subset([{ port: 80, protocol: 'TCP' }, { port: 'http' }, { port: 8000, endPort: 8100, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }]);
      return r;
    });
  }

  /** One policy object: kind, name and YAML. */
  policy(name: string): { yaml: string; ref: string } {
    const k = this.int(10);
    let obj: Record<string, unknown>;
    if (k < 6) {
      const ns = this.pick(NAMESPACES);
      obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: ns }, spec: this.ciliumSpec() };
    } else if (k < 8) {
      obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name }, spec: this.ciliumSpec() };
    } else {
      const spec: Record<string, unknown> = { podSelector: this.chance(0.3) ? {} : { matchLabels: { app: this.pick(APPS) } } };
      const types = this.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress'], null]);
      if (types) spec.policyTypes = types;
      if (this.chance(0.8)) spec.ingress = this.netpolRules('ingress');
      if (types?.includes('Egress') && this.chance(0.8)) spec.egress = this.netpolRules('egress');
      obj = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: this.pick(NAMESPACES) }, spec };
    }
    const yaml = stringify(obj);
    const rules = rulesOf(yaml);
    return { yaml, ref: rules[0]!.origin.ref };
  }
}

/** Generates the op list of one seed: an initial bulk load, then STEPS mutations. */
function generate(seed: number, steps: number): Op[] {
  const g = new Gen(seed);
  const eps = new Map<string, EndpointSpec>();
  const pols = new Map<string, string>(); // ref → yaml
  const learned = new Map<string, Set<string>>();
  let namespaces = g.namespaces();
  let nextEp = 0;
  let nextPol = 0;

  const newEndpoint = (): Op => {
    const spec = g.endpoint(nextEp++);
    eps.set(`${spec.namespace}/${spec.name}`, spec);
    return { t: 'upsert', spec };
  };
  const newPolicy = (): Op => {
    const { yaml, ref } = g.policy(`p${nextPol++}`);
    pols.set(ref, yaml);
    return { t: 'policy', ref, yaml };
  };
  const learn = (): Op => {
    const name = g.pick(FQDN_NAMES);
    const ips = g.subset(FQDN_IPS);
    const s = learned.get(name) ?? new Set();
    for (const ip of ips) s.add(ip);
    learned.set(name, s);
    return { t: 'learn', name, ips };
  };

  const init: Op[] = [{ t: 'ns', list: namespaces }];
  for (let i = 0; i < 5 + g.int(4); i++) init.push(newEndpoint());
  for (let i = 0; i < 3 + g.int(4); i++) init.push(newPolicy());
  for (let i = 0; i < g.int(3); i++) init.push(learn());
  const ops: Op[] = [{ t: 'bulk', ops: init }];

  const mutation = (): Op => {
    for (;;) {
      const r = g.int(100);
      if (r < 22) {
        // modify an existing policy object (same kind/name/namespace → same ref)
        if (pols.size === 0) return newPolicy();
        const ref = g.pick([...pols.keys()]);
        const old = pols.get(ref)!;
        for (let tries = 0; tries < 20; tries++) {
          const { yaml, ref: r2 } = g.policy(ref.split('/').pop()!);
          if (r2 === ref && yaml !== old) {
            pols.set(ref, yaml);
            return { t: 'policy', ref, yaml };
          }
        }
        continue;
      }
      if (r < 32) return newPolicy();
      if (r < 40) {
        if (pols.size === 0) continue;
        const ref = g.pick([...pols.keys()]);
        pols.delete(ref);
        return { t: 'policy', ref, yaml: null };
      }
      if (r < 58) {
        // an existing endpoint gets other labels and/or named ports
        if (eps.size === 0) continue;
        const old = g.pick([...eps.values()]);
        const next = g.endpoint(Number(old.name.slice(1)), old.namespace);
        const spec: EndpointSpec = g.chance(0.3) ? { ...old, ...(next.namedPorts ? { namedPorts: next.namedPorts } : {}) } : g.chance(0.4) ? { ...next, ...(old.namedPorts ? { namedPorts: old.namedPorts } : {}) } : next;
        if (g.chance(0.3) && spec.namedPorts) delete (spec as { namedPorts?: unknown }).namedPorts;
        eps.set(`${spec.namespace}/${spec.name}`, spec);
        return { t: 'upsert', spec };
      }
      if (r < 66) return newEndpoint();
      if (r < 73) {
        if (eps.size <= 1) continue;
        const ref = g.pick([...eps.keys()]);
        eps.delete(ref);
        return { t: 'remove', ref };
      }
      if (r < 80) {
        namespaces = namespaces.map((n) => (g.chance(0.5) ? { name: n.name, labels: g.nsLabels() } : n));
        return { t: 'ns', list: namespaces };
      }
      if (r < 87) return learn();
      if (r < 92) {
        if (learned.size === 0) continue;
        const name = g.pick([...learned.keys()]);
        if (g.chance(0.5)) {
          learned.delete(name);
          return { t: 'forget', name };
        }
        const ips = g.subset([...learned.get(name)!]);
        for (const ip of ips) learned.get(name)!.delete(ip);
        if (learned.get(name)!.size === 0) learned.delete(name);
        return { t: 'forget', name, ips };
      }
      // several changes at once (a reload)
      const inner: Op[] = [];
      for (let i = 0; i < 2 + g.int(3); i++) {
        const m = mutation();
        if (m.t !== 'bulk') inner.push(m);
      }
      return { t: 'bulk', ops: inner };
    }
  };
  for (let s = 0; s < steps; s++) ops.push(mutation());
  return ops;
}

function describe(ops: Op[]): string {
  return ops
    .map((op, i) => {
      const one = (o: Op): string => {
        switch (o.t) {
          case 'policy':
            return o.yaml === null ? `delete ${o.ref}` : `policy ${o.ref}:\n${o.yaml.replace(/^/gm, '      ')}`;
          case 'bulk':
            return `bulk:\n${o.ops.map((x) => `    - ${one(x)}`).join('\n')}`;
          default:
            return JSON.stringify(o);
        }
      };
      return `  [${i}] ${one(op)}`;
    })
    .join('\n');
}

test(`incremental MapChanges equal a fresh engine (${SEEDS} seeds × ${STEPS} steps)`, () => {
  const failures: string[] = [];
  const stats = { sameKeyAddDelete: 0, changes: 0 };
  const only = process.env.INCREMENTAL_SEED ? [Number(process.env.INCREMENTAL_SEED)] : null;
  for (let seed = 1; seed <= SEEDS; seed++) {
    if (only && !only.includes(seed)) continue;
    const ops = generate(seed, STEPS);
    const f = run(ops, stats);
    if (!f) continue;
    if (process.env.INCREMENTAL_NOSHRINK) {
      failures.push(`seed ${seed}: step ${f.step}: ${f.kind}\n${f.message.slice(0, 600)}`);
      continue;
    }
    const small = shrink(ops, f.kind);
    const sf = run(small)!;
    failures.push(`seed ${seed}: step ${f.step}: ${f.kind}\nminimal reproduction (${small.length} ops):\n${describe(small)}\nfailure at step ${sf.step}:\n${sf.message}`);
    if (failures.length >= 3) break;
  }
  if (stats.sameKeyAddDelete && process.env.INCREMENTAL_VERBOSE) {
    process.stderr.write(`note: ${stats.sameKeyAddDelete} of ${stats.changes} MapChanges add and delete the same key\n`);
  }
  assert.equal(failures.length, 0, failures.join('\n\n'));
});

test('a merge conflict is reported in changes.errors, and the endpoint recovers when it is removed', () => {
  const cnp = (name: string, rules: string) =>
    `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: alpha}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  egress:\n  - toEndpoints: [{matchLabels: {app: db}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: ${rules}}]\n`;
  const http = cnp('h', '{http: [{method: GET}]}');
  const dns = cnp('d', '{dns: [{matchPattern: "*"}]}');
  const ops: Op[] = [
    { t: 'ns', list: [{ name: 'alpha', labels: {} }] },
    { t: 'upsert', spec: { namespace: 'alpha', name: 'web', labels: { app: 'web' }, ips: ['10.1.0.1'] } },
    { t: 'upsert', spec: { namespace: 'alpha', name: 'db', labels: { app: 'db' }, ips: ['10.1.0.2'] } },
    { t: 'policy', ref: rulesOf(http)[0]!.origin.ref, yaml: http },
  ];
  assert.equal(run(ops), null);
  const engine = new PolicyEngine({ hostIps: [GATEWAY] });
  const world: World = { namespaces: [], endpoints: new Map(), policies: new Map(), fqdn: new Map() };
  for (const op of ops) perform(engine, world, op, new Set());
  assert.equal(engine.computeAll().size, 0);
  const dnsRef = rulesOf(dns)[0]!.origin.ref;
  const bad = perform(engine, world, { t: 'policy', ref: dnsRef, yaml: dns }, new Set());
  assert.match(bad.errors.get('alpha/web')?.message ?? '', /conflicting L7 parsers/);
  assert.throws(() => engine.endpointPolicy('alpha/web'), /conflicting L7 parsers/);
  // removing the conflicting object: the endpoint's policy is computed again on demand
  // (it had no map state in the engine any more, so it gets no MapChanges: the agent resyncs it)
  perform(engine, world, { t: 'policy', ref: dnsRef, yaml: null }, new Set());
  const fresh = freshEngine(world);
  assert.deepEqual(
    renderMapState(engine, engine.endpointPolicy('alpha/web').mapState.entries()),
    renderMapState(fresh, fresh.endpointPolicy('alpha/web').mapState.entries()),
  );
});

test('new selections that make two rules collide on one key are reported, not thrown (and recover)', () => {
  // Two selectors on TCP/80 with different parsers resolve fine until one identity is selected by both.
  const policy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: alpha}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: web, protocol: TCP}], rules: {http: [{method: GET}]}}]
  - toEndpoints: [{matchLabels: {role: be}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {dns: [{matchPattern: "*"}]}}]
`;
  const ref = rulesOf(policy)[0]!.origin.ref;
  const base: Op[] = [
    { t: 'ns', list: [{ name: 'alpha', labels: {} }] },
    { t: 'upsert', spec: { namespace: 'alpha', name: 'web', labels: { app: 'web' }, ips: ['10.1.0.1'] } },
    { t: 'upsert', spec: { namespace: 'alpha', name: 'db', labels: { app: 'db', role: 'be' }, ips: ['10.1.0.2'], namedPorts: { web: { port: 9000, protocol: 'TCP' } } } },
    { t: 'policy', ref, yaml: policy },
  ];
  for (const trigger of [
    // a new identity selected by both selectors (selection update)
    { t: 'upsert', spec: { namespace: 'alpha', name: 'db2', labels: { app: 'db', role: 'be', tier: 'x' }, ips: ['10.1.0.3'], namedPorts: { web: { port: 8080, protocol: 'TCP' } } } },
    // named port 'web' of an identity both select now resolves to 8080 (named-port rebuild)
    { t: 'upsert', spec: { namespace: 'alpha', name: 'db', labels: { app: 'db', role: 'be' }, ips: ['10.1.0.2'], namedPorts: { web: { port: 8080, protocol: 'TCP' } } } },
    { t: 'bulk', ops: [{ t: 'upsert', spec: { namespace: 'alpha', name: 'db', labels: { app: 'db', role: 'be' }, ips: ['10.1.0.2'], namedPorts: { web: { port: 8080, protocol: 'TCP' } } } }] },
  ] as Op[]) {
    const engine = new PolicyEngine({ hostIps: [GATEWAY] });
    const world: World = { namespaces: [], endpoints: new Map(), policies: new Map(), fqdn: new Map() };
    for (const op of base) perform(engine, world, op, new Set());
    assert.equal(engine.computeAll().size, 0);
    const changes = perform(engine, world, trigger, new Set());
    assert.match(changes.errors.get('alpha/web')?.message ?? '', /conflicting L7 parsers/, JSON.stringify(trigger));
    assert.throws(() => engine.endpointPolicy('alpha/web'), /conflicting L7 parsers/);
    // the conflict goes away with the policy: the endpoint's policy is computed again on demand
    perform(engine, world, { t: 'policy', ref, yaml: null }, new Set());
    const fresh = freshEngine(world);
    assert.deepEqual(
      renderMapState(engine, engine.endpointPolicy('alpha/web').mapState.entries()),
      renderMapState(fresh, fresh.endpointPolicy('alpha/web').mapState.entries()),
    );
  }
});
