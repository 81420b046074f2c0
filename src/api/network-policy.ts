// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/network-policy
 *
 * Kubernetes NetworkPolicy (`networking.k8s.io/v1`) → one sanitized {@link Rule}
 * (reference §2.14, Cilium `pkg/k8s/network_policy.go`):
 * 1. subject = `podSelector` (keys with `k8s:` source) + `k8s:io.kubernetes.pod.namespace In [ns]`;
 * 2. policyTypes (defaulted as the API server does: `Ingress`, plus `Egress` when `egress` rules
 *    exist): ingress is enforced when `Ingress` is listed or `Egress` is not; egress only when
 *    `Egress` is listed; an enforced direction without rules denies all (hasX, no rules);
 * 3. each rule × each peer → one DirectionalRule with the rule's ports; a rule without peers
 *    allows every peer (a wildcard selector with field `networkpolicy`, including world and host);
 * 4. peers: podSelector alone → same namespace; namespaceSelector → keys
 *    `k8s:io.cilium.k8s.namespace.labels.<key>` (`{}` → pod namespace Exists); both → AND;
 *    pod/namespace peers get `k8s:io.cilium.k8s.policy.cluster In [default]` and field
 *    `endpoints` (so 1.18 fromRequires narrow them, as in Cilium); ipBlock → CIDR peer;
 * 5. ports: protocol default TCP, missing port = 0 (all ports), endPort kept, named ports allowed;
 * 6. every rule is an allow rule; default deny both ways.
 */
import { cidrPeer, readExcepts, readPrefix } from './cidr-peer.ts';
import { parsePortString } from './ports.ts';
import { childPath, Ctx, isAbsent, readInt, readList, readObject, readString, typeName } from './schema.ts';
import {
  CLUSTER_LABEL,
  LOCAL_CLUSTER,
  NAMESPACE_LABELS_PREFIX,
  POD_NAMESPACE_LABEL,
  readSelector,
  selectorOf,
  splitKey,
} from './selector.ts';
import type { DirectionalRule, L4Protocol, LabelRequirement, PeerSelector, PortProtocol, PortRule, Rule } from './types.ts';
import type { PolicyEnv } from './validate.ts';

const NP_PROTOCOLS = ['TCP', 'UDP', 'SCTP'];

/**
 * Validates a NetworkPolicy object's spec and translates it.
 *
 * @param ctx problem collector of the object
 * @param obj the whole object (envelope already checked)
 * @param env kind, name, namespace and origin
 * @returns the rule (one per NetworkPolicy), or none on error
 */
export function translateNetworkPolicy(ctx: Ctx, obj: Record<string, unknown>, env: PolicyEnv): Rule[] {
  const before = ctx.errorCount;
  const namespace = env.namespace ?? 'default';
  if (isAbsent(obj.spec)) {
    ctx.error('spec', 'required');
    return [];
  }
  const spec = readObject(ctx, obj.spec, 'spec', { podSelector: true, ingress: true, egress: true, policyTypes: true });
  if (!spec) return [];

  // 1. subject
  const podSel = readSelector(ctx, isAbsent(spec.podSelector) ? {} : spec.podSelector, 'spec.podSelector', 'k8s');
  const subject = podSel
    ? selectorOf([...podSel.requirements, { key: `k8s:${POD_NAMESPACE_LABEL}`, operator: 'In', values: [namespace] }])
    : undefined;

  // 2. policyTypes
  const ingressList = readList(ctx, spec.ingress, 'spec.ingress');
  const egressList = readList(ctx, spec.egress, 'spec.egress');
  let types: string[];
  const typesList = readList(ctx, spec.policyTypes, 'spec.policyTypes');
  if (typesList) {
    types = [];
    typesList.forEach((t, i) => {
      const tp = childPath('spec.policyTypes', i);
      if (t !== 'Ingress' && t !== 'Egress') {
        ctx.error(tp, `invalid policy type ${typeof t === 'string' ? JSON.stringify(t) : typeName(t)}: must be Ingress or Egress`);
      } else if (types.includes(t)) ctx.error(tp, `duplicate policy type ${t}`);
      else types.push(t);
    });
  } else {
    types = ['Ingress', ...(egressList && egressList.length > 0 ? ['Egress'] : [])];
  }
  const ingressEnforced = types.includes('Ingress') || !types.includes('Egress');
  const egressEnforced = types.includes('Egress');
  if (!ingressEnforced && ingressList && ingressList.length > 0) {
    ctx.warning('spec.ingress', 'ignored: policyTypes does not include Ingress');
  }
  if (!egressEnforced && egressList && egressList.length > 0) {
    ctx.warning('spec.egress', 'ignored: policyTypes does not include Egress');
  }

  // 3. rules
  const ingress: DirectionalRule[] = [];
  const egress: DirectionalRule[] = [];
  ingressList?.forEach((r, i) => {
    const out = readNpRule(ctx, r, childPath('spec.ingress', i), 'from', namespace);
    if (ingressEnforced) ingress.push(...out);
  });
  egressList?.forEach((r, i) => {
    const out = readNpRule(ctx, r, childPath('spec.egress', i), 'to', namespace);
    if (egressEnforced) egress.push(...out);
  });
  if (ctx.errorCount > before || !subject) return [];
  return [
    {
      origin: { ...env.origin },
      subject,
      namespace,
      ingress,
      egress,
      hasIngress: ingressEnforced,
      hasEgress: egressEnforced,
      defaultDeny: { ingress: true, egress: true },
      path: 'spec',
    },
  ];
}

/** One ingress/egress rule → one DirectionalRule per peer (rule 3). */
function readNpRule(ctx: Ctx, v: unknown, path: string, peerField: 'from' | 'to', namespace: string): DirectionalRule[] {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, { [peerField]: true, ports: true });
  if (!o) return [];
  const portsPath = childPath(path, 'ports');
  const portList = readList(ctx, o.ports, portsPath) ?? [];
  const ports: PortProtocol[] = [];
  portList.forEach((p, i) => {
    const pp = readNpPort(ctx, p, childPath(portsPath, i));
    if (pp) ports.push(pp);
  });
  const toPorts: PortRule[] = ports.length > 0 ? [{ ports }] : [];
  const peersPath = childPath(path, peerField);
  const peerList = readList(ctx, o[peerField], peersPath) ?? [];
  const location = (p: string) => ({ file: ctx.file, line: ctx.line(p) });
  const out: DirectionalRule[] = [];
  if (peerList.length === 0) {
    out.push({
      deny: false,
      peers: [{ type: 'labels', field: 'networkpolicy', selector: { requirements: [] } }],
      toPorts,
      requires: [],
      path,
      location: location(path),
    });
  }
  peerList.forEach((peer, i) => {
    const pp = childPath(peersPath, i);
    const sel = readNpPeer(ctx, peer, pp, namespace);
    if (sel) out.push({ deny: false, peers: [sel], toPorts, requires: [], path: pp, location: location(pp) });
  });
  return ctx.errorCount > before ? [] : out;
}

/** A NetworkPolicyPeer (rule 4). */
function readNpPeer(ctx: Ctx, v: unknown, path: string, namespace: string): PeerSelector | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, { podSelector: true, namespaceSelector: true, ipBlock: true });
  if (!o) return undefined;
  const has = (f: string) => !isAbsent(o[f]);
  if (has('ipBlock')) {
    if (has('podSelector') || has('namespaceSelector')) {
      ctx.error(path, 'may not specify more than 1 peer type: ipBlock cannot be combined with podSelector or namespaceSelector');
      return undefined;
    }
    const bp = childPath(path, 'ipBlock');
    const b = readObject(ctx, o.ipBlock, bp, { cidr: true, except: true });
    if (!b) return undefined;
    const s = readString(ctx, b.cidr, childPath(bp, 'cidr'));
    if (isAbsent(b.cidr) || s === '') ctx.error(childPath(bp, 'cidr'), 'required');
    const prefix = s ? readPrefix(ctx, s, childPath(bp, 'cidr')) : undefined;
    const excepts = readExcepts(ctx, b.except, childPath(bp, 'except'), prefix);
    if (!prefix || ctx.errorCount > before) return undefined;
    return cidrPeer(prefix, excepts);
  }
  if (!has('podSelector') && !has('namespaceSelector')) {
    ctx.error(path, 'must specify a peer: one of podSelector, namespaceSelector or ipBlock');
    return undefined;
  }
  const reqs: LabelRequirement[] = [];
  if (has('podSelector')) {
    const s = readSelector(ctx, o.podSelector, childPath(path, 'podSelector'), 'k8s');
    if (s) reqs.push(...s.requirements);
  }
  if (has('namespaceSelector')) {
    const s = readSelector(ctx, o.namespaceSelector, childPath(path, 'namespaceSelector'), 'k8s');
    if (s) {
      if (s.requirements.length === 0) reqs.push({ key: `k8s:${POD_NAMESPACE_LABEL}`, operator: 'Exists', values: [] });
      for (const r of s.requirements) reqs.push({ ...r, key: `k8s:${NAMESPACE_LABELS_PREFIX}${splitKey(r.key).key}` });
    }
  } else {
    reqs.push({ key: `k8s:${POD_NAMESPACE_LABEL}`, operator: 'In', values: [namespace] });
  }
  reqs.push({ key: `k8s:${CLUSTER_LABEL}`, operator: 'In', values: [LOCAL_CLUSTER] });
  if (ctx.errorCount > before) return undefined;
  return { type: 'labels', field: 'endpoints', selector: selectorOf(reqs) };
}

/** A NetworkPolicyPort (rule 5): `{protocol, port, endPort}`. */
function readNpPort(ctx: Ctx, v: unknown, path: string): PortProtocol | undefined {
  const before = ctx.errorCount;
  const o = readObject(ctx, v, path, { protocol: true, port: true, endPort: true });
  if (!o) return undefined;
  const protoText = readString(ctx, o.protocol, childPath(path, 'protocol')) ?? 'TCP';
  if (!NP_PROTOCOLS.includes(protoText)) {
    ctx.error(childPath(path, 'protocol'), `unsupported protocol ${JSON.stringify(protoText)}: must be TCP, UDP or SCTP`);
  }
  let port = 0;
  let name: string | undefined;
  const pp = childPath(path, 'port');
  if (typeof o.port === 'number') {
    if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) ctx.error(pp, `must be between 1 and 65535, got ${o.port}`);
    else port = o.port;
  } else if (typeof o.port === 'string') {
    const parsed = parsePortString(o.port);
    if (typeof parsed === 'string') ctx.error(pp, parsed);
    else if (parsed.name === undefined) {
      // A numeric string is an IntOrString holding a string: Kubernetes treats it as a port name and rejects it.
      ctx.error(pp, `invalid port name ${JSON.stringify(o.port)}: a port number must be an integer, not a string`);
    } else {
      name = parsed.name;
      if (o.port !== parsed.name) ctx.error(pp, `invalid port name ${JSON.stringify(o.port)}: must be lower case`);
    }
  } else if (!isAbsent(o.port)) {
    ctx.error(pp, `must be an integer or a port name, got ${typeName(o.port)}`);
  }
  const endPort = readInt(ctx, o.endPort, childPath(path, 'endPort'));
  if (endPort !== undefined) {
    if (port === 0) ctx.error(childPath(path, 'endPort'), 'may only be specified with a numeric port');
    else if (endPort < port || endPort > 65535) ctx.error(childPath(path, 'endPort'), `must be between port (${port}) and 65535`);
  }
  if (ctx.errorCount > before) return undefined;
  return {
    port,
    ...(endPort !== undefined && endPort > port ? { endPort } : {}),
    ...(name !== undefined ? { name } : {}),
    protocol: protoText as L4Protocol,
  };
}
