// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/validate
 *
 * CRD object → sanitized {@link Rule}s, or {@link Problem}s naming file, line, object and field
 * path (DESIGN §3.3). No I/O: the loader (`api/load.ts`) parses files and hands each object here
 * with a line lookup for its field paths.
 *
 * What it does, in order (reference §1, §1.12, §2.1, §2.4, §2.10, §2.14; DESIGN §2):
 * 1. identify the object: kinds other than CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
 *    and NetworkPolicy are skipped with a warning;
 * 2. strict schema: unknown fields and wrong types are errors (kubectl strict field validation);
 *    known fields Membrane does not enforce are errors naming the field, never ignored;
 * 3. Cilium's rule validation (`rule_validation.go`);
 * 4. normalisation into the `api/types.ts` model (sources on label keys, namespace and cluster
 *    scoping, entities, CIDRs as `cidr:` selectors, ICMP as ports, default deny).
 * An object with any error yields no rules.
 */
import { cidrPeer, readExcepts, readPrefix } from './cidr-peer.ts';
import { icmpTypeNumber } from './icmp.ts';
import { translateNetworkPolicy } from './network-policy.ts';
import { EXTENDED_PROTOCOLS, MAX_PORTS, parsePortString, PORT_PROTOCOLS } from './ports.ts';
import {
  childPath,
  Ctx,
  isAbsent,
  isPlainObject,
  readBool,
  readInt,
  readList,
  readObject,
  readString,
  readStringList,
  typeName,
  type FieldTable,
  type LineLookup,
} from './schema.ts';
import { ENTITY_SELECTORS, POD_NAMESPACE_LABEL, readSelector, scopePeerSelector, selectorOf } from './selector.ts';
import {
  policyRef,
  type DirectionalRule,
  type DnsRule,
  type HeaderMatch,
  type HttpRule,
  type KafkaRule,
  type L4Protocol,
  type L7Rules,
  type LabelRequirement,
  type LabelSelector,
  type PeerSelector,
  type PolicyKind,
  type PolicyOrigin,
  type PortProtocol,
  type PortRule,
  type Problem,
  type Rule,
} from './types.ts';
import { parseHeaderString, validateHttpRegex } from '../l7/http.ts';
import { validateMatchName, validateMatchPattern } from '../l7/dns.ts';
import { validateKafkaRule } from '../l7/kafka.ts';

/** The kinds Membrane enforces. */
export const POLICY_KINDS: readonly PolicyKind[] = ['CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy', 'NetworkPolicy'];

/** The apiVersion each policy kind must have. */
export const POLICY_API_VERSIONS: Readonly<Record<PolicyKind, string>> = Object.freeze({
  CiliumNetworkPolicy: 'cilium.io/v2',
  CiliumClusterwideNetworkPolicy: 'cilium.io/v2',
  NetworkPolicy: 'networking.k8s.io/v1',
});

/** Namespace of a namespaced policy without `metadata.namespace` (DESIGN §2: as kubectl). */
export const DEFAULT_NAMESPACE = 'default';

/** Where an object came from, for problems. */
export interface ObjectSource {
  /** File name as given by the user. */
  file: string;
  /** Line of the object's start (1-based; 0 when unknown). */
  line: number;
  /** Line of a field path relative to the object (`spec.ingress[0]`), when known. */
  lineOf?: LineLookup;
}

/** The outcome of validating one object. */
export interface ObjectResult {
  /** `kind` as written, when it is a string. */
  kind?: string;
  name?: string;
  /** Effective namespace for namespaced policy kinds (defaulted to `default`). */
  namespace?: string;
  /** `Kind/name`, as used in problems. */
  object?: string;
  /** Set when the object is a policy kind with a name (even if invalid), for duplicate detection. */
  origin?: PolicyOrigin;
  /** The sanitized rules; empty when the object has errors or was skipped. */
  rules: Rule[];
  problems: Problem[];
  /** True when the object is not a policy kind and was skipped with a warning. */
  skipped: boolean;
}

/** Environment of the object being validated, passed down to rule readers. */
export interface PolicyEnv {
  kind: PolicyKind;
  name: string;
  /** Namespace for namespaced kinds; undefined for CCNP. */
  namespace?: string;
  origin: PolicyOrigin;
}

const TOP_FIELDS_CILIUM: FieldTable = { apiVersion: true, kind: true, metadata: true, spec: true, specs: true, status: true };
const TOP_FIELDS_NP: FieldTable = { apiVersion: true, kind: true, metadata: true, spec: true, status: true };
const METADATA_FIELDS: FieldTable = {
  name: true,
  namespace: true,
  labels: true,
  annotations: true,
  uid: true,
  resourceVersion: true,
  generation: true,
  creationTimestamp: true,
  deletionTimestamp: true,
  deletionGracePeriodSeconds: true,
  generateName: true,
  ownerReferences: true,
  finalizers: true,
  managedFields: true,
  selfLink: true,
};

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Validates one parsed object and converts it into sanitized rules.
 *
 * @param obj the parsed YAML/JSON document (a List must be expanded by the caller)
 * @param src file, start line and field-path line lookup
 * @returns rules (empty on error), problems, and identification for duplicate detection
 * @example
 * const r = validateObject(doc.toJS(), { file: 'p.yaml', line: 1 });
 * if (r.problems.some((p) => p.severity === 'error')) ...
 */
export function validateObject(obj: unknown, src: ObjectSource): ObjectResult {
  const ctx = new Ctx(src.file, undefined, src.lineOf ?? (() => undefined), src.line);
  const result: ObjectResult = { rules: [], problems: ctx.problems, skipped: false };
  if (!isPlainObject(obj)) {
    ctx.error('', `a Kubernetes object must be a mapping, got ${typeName(obj)}`);
    return result;
  }
  // 1. identify
  const kind = typeof obj.kind === 'string' ? obj.kind : undefined;
  const meta = isPlainObject(obj.metadata) ? obj.metadata : undefined;
  const name = meta && typeof meta.name === 'string' && meta.name !== '' ? meta.name : undefined;
  result.kind = kind;
  result.name = name;
  if (kind === undefined) {
    ctx.error('kind', isAbsent(obj.kind) ? 'required: the object has no kind' : `must be a string, got ${typeName(obj.kind)}`);
    return result;
  }
  ctx.object = `${kind}/${name ?? '<no name>'}`;
  result.object = ctx.object;
  if (!(POLICY_KINDS as readonly string[]).includes(kind)) {
    result.skipped = true;
    ctx.warning('', `skipped: ${kind} is not a policy kind (${POLICY_KINDS.join(', ')})`);
    return result;
  }
  const pkind = kind as PolicyKind;
  // 2. object envelope
  checkTopFields(ctx, obj, pkind === 'NetworkPolicy' ? TOP_FIELDS_NP : TOP_FIELDS_CILIUM);
  const apiVersion = readString(ctx, obj.apiVersion, 'apiVersion');
  if (isAbsent(obj.apiVersion)) ctx.error('apiVersion', `required: must be ${POLICY_API_VERSIONS[pkind]}`);
  else if (apiVersion !== undefined && apiVersion !== POLICY_API_VERSIONS[pkind]) {
    ctx.error('apiVersion', `unsupported apiVersion ${JSON.stringify(apiVersion)} for ${pkind}: must be ${POLICY_API_VERSIONS[pkind]}`);
  }
  const namespace = readMetadata(ctx, obj.metadata, pkind);
  if (namespace !== undefined) result.namespace = namespace;
  if (name === undefined) return result;
  const origin: PolicyOrigin = {
    kind: pkind,
    ...(namespace !== undefined ? { namespace } : {}),
    name,
    ref: policyRef(pkind, name, namespace),
    location: { file: src.file, line: src.line },
  };
  result.origin = origin;
  const env: PolicyEnv = { kind: pkind, name, ...(namespace !== undefined ? { namespace } : {}), origin };
  // 3. + 4.
  const rules = pkind === 'NetworkPolicy' ? translateNetworkPolicy(ctx, obj, env) : readCiliumSpecs(ctx, obj, env);
  if (ctx.errorCount === 0) result.rules = rules;
  return result;
}

function checkTopFields(ctx: Ctx, obj: Record<string, unknown>, fields: FieldTable): void {
  for (const key of Object.keys(obj)) {
    if (Object.prototype.hasOwnProperty.call(fields, key)) continue;
    const close = Object.keys(fields).find((k) => k.toLowerCase() === key.toLowerCase());
    ctx.error(childPath('', key), `unknown field ${JSON.stringify(key)}${close ? ` (did you mean ${JSON.stringify(close)}?)` : ''}`);
  }
}

/** Validates metadata; returns the effective namespace (undefined for CCNP). */
function readMetadata(ctx: Ctx, v: unknown, kind: PolicyKind): string | undefined {
  const namespaced = kind !== 'CiliumClusterwideNetworkPolicy';
  if (isAbsent(v)) {
    ctx.error('metadata', 'required: metadata.name is required');
    return namespaced ? DEFAULT_NAMESPACE : undefined;
  }
  const m = readObject(ctx, v, 'metadata', METADATA_FIELDS);
  if (!m) return namespaced ? DEFAULT_NAMESPACE : undefined;
  const name = readString(ctx, m.name, 'metadata.name');
  if (isAbsent(m.name) || name === '') ctx.error('metadata.name', 'required');
  else if (name !== undefined && (name.length > 253 || !DNS1123_SUBDOMAIN.test(name))) {
    ctx.error('metadata.name', `invalid name ${JSON.stringify(name)}: must be a lowercase RFC 1123 subdomain (a-z, 0-9, "-", "."), at most 253 characters`);
  }
  const ns = readString(ctx, m.namespace, 'metadata.namespace');
  if (ns !== undefined && ns !== '' && (ns.length > 63 || !DNS1123_LABEL.test(ns))) {
    ctx.error('metadata.namespace', `invalid namespace ${JSON.stringify(ns)}: must be a lowercase RFC 1123 label, at most 63 characters`);
  }
  for (const f of ['labels', 'annotations']) {
    if (isAbsent(m[f])) continue;
    const o = readObject(ctx, m[f], `metadata.${f}`);
    if (o) for (const [k, val] of Object.entries(o)) readString(ctx, val, childPath(`metadata.${f}`, k));
  }
  if (!namespaced) {
    if (ns) ctx.warning('metadata.namespace', `ignored: ${kind} is cluster-scoped`);
    return undefined;
  }
  return ns ? ns : DEFAULT_NAMESPACE;
}

// ---------------------------------------------------------------------------------------------
// CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy (reference §1.1–§1.12, §2.1)

const RULE_FIELDS: FieldTable = {
  endpointSelector: true,
  nodeSelector:
    'nodeSelector is not supported: host policies need a host firewall, which Membrane does not have (use endpointSelector)',
  ingress: true,
  ingressDeny: true,
  egress: true,
  egressDeny: true,
  labels: true,
  description: true,
  enableDefaultDeny: true,
  log: true,
};

const UNSUPPORTED = {
  fromNodes:
    'fromNodes is not supported: node selector labels are not enabled (as in Cilium by default); use fromEntities host/remote-node',
  toNodes:
    'toNodes is not supported: node selector labels are not enabled (as in Cilium by default); use toEntities host/remote-node',
  fromGroups: 'fromGroups is not supported: cloud provider groups need an operator that Membrane does not have',
  toGroups: 'toGroups is not supported: cloud provider groups need an operator that Membrane does not have',
  toServices: 'toServices is not supported: it needs a cluster with Kubernetes services; use toEndpoints or toCIDRSet',
  authentication: 'authentication is not supported: Membrane has no mutual authentication',
  auth: 'auth is not supported: obsolete spelling of authentication, and Membrane has no mutual authentication',
} as const;

const INGRESS_COMMON: FieldTable = {
  fromEndpoints: true,
  fromRequires: true,
  fromCIDR: true,
  fromCIDRSet: true,
  fromEntities: true,
  fromNodes: UNSUPPORTED.fromNodes,
  fromGroups: UNSUPPORTED.fromGroups,
  toPorts: true,
  icmps: true,
};
const EGRESS_COMMON: FieldTable = {
  toEndpoints: true,
  toRequires: true,
  toCIDR: true,
  toCIDRSet: true,
  toEntities: true,
  toServices: UNSUPPORTED.toServices,
  toGroups: UNSUPPORTED.toGroups,
  toNodes: UNSUPPORTED.toNodes,
  toPorts: true,
  icmps: true,
};
const DIRECTION_FIELDS: Record<'ingress' | 'ingressDeny' | 'egress' | 'egressDeny', FieldTable> = {
  ingress: { ...INGRESS_COMMON, authentication: UNSUPPORTED.authentication, auth: UNSUPPORTED.auth },
  ingressDeny: INGRESS_COMMON,
  egress: { ...EGRESS_COMMON, toFQDNs: true, authentication: UNSUPPORTED.authentication, auth: UNSUPPORTED.auth },
  egressDeny: { ...EGRESS_COMMON, toFQDNs: 'toFQDNs is not allowed in egressDeny rules (deny rules have no toFQDNs)' },
};

/** L3 member fields per direction, in Cilium's order (only one per rule, reference §1.3/§1.4). */
const L3_MEMBERS = {
  ingress: ['fromEndpoints', 'fromCIDR', 'fromCIDRSet', 'fromEntities', 'fromNodes', 'fromGroups'],
  egress: ['toEndpoints', 'toCIDR', 'toCIDRSet', 'toEntities', 'toServices', 'toGroups', 'toNodes', 'toFQDNs'],
} as const;

function readCiliumSpecs(ctx: Ctx, obj: Record<string, unknown>, env: PolicyEnv): Rule[] {
  const rules: Rule[] = [];
  if (isAbsent(obj.spec) && isAbsent(obj.specs)) {
    ctx.error('', 'one of spec or specs is required');
    return rules;
  }
  if (!isAbsent(obj.spec)) {
    const r = readRule(ctx, obj.spec, 'spec', env);
    if (r) rules.push(r);
  }
  const specs = readList(ctx, obj.specs, 'specs');
  if (specs) {
    if (specs.length === 0 && isAbsent(obj.spec)) ctx.error('specs', 'must contain at least one rule');
    specs.forEach((s, i) => {
      const r = readRule(ctx, s, childPath('specs', i), env);
      if (r) rules.push(r);
    });
  }
  return rules;
}

/**
 * Reads one `spec`/`specs[i]` (reference §1.2) into a sanitized rule.
 *
 * @returns the rule, or undefined when it has errors
 */
function readRule(ctx: Ctx, v: unknown, path: string, env: PolicyEnv): Rule | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, RULE_FIELDS);
  if (!o) return undefined;
  const p = (f: string) => childPath(path, f);

  // Subject (reference §2.1 step 1)
  let subject: LabelSelector | undefined;
  if (isAbsent(o.endpointSelector)) {
    if (isAbsent(o.nodeSelector)) ctx.error(p('endpointSelector'), 'required');
  } else {
    subject = readSelector(ctx, o.endpointSelector, p('endpointSelector'), 'cilium');
    if (subject && env.namespace !== undefined) subject = scopeSubject(ctx, subject, env.namespace, p('endpointSelector'));
  }

  const description = readString(ctx, o.description, p('description'));
  readRuleLabels(ctx, o.labels, p('labels'));
  let log: string | undefined;
  if (!isAbsent(o.log)) {
    const l = readObject(ctx, o.log, p('log'), { value: true });
    const value = l ? readString(ctx, l.value, childPath(p('log'), 'value')) : undefined;
    if (value !== undefined) {
      if (value.length > 32) ctx.error(childPath(p('log'), 'value'), `must be at most 32 characters (got ${value.length})`);
      else if (!/^[\x20-\x7e]*$/.test(value)) ctx.error(childPath(p('log'), 'value'), 'must contain printable ASCII characters only');
      else if (value !== '') log = value;
    }
  }
  const defaultDeny = { ingress: true, egress: true };
  if (!isAbsent(o.enableDefaultDeny)) {
    const d = readObject(ctx, o.enableDefaultDeny, p('enableDefaultDeny'), { ingress: true, egress: true });
    if (d) {
      const i = readBool(ctx, d.ingress, childPath(p('enableDefaultDeny'), 'ingress'));
      const e = readBool(ctx, d.egress, childPath(p('enableDefaultDeny'), 'egress'));
      if (i !== undefined) defaultDeny.ingress = i;
      if (e !== undefined) defaultDeny.egress = e;
    }
  }

  // CCNP: a subject that selects reserved:init keeps `{}` peers unscoped (reference §2.1 step 2).
  const subjectSelectsInit =
    env.namespace === undefined &&
    (subject?.requirements.some((r) => r.key === 'reserved:init' && (r.operator === 'Exists' || r.operator === 'In')) ?? false);
  const ingress: DirectionalRule[] = [];
  const egress: DirectionalRule[] = [];
  let elements = 0;
  for (const field of ['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const) {
    const list = readList(ctx, o[field], p(field));
    if (!list) continue;
    elements += list.length;
    const dir = field.startsWith('ingress') ? 'ingress' : 'egress';
    list.forEach((el, i) => {
      const dr = readDirectional(ctx, el, childPath(p(field), i), field, env, subjectSelectsInit);
      if (dr) (dir === 'ingress' ? ingress : egress).push(dr);
    });
  }
  const count = (f: string) => (Array.isArray(o[f]) ? (o[f] as unknown[]).length : 0);
  const hasIngress = count('ingress') + count('ingressDeny') > 0;
  const hasEgress = count('egress') + count('egressDeny') > 0;
  if (elements === 0 && ctx.errorCount === before) {
    ctx.error(path, 'rule must have at least one of ingress, ingressDeny, egress, egressDeny');
  }
  if (ctx.errorCount > before || !subject) return undefined;
  return {
    origin: { ...env.origin, ...(log !== undefined ? { log } : {}) },
    subject,
    ...(env.namespace !== undefined ? { namespace: env.namespace } : {}),
    ingress,
    egress,
    hasIngress,
    hasEgress,
    defaultDeny,
    path,
    ...(description ? { description } : {}),
  };
}

/**
 * CNP subject: force `k8s:io.kubernetes.pod.namespace In [ns]`; a user requirement on the pod
 * namespace key that differs is dropped with a warning (reference §2.1 step 1).
 */
function scopeSubject(ctx: Ctx, sel: LabelSelector, namespace: string, path: string): LabelSelector {
  const nsKeys = [`k8s:${POD_NAMESPACE_LABEL}`, `any:${POD_NAMESPACE_LABEL}`];
  const kept: LabelRequirement[] = [];
  for (const r of sel.requirements) {
    if (!nsKeys.includes(r.key)) {
      kept.push(r);
      continue;
    }
    const same = r.operator === 'In' && r.values.length === 1 && r.values[0] === namespace;
    if (!same) {
      ctx.warning(
        path,
        `the requirement ${r.key} ${r.operator} [${r.values.join(', ')}] is ignored: a CiliumNetworkPolicy only selects endpoints of its own namespace (${namespace})`,
      );
    }
  }
  kept.push({ key: `k8s:${POD_NAMESPACE_LABEL}`, operator: 'In', values: [namespace] });
  return selectorOf(kept);
}

/** `labels` of a rule: a LabelArray `[{key, value, source}]` (metadata only). */
function readRuleLabels(ctx: Ctx, v: unknown, path: string): void {
  const list = readList(ctx, v, path);
  list?.forEach((item, i) => {
    const ip = childPath(path, i);
    const l = readObject(ctx, item, ip, { key: true, value: true, source: true });
    if (!l) return;
    const key = readString(ctx, l.key, childPath(ip, 'key'));
    if (isAbsent(l.key) || key === '') ctx.error(childPath(ip, 'key'), 'required');
    readString(ctx, l.value, childPath(ip, 'value'));
    readString(ctx, l.source, childPath(ip, 'source'));
  });
}

type DirField = 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny';

/** Reads one ingress/ingressDeny/egress/egressDeny element (reference §1.3, §1.4, §1.12). */
function readDirectional(
  ctx: Ctx,
  v: unknown,
  path: string,
  field: DirField,
  env: PolicyEnv,
  subjectSelectsInit: boolean,
): DirectionalRule | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, DIRECTION_FIELDS[field]);
  if (!o) return undefined;
  const dir = field.startsWith('ingress') ? 'ingress' : 'egress';
  const deny = field.endsWith('Deny');
  const p = (f: string) => childPath(path, f);
  const len = (f: string) => (Array.isArray(o[f]) ? (o[f] as unknown[]).length : 0);

  // Only one L3 member per rule: "combining X and Y is not supported yet".
  const members = L3_MEMBERS[dir].filter((m) => len(m) > 0);
  if (members.length > 1) ctx.error(p(members[1]), `combining ${members[0]} and ${members[1]} is not supported yet`);

  let peers: PeerSelector[] | null = null;
  const add = (ps: PeerSelector[]) => {
    peers = [...(peers ?? []), ...ps];
  };
  const ep = dir === 'ingress' ? 'fromEndpoints' : 'toEndpoints';
  const cidr = dir === 'ingress' ? 'fromCIDR' : 'toCIDR';
  const cidrSet = dir === 'ingress' ? 'fromCIDRSet' : 'toCIDRSet';
  const ent = dir === 'ingress' ? 'fromEntities' : 'toEntities';
  const req = dir === 'ingress' ? 'fromRequires' : 'toRequires';

  const epList = readList(ctx, o[ep], p(ep));
  if (epList) {
    const out: PeerSelector[] = [];
    epList.forEach((s, i) => {
      const sel = readSelector(ctx, isAbsent(s) ? {} : s, childPath(p(ep), i), 'cilium');
      if (sel) out.push({ type: 'labels', field: 'endpoints', selector: scopePeerSelector(sel, env.namespace, subjectSelectsInit) });
    });
    add(out);
  }
  const cidrList = readList(ctx, o[cidr], p(cidr));
  if (cidrList) {
    const out: PeerSelector[] = [];
    cidrList.forEach((c, i) => {
      const cp = childPath(p(cidr), i);
      const s = readString(ctx, c, cp);
      if (s === undefined) {
        if (isAbsent(c)) ctx.error(cp, 'must be a CIDR string, got null');
        return;
      }
      const prefix = readPrefix(ctx, s, cp);
      if (prefix) out.push(cidrPeer(prefix, []));
    });
    add(out);
  }
  const setList = readList(ctx, o[cidrSet], p(cidrSet));
  if (setList) {
    const out: PeerSelector[] = [];
    setList.forEach((c, i) => {
      const peer = readCidrRule(ctx, c, childPath(p(cidrSet), i));
      if (peer) out.push(peer);
    });
    add(out);
  }
  const entList = readList(ctx, o[ent], p(ent));
  if (entList) {
    const out: PeerSelector[] = [];
    const seen = new Set<string>();
    entList.forEach((e, i) => {
      const epath = childPath(p(ent), i);
      const name = readString(ctx, e, epath);
      if (name === undefined) {
        if (isAbsent(e)) ctx.error(epath, 'must be an entity name, got null');
        return;
      }
      const sels = Object.prototype.hasOwnProperty.call(ENTITY_SELECTORS, name) ? ENTITY_SELECTORS[name] : undefined;
      if (!sels) {
        ctx.error(epath, `unknown entity ${JSON.stringify(name)} (known: ${Object.keys(ENTITY_SELECTORS).join(', ')})`);
        return;
      }
      for (const sel of sels) {
        const k = JSON.stringify(sel);
        if (seen.has(k)) continue;
        seen.add(k);
        out.push({ type: 'labels', field: 'entities', selector: { requirements: sel.requirements.map((r) => ({ ...r, values: [...r.values] })) } });
      }
    });
    add(out);
  }
  if (dir === 'egress' && !deny) {
    const fq = readList(ctx, o.toFQDNs, p('toFQDNs'));
    if (fq) {
      const out: PeerSelector[] = [];
      fq.forEach((f, i) => {
        const r = readFqdnSelector(ctx, f, childPath(p('toFQDNs'), i));
        if (r) out.push({ type: 'fqdn', ...r });
      });
      add(out);
    }
  }

  // fromRequires/toRequires: accepted with the 1.18 meaning and a deprecation warning (DESIGN §2, §2.12).
  const requires: LabelRequirement[] = [];
  const reqList = readList(ctx, o[req], p(req));
  if (reqList) {
    ctx.warning(p(req), `${req} is deprecated (removed in Cilium 1.19); it is applied with the Cilium 1.18 meaning`);
    reqList.forEach((s, i) => {
      const sel = readSelector(ctx, isAbsent(s) ? {} : s, childPath(p(req), i), 'cilium');
      if (sel) requires.push(...sel.requirements);
    });
  }

  // L4 / L7
  const toPorts: PortRule[] = [];
  if (len('icmps') > 0 && len('toPorts') > 0) {
    ctx.error(p('icmps'), 'icmps and toPorts cannot be combined in one rule; define a separate rule for toPorts');
  }
  const tp = readList(ctx, o.toPorts, p('toPorts'));
  tp?.forEach((pr, i) => {
    const r = readPortRule(ctx, pr, childPath(p('toPorts'), i), dir, deny);
    if (r) toPorts.push(r);
  });
  const icmps = readList(ctx, o.icmps, p('icmps'));
  icmps?.forEach((ic, i) => {
    const r = readIcmpRule(ctx, ic, childPath(p('icmps'), i));
    if (r) toPorts.push(r);
  });

  if (ctx.errorCount > before) return undefined;
  return {
    deny,
    peers: peers === null ? null : dedupePeers(peers),
    toPorts,
    requires: selectorOf(requires).requirements,
    path,
    location: { file: ctx.file, line: ctx.line(path) },
  };
}

function dedupePeers(peers: PeerSelector[]): PeerSelector[] {
  const seen = new Set<string>();
  return peers.filter((p) => {
    const k = JSON.stringify(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** `toCIDRSet`/`fromCIDRSet` element: `{cidr, except}`; the group forms are unsupported. */
function readCidrRule(ctx: Ctx, v: unknown, path: string): PeerSelector | undefined {
  const o = readObject(ctx, v, path, {
    cidr: true,
    except: true,
    cidrGroupRef: 'cidrGroupRef is not supported: Membrane has no CiliumCIDRGroup support',
    cidrGroupSelector: 'cidrGroupSelector is not supported: Membrane has no CiliumCIDRGroup support',
  });
  if (!o) return undefined;
  const before = ctx.errorCount;
  const s = readString(ctx, o.cidr, childPath(path, 'cidr'));
  if (isAbsent(o.cidr) && isAbsent(o.cidrGroupRef) && isAbsent(o.cidrGroupSelector)) ctx.error(childPath(path, 'cidr'), 'required');
  const prefix = s === undefined ? undefined : readPrefix(ctx, s, childPath(path, 'cidr'));
  const excepts = readExcepts(ctx, o.except, childPath(path, 'except'), prefix);
  if (!prefix || ctx.errorCount > before) return undefined;
  return cidrPeer(prefix, excepts);
}

/** `toFQDNs[i]` / `rules.dns[i]`: exactly one of matchName/matchPattern (reference §1.7). */
function readFqdnSelector(ctx: Ctx, v: unknown, path: string): DnsRule | undefined {
  const o = readObject(ctx, v, path, { matchName: true, matchPattern: true });
  if (!o) return undefined;
  const name = readString(ctx, o.matchName, childPath(path, 'matchName'));
  const pattern = readString(ctx, o.matchPattern, childPath(path, 'matchPattern'));
  if (name && pattern) {
    ctx.error(path, 'only one of matchName or matchPattern is allowed');
    return undefined;
  }
  if (name) {
    const err = validateMatchName(name);
    if (err) ctx.error(childPath(path, 'matchName'), err);
    return err ? undefined : { matchName: name };
  }
  if (pattern) {
    const err = validateMatchPattern(pattern);
    if (err) ctx.error(childPath(path, 'matchPattern'), err);
    return err ? undefined : { matchPattern: pattern };
  }
  if (isAbsent(o.matchName) && isAbsent(o.matchPattern)) ctx.error(path, 'one of matchName or matchPattern is required');
  else if (name === '' || pattern === '') ctx.error(path, 'matchName or matchPattern must be non-empty');
  return undefined;
}

const PORT_RULE_FIELDS: FieldTable = {
  ports: true,
  rules: true,
  serverNames: 'serverNames is not supported: Membrane does not inspect TLS SNI yet',
  terminatingTLS: 'terminatingTLS is not supported: Membrane does not intercept TLS',
  originatingTLS: 'originatingTLS is not supported: Membrane does not intercept TLS',
  listener: 'listener is not supported: Membrane has no CiliumEnvoyConfig listeners',
};
const PORT_DENY_RULE_FIELDS: FieldTable = {
  ports: true,
  rules: 'L7 rules are not allowed in deny rules (a deny port rule has only ports)',
};

/** One `toPorts[i]` (reference §1.8, §1.12). */
function readPortRule(ctx: Ctx, v: unknown, path: string, dir: 'ingress' | 'egress', deny: boolean): PortRule | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, deny ? PORT_DENY_RULE_FIELDS : PORT_RULE_FIELDS);
  if (!o) return undefined;
  const portsPath = childPath(path, 'ports');
  const list = readList(ctx, o.ports, portsPath) ?? [];
  if (list.length > MAX_PORTS) ctx.error(portsPath, `too many ports: ${list.length} (at most ${MAX_PORTS} per port rule)`);
  const ports: Array<{ pp: PortProtocol; path: string }> = [];
  list.forEach((item, i) => {
    const pp = readPortProtocol(ctx, item, childPath(portsPath, i));
    if (pp) ports.push({ pp, path: childPath(portsPath, i) });
  });
  let rules: L7Rules | undefined;
  if (!deny && !isAbsent(o.rules)) rules = readL7Rules(ctx, o.rules, childPath(path, 'rules'), dir, ports);
  if (ctx.errorCount > before) return undefined;
  if (list.length === 0 && !rules) ctx.warning(path, 'a port rule without ports allows nothing');
  return { ports: ports.map((x) => x.pp), ...(rules ? { rules } : {}) };
}

/** One `ports[i]`: `{port, endPort, protocol}` (reference §1.8). */
function readPortProtocol(ctx: Ctx, v: unknown, path: string): PortProtocol | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, { port: true, endPort: true, protocol: true });
  if (!o) return undefined;
  // The CRD types port as a string; an unquoted integer means the same port, so it is
  // accepted with a warning rather than refused (the meaning is unambiguous).
  let portText: string;
  if (typeof o.port === 'number' && Number.isInteger(o.port)) {
    ctx.warning(childPath(path, 'port'), `port should be a string (quote it: "${o.port}"); read as "${o.port}"`);
    portText = String(o.port);
  } else {
    portText = readString(ctx, o.port, childPath(path, 'port')) ?? '';
  }
  const parsed = parsePortString(portText);
  if (typeof parsed === 'string') ctx.error(childPath(path, 'port'), parsed);
  const endPort = readInt(ctx, o.endPort, childPath(path, 'endPort'));
  const protoText = (readString(ctx, o.protocol, childPath(path, 'protocol')) ?? '').toUpperCase();
  let protocol: L4Protocol = 'ANY';
  if (protoText !== '') {
    if ((PORT_PROTOCOLS as readonly string[]).includes(protoText)) protocol = protoText as L4Protocol;
    else if (EXTENDED_PROTOCOLS.includes(protoText)) {
      ctx.error(childPath(path, 'protocol'), `protocol ${protoText} is not supported: extended IP protocols are not supported by Membrane`);
    } else if (protoText === 'ICMP' || protoText === 'ICMPV6') {
      ctx.error(childPath(path, 'protocol'), `protocol ${protoText} is not allowed in toPorts; use icmps`);
    } else {
      ctx.error(childPath(path, 'protocol'), `invalid protocol ${JSON.stringify(o.protocol)}: must be one of TCP, UDP, SCTP, ANY`);
    }
  }
  if (endPort !== undefined && typeof parsed !== 'string') {
    if (endPort < 0 || endPort > 65535) ctx.error(childPath(path, 'endPort'), `must be 0..65535 (got ${endPort})`);
    else if (endPort > 0 && parsed.name !== undefined) ctx.error(childPath(path, 'endPort'), 'cannot be used with a named port');
    else if (endPort > 0 && parsed.port === 0) ctx.error(childPath(path, 'endPort'), 'requires a non-zero port');
  }
  if (ctx.errorCount > before || typeof parsed === 'string') return undefined;
  return {
    port: parsed.port,
    ...(endPort !== undefined && endPort > 0 ? { endPort } : {}),
    ...(parsed.name !== undefined ? { name: parsed.name } : {}),
    protocol,
  };
}

/** `toPorts[i].rules` (reference §1.8–§1.10, §1.12). */
function readL7Rules(
  ctx: Ctx,
  v: unknown,
  path: string,
  dir: 'ingress' | 'egress',
  ports: Array<{ pp: PortProtocol; path: string }>,
): L7Rules | undefined {
  const o = readObject(ctx, v, path, {
    http: true,
    dns: true,
    kafka: true,
    l7proto: 'l7proto is not supported: generic L7 (proxylib) parsers are not supported by Membrane',
    l7: 'l7 is not supported: generic L7 (proxylib) parsers are not supported by Membrane',
  });
  if (!o) return undefined;
  const out: L7Rules = {};
  const http = readList(ctx, o.http, childPath(path, 'http'));
  if (http && http.length > 0) out.http = http.map((r, i) => readHttpRule(ctx, r, childPath(childPath(path, 'http'), i)));
  const dns = readList(ctx, o.dns, childPath(path, 'dns'));
  if (dns && dns.length > 0) out.dns = dns.map((r, i) => readFqdnSelector(ctx, r, childPath(childPath(path, 'dns'), i)) ?? {});
  const kafka = readList(ctx, o.kafka, childPath(path, 'kafka'));
  if (kafka && kafka.length > 0) out.kafka = kafka.map((r, i) => readKafkaRule(ctx, r, childPath(childPath(path, 'kafka'), i)));
  const kinds = (['http', 'kafka', 'dns'] as const).filter((k) => out[k] !== undefined);
  if (kinds.length === 0) return undefined;
  if (kinds.length > 1) {
    ctx.error(path, `only one L7 rule type is allowed per port rule, got ${kinds.join(' and ')}`);
    return undefined;
  }
  const kind = kinds[0];
  if (kind === 'dns' && dir === 'ingress') ctx.error(childPath(path, 'dns'), 'DNS rules are only allowed on egress');
  if (ports.length === 0) ctx.error(path, `${kind === 'dns' ? 'DNS' : 'L7'} rules need at least one explicit port`);
  for (const { pp, path: pPath } of ports) {
    if (pp.port === 0 && pp.name === undefined) {
      ctx.error(childPath(pPath, 'port'), 'L7 rules cannot be used when a port is 0 (all ports)');
      continue;
    }
    if (kind === 'dns') {
      if (pp.protocol !== 'TCP' && pp.protocol !== 'UDP' && pp.protocol !== 'ANY') {
        ctx.error(childPath(pPath, 'protocol'), `DNS rules are only allowed on TCP, UDP or ANY ports, got ${pp.protocol}`);
      }
      if (pp.endPort !== undefined && pp.endPort > pp.port) ctx.error(childPath(pPath, 'endPort'), 'DNS rules do not support port ranges');
    } else if (pp.protocol !== 'TCP') {
      ctx.error(childPath(pPath, 'protocol'), `${kind === 'http' ? 'HTTP' : 'Kafka'} rules require protocol TCP, got ${pp.protocol}`);
    }
  }
  return out;
}

/** `rules.http[i]` (reference §1.9). */
function readHttpRule(ctx: Ctx, v: unknown, path: string): HttpRule {
  const o = readObject(ctx, v, path, { path: true, method: true, host: true, headers: true, headerMatches: true });
  const rule: HttpRule = {};
  if (!o) return rule;
  for (const f of ['path', 'method', 'host'] as const) {
    const s = readString(ctx, o[f], childPath(path, f));
    if (s === undefined || s === '') continue;
    const err = validateHttpRegex(s);
    if (err) ctx.error(childPath(path, f), err);
    else rule[f] = s;
  }
  const headers: HeaderMatch[] = [];
  const hs = readStringList(ctx, o.headers, childPath(path, 'headers'));
  hs?.forEach((h, i) => {
    const m = parseHeaderString(h);
    if (m.name === '') ctx.error(childPath(childPath(path, 'headers'), i), `invalid header ${JSON.stringify(h)}: empty name`);
    else headers.push(m.value === undefined ? { name: m.name } : { name: m.name, value: m.value });
  });
  const hm = readList(ctx, o.headerMatches, childPath(path, 'headerMatches'));
  hm?.forEach((item, i) => {
    const ip = childPath(childPath(path, 'headerMatches'), i);
    const m = readObject(ctx, item, ip, {
      name: true,
      value: true,
      secret: 'secret is not supported: Membrane cannot read Kubernetes secrets for header matches',
      mismatch: 'mismatch is not supported: header rewriting on mismatch is not supported by Membrane',
    });
    if (!m) return;
    const name = readString(ctx, m.name, childPath(ip, 'name'));
    const value = readString(ctx, m.value, childPath(ip, 'value'));
    if (!name) ctx.error(childPath(ip, 'name'), 'required: a header match needs a name');
    else headers.push(value ? { name, value } : { name });
  });
  if (headers.length > 0) rule.headers = headers;
  return rule;
}

/** `rules.kafka[i]` (reference §1.10), validated by `l7/kafka.ts`. */
function readKafkaRule(ctx: Ctx, v: unknown, path: string): KafkaRule {
  const o = readObject(ctx, v, path, { role: true, apiKey: true, apiVersion: true, clientID: true, topic: true });
  const rule: KafkaRule = {};
  if (!o) return rule;
  for (const f of ['role', 'apiKey', 'apiVersion', 'clientID', 'topic'] as const) {
    const s = readString(ctx, o[f], childPath(path, f));
    if (s) rule[f] = s;
  }
  const err = validateKafkaRule(rule);
  if (err) ctx.error(path, err);
  return rule;
}

/** `icmps[i]`: `{fields: [{family, type}]}` → a PortRule of ICMP/ICMPV6 types (reference §1.11). */
function readIcmpRule(ctx: Ctx, v: unknown, path: string): PortRule | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, { fields: true });
  if (!o) return undefined;
  const fp = childPath(path, 'fields');
  const fields = readList(ctx, o.fields, fp) ?? [];
  if (fields.length > MAX_PORTS) ctx.error(fp, `too many ICMP fields: ${fields.length} (at most ${MAX_PORTS})`);
  const ports: PortProtocol[] = [];
  fields.forEach((f, i) => {
    const ip = childPath(fp, i);
    const fo = readObject(ctx, f, ip, { family: true, type: true });
    if (!fo) return;
    const famText = readString(ctx, fo.family, childPath(ip, 'family')) ?? 'IPv4';
    const family = famText === '' ? 'IPv4' : famText;
    if (family !== 'IPv4' && family !== 'IPv6') {
      ctx.error(childPath(ip, 'family'), `invalid family ${JSON.stringify(famText)}: must be IPv4 or IPv6`);
      return;
    }
    if (isAbsent(fo.type)) {
      ctx.error(childPath(ip, 'type'), 'required');
      return;
    }
    if (typeof fo.type !== 'number' && typeof fo.type !== 'string') {
      ctx.error(childPath(ip, 'type'), `must be an integer or a type name, got ${typeName(fo.type)}`);
      return;
    }
    const n = icmpTypeNumber(family, fo.type);
    if (typeof n === 'string') ctx.error(childPath(ip, 'type'), n);
    else ports.push({ port: n, protocol: family === 'IPv4' ? 'ICMP' : 'ICMPV6' });
  });
  if (ctx.errorCount > before) return undefined;
  return { ports };
}
