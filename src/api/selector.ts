// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/selector
 *
 * Label selectors: validation (Kubernetes label-selector rules, reference §1.5) and
 * normalisation into {@link LabelSelector} (reference §2.1, §2.11):
 * 1. keys without a source get `any:`; `k8s:`, `reserved:`, `any:`, `cidr:`, `fqdn:`, `unspec:`,
 *    `container:` are kept; `$host` (any `$x`) is `reserved:host` (`reserved:x`);
 * 2. `matchLabels` entries become `In` with one value;
 * 3. requirements are deduplicated and sorted by key, operator, values (determinism).
 * Also: peer-selector scoping of `fromEndpoints`/`toEndpoints` and entity expansion.
 */
import { cidrText, parseCidr } from './cidr.ts';
import { childPath, Ctx, isAbsent, readList, readObject, readString, typeName } from './schema.ts';
import type { LabelRequirement, LabelSelector, SelectorOperator } from './types.ts';

/** Label sources kept as written (reference §1.5). */
export const LABEL_SOURCES: readonly string[] = ['k8s', 'reserved', 'any', 'cidr', 'fqdn', 'unspec', 'container'];

/** Pod namespace label key (without source). */
export const POD_NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
/** Cluster label key (without source). */
export const CLUSTER_LABEL = 'io.cilium.k8s.policy.cluster';
/** Prefix of namespace labels exposed on pods (without source). */
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
/** The cluster name in standalone mode (DESIGN §2). */
export const LOCAL_CLUSTER = 'default';

const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

/** How keys of a selector are encoded. */
export type KeyMode = 'cilium' | 'k8s';

/** Splits `source:key` (source defaults to `any`). */
export function splitKey(sourced: string): { source: string; key: string } {
  const i = sourced.indexOf(':');
  return i < 0 ? { source: 'any', key: sourced } : { source: sourced.slice(0, i), key: sourced.slice(i + 1) };
}

/**
 * Normalises one selector key (rule 1), reporting invalid keys.
 *
 * @returns the sourced key, or undefined when invalid
 */
export function normaliseKey(ctx: Ctx, raw: string, path: string, mode: KeyMode): string | undefined {
  if (raw === '' || /\s/.test(raw)) {
    ctx.error(path, `invalid label key ${JSON.stringify(raw)}: must be non-empty without whitespace`);
    return undefined;
  }
  if (mode === 'k8s') {
    if (raw.includes(':')) {
      ctx.error(path, `invalid label key ${JSON.stringify(raw)}: Kubernetes label keys may not contain ":"`);
      return undefined;
    }
    return `k8s:${raw}`;
  }
  if (raw.startsWith('$')) return `reserved:${raw.slice(1)}`;
  const colon = raw.indexOf(':');
  if (colon < 0) return `any:${raw}`;
  const source = raw.slice(0, colon);
  const key = raw.slice(colon + 1);
  if (source === 'cidrgroup') {
    ctx.error(path, `label source "cidrgroup" is not supported: CIDR groups are not supported by Membrane`);
    return undefined;
  }
  if (!LABEL_SOURCES.includes(source)) {
    ctx.error(path, `unknown label source ${JSON.stringify(source)} in key ${JSON.stringify(raw)} (known: ${LABEL_SOURCES.join(', ')})`);
    return undefined;
  }
  if (key === '') {
    ctx.error(path, `invalid label key ${JSON.stringify(raw)}: empty key after the source`);
    return undefined;
  }
  if (source === 'cidr') {
    const p = parseCidr(key);
    if (typeof p === 'string') {
      ctx.error(path, p);
      return undefined;
    }
    return `cidr:${cidrText(p)}`;
  }
  return `${source}:${key}`;
}

/** Sorts and deduplicates requirements (rule 3); values sorted and deduplicated. */
export function canonicalRequirements(reqs: readonly LabelRequirement[]): LabelRequirement[] {
  const seen = new Map<string, LabelRequirement>();
  for (const r of reqs) {
    const values = [...new Set(r.values)].sort();
    const norm: LabelRequirement = { key: r.key, operator: r.operator, values };
    seen.set(JSON.stringify(norm), norm);
  }
  return [...seen.values()].sort((a, b) =>
    a.key !== b.key
      ? a.key < b.key
        ? -1
        : 1
      : a.operator !== b.operator
        ? a.operator < b.operator
          ? -1
          : 1
        : JSON.stringify(a.values) < JSON.stringify(b.values)
          ? -1
          : JSON.stringify(a.values) > JSON.stringify(b.values)
            ? 1
            : 0,
  );
}

/** Builds a selector from requirements (canonical order). */
export function selectorOf(reqs: readonly LabelRequirement[]): LabelSelector {
  return { requirements: canonicalRequirements(reqs) };
}

/**
 * Validates and normalises an EndpointSelector / Kubernetes LabelSelector.
 * Operators are case-sensitive `In|NotIn|Exists|DoesNotExist`; values are required for
 * In/NotIn and forbidden for Exists/DoesNotExist (Kubernetes validation, reference §1.5).
 * Label values are not checked against the Kubernetes label-value syntax (a value such as
 * `{{.ClusterNameLocal}}` is a literal that simply matches no label).
 *
 * @param ctx problem collector
 * @param v the raw selector
 * @param path its field path
 * @param mode `cilium` (source prefixes, `any:` default) or `k8s` (NetworkPolicy: `k8s:` prefix)
 * @returns the normalised selector, or undefined when invalid
 */
export function readSelector(ctx: Ctx, v: unknown, path: string, mode: KeyMode): LabelSelector | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, { matchLabels: true, matchExpressions: true });
  if (!o) return undefined;
  const reqs: LabelRequirement[] = [];
  if (!isAbsent(o.matchLabels)) {
    const mlPath = childPath(path, 'matchLabels');
    const ml = readObject(ctx, o.matchLabels, mlPath);
    if (ml) {
      for (const [k, val] of Object.entries(ml)) {
        const p = childPath(mlPath, k);
        const key = normaliseKey(ctx, k, p, mode);
        const value = isAbsent(val) ? undefined : readString(ctx, val, p);
        if (isAbsent(val)) ctx.error(p, 'label value must be a string, got null');
        if (key !== undefined && value !== undefined) reqs.push({ key, operator: 'In', values: [value] });
      }
    }
  }
  const mePath = childPath(path, 'matchExpressions');
  const me = readList(ctx, o.matchExpressions, mePath);
  me?.forEach((item, i) => {
    const p = childPath(mePath, i);
    const e = readObject(ctx, item, p, { key: true, operator: true, values: true });
    if (!e) return;
    const rawKey = readString(ctx, e.key, childPath(p, 'key'));
    if (rawKey === undefined && isAbsent(e.key)) ctx.error(childPath(p, 'key'), 'required');
    const op = readString(ctx, e.operator, childPath(p, 'operator'));
    if (op === undefined && isAbsent(e.operator)) ctx.error(childPath(p, 'operator'), 'required');
    const values = isAbsent(e.values) ? undefined : readList(ctx, e.values, childPath(p, 'values'));
    const strValues: string[] = [];
    values?.forEach((x, j) => {
      if (typeof x === 'string') strValues.push(x);
      else ctx.error(childPath(childPath(p, 'values'), j), `must be a string, got ${typeName(x)}`);
    });
    let operator: SelectorOperator | undefined;
    if (op !== undefined) {
      if ((OPERATORS as readonly string[]).includes(op)) operator = op as SelectorOperator;
      else {
        const close = OPERATORS.find((x) => x.toLowerCase() === op.toLowerCase());
        ctx.error(
          childPath(p, 'operator'),
          `invalid operator ${JSON.stringify(op)}: must be one of In, NotIn, Exists, DoesNotExist (case-sensitive)${close ? `; did you mean ${JSON.stringify(close)}?` : ''}`,
        );
      }
    }
    if (operator === 'In' || operator === 'NotIn') {
      if (!values || values.length === 0) ctx.error(childPath(p, 'values'), `must be non-empty when operator is ${operator}`);
    } else if (operator !== undefined && values && values.length > 0) {
      ctx.error(childPath(p, 'values'), `may not be specified when operator is ${operator}`);
    }
    const key = rawKey === undefined ? undefined : normaliseKey(ctx, rawKey, childPath(p, 'key'), mode);
    if (key !== undefined && operator !== undefined) {
      reqs.push({ key, operator, values: operator === 'In' || operator === 'NotIn' ? strValues : [] });
    }
  });
  if (ctx.errorCount > before) return undefined;
  return selectorOf(reqs);
}

/** Whether a sourced key names `bare` with a `k8s:` or `any:` source. */
function isK8sOrAny(sourced: string, bare: string): boolean {
  return sourced === `k8s:${bare}` || sourced === `any:${bare}`;
}

/**
 * Scopes a `fromEndpoints`/`toEndpoints` selector (reference §2.1 step 2, `getEndpointSelector`):
 * 1. any `reserved:` key → untouched;
 * 2. no pod-namespace key (k8s:/any:): CNP → `k8s:io.kubernetes.pod.namespace In [ns]` unless a
 *    key starts with `io.cilium.k8s.namespace.labels.` (any source); CCNP → namespace Exists
 *    (unless the subject selects `reserved:init`);
 * 3. `k8s:io.cilium.k8s.policy.cluster In [default]` unless the selector names the cluster label.
 *
 * @param sel the normalised peer selector
 * @param namespace the CNP namespace, or undefined for a CCNP
 * @param subjectSelectsInit CCNP only: the subject selector requires `reserved:init`
 * @returns the scoped selector
 */
export function scopePeerSelector(sel: LabelSelector, namespace: string | undefined, subjectSelectsInit = false): LabelSelector {
  const keys = sel.requirements.map((r) => r.key);
  // 1.
  if (keys.some((k) => k.startsWith('reserved:'))) return sel;
  const add: LabelRequirement[] = [];
  // 2.
  if (!keys.some((k) => isK8sOrAny(k, POD_NAMESPACE_LABEL))) {
    if (namespace !== undefined) {
      if (!keys.some((k) => splitKey(k).key.startsWith(NAMESPACE_LABELS_PREFIX))) {
        add.push({ key: `k8s:${POD_NAMESPACE_LABEL}`, operator: 'In', values: [namespace] });
      }
    } else if (!subjectSelectsInit) {
      add.push({ key: `k8s:${POD_NAMESPACE_LABEL}`, operator: 'Exists', values: [] });
    }
  }
  // 3.
  if (!keys.some((k) => splitKey(k).key === CLUSTER_LABEL)) {
    add.push({ key: `k8s:${CLUSTER_LABEL}`, operator: 'In', values: [LOCAL_CLUSTER] });
  }
  return add.length === 0 ? sel : selectorOf([...sel.requirements, ...add]);
}

const exists = (key: string): LabelRequirement => ({ key, operator: 'Exists', values: [] });
const one = (key: string): LabelSelector => ({ requirements: [exists(key)] });

/** Reserved identities of the `cluster` and `cluster-mesh` entities. */
const CLUSTER_RESERVED = ['host', 'remote-node', 'init', 'ingress', 'health', 'unmanaged', 'kube-apiserver'];

/**
 * Entity name → selectors (reference §1.6). No namespace or cluster scoping is applied.
 * `cluster` names the local cluster `default` (DESIGN §2).
 */
export const ENTITY_SELECTORS: Readonly<Record<string, readonly LabelSelector[]>> = Object.freeze({
  all: [{ requirements: [] }],
  world: [one('reserved:world'), one('reserved:world-ipv4'), one('reserved:world-ipv6')],
  'world-ipv4': [one('reserved:world-ipv4')],
  'world-ipv6': [one('reserved:world-ipv6')],
  host: [one('reserved:host')],
  'remote-node': [one('reserved:remote-node')],
  'kube-apiserver': [one('reserved:kube-apiserver')],
  ingress: [one('reserved:ingress')],
  init: [one('reserved:init')],
  health: [one('reserved:health')],
  unmanaged: [one('reserved:unmanaged')],
  none: [one('reserved:none')],
  cluster: [
    ...CLUSTER_RESERVED.map((r) => one(`reserved:${r}`)),
    { requirements: [{ key: `k8s:${CLUSTER_LABEL}`, operator: 'In', values: [LOCAL_CLUSTER] }] },
  ],
  'cluster-mesh': [...CLUSTER_RESERVED.map((r) => one(`reserved:${r}`)), one(`k8s:${CLUSTER_LABEL}`)],
});
