// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/types
 *
 * The sanitized policy model: what `api/validate.ts` produces from CiliumNetworkPolicy,
 * CiliumClusterwideNetworkPolicy and NetworkPolicy objects, and what `src/policy` consumes.
 * Everything here is already validated and normalised (reference §1, §2.1, §2.14): label keys
 * carry their source prefix, the CNP namespace is injected, entities are expanded, ports are
 * numbers or lowercased names, protocols are upper-case. `src/policy` trusts this input.
 */

export type PolicyKind = 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy' | 'NetworkPolicy';

/** Where an object or a field came from, for errors and explanations. */
export interface SourceLocation {
  file: string;
  /** 1-based line, 0 when unknown. */
  line: number;
}

/** The object a rule came from. `ref` is `Kind/namespace/name`, or `Kind/name` when cluster-wide. */
export interface PolicyOrigin {
  kind: PolicyKind;
  /** Undefined for cluster-wide kinds. */
  namespace?: string;
  name: string;
  /** `Kind/namespace/name` or `Kind/name`; what trace and observe print as POLICY. */
  ref: string;
  location: SourceLocation;
  /** `spec.log.value` of the rule, copied into flows it decides. */
  log?: string;
}

/** Renders the POLICY reference used by trace and observe (DESIGN §3.2). */
export function policyRef(kind: PolicyKind, name: string, namespace?: string): string {
  return kind === 'CiliumClusterwideNetworkPolicy' ? `${kind}/${name}` : `${kind}/${namespace ?? 'default'}/${name}`;
}

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

/**
 * One requirement of a label selector. `key` always carries a source prefix
 * (`any:app`, `k8s:io.kubernetes.pod.namespace`, `reserved:world`, `cidr:10.0.0.0/8`).
 * `cidr:` keys match by prefix containment (reference §2.10).
 */
export interface LabelRequirement {
  key: string;
  operator: SelectorOperator;
  /** Sorted, deduplicated; empty for Exists/DoesNotExist. */
  values: string[];
}

/** A sanitized EndpointSelector: the AND of its requirements; no requirements = wildcard. */
export interface LabelSelector {
  requirements: LabelRequirement[];
}

/** Which API field a peer selector came from (for fromRequires, which only narrows endpoint peers). */
export type PeerField = 'endpoints' | 'entities' | 'cidr' | 'fqdns' | 'networkpolicy';

/**
 * An L3 peer selector.
 * - `labels`: matches identities by labels (endpoints, entities, NetworkPolicy peers). CIDR
 *   rules are also expressed as label selectors on `cidr:` keys (containment, except as
 *   DoesNotExist), so they never match cluster identities, which carry no cidr labels.
 * - `fqdn`: toFQDNs; matches FQDN identities carrying the selector's label (reference §2.10, §5.4).
 */
export type PeerSelector =
  | { type: 'labels'; field: PeerField; selector: LabelSelector }
  | { type: 'fqdn'; matchName?: string; matchPattern?: string };

export type L4Protocol = 'TCP' | 'UDP' | 'SCTP' | 'ANY' | 'ICMP' | 'ICMPV6';

/** One port of a PortRule. A named port has `port = 0` and `name` set (lowercased). */
export interface PortProtocol {
  port: number;
  /** Inclusive range end; undefined (or ≤ port) for a single port. */
  endPort?: number;
  name?: string;
  protocol: L4Protocol;
}

export interface HeaderMatch {
  name: string;
  /** Undefined = presence check; otherwise exact value. */
  value?: string;
}

export interface HttpRule {
  method?: string;
  path?: string;
  host?: string;
  headers?: HeaderMatch[];
}

export interface DnsRule {
  matchName?: string;
  matchPattern?: string;
}

export interface KafkaRule {
  role?: string;
  apiKey?: string;
  apiVersion?: string;
  clientID?: string;
  topic?: string;
}

/** L7 rules of one PortRule; at most one kind is set (validated). */
export interface L7Rules {
  http?: HttpRule[];
  dns?: DnsRule[];
  kafka?: KafkaRule[];
}

export interface PortRule {
  ports: PortProtocol[];
  rules?: L7Rules;
}

/**
 * One ingress/ingressDeny/egress/egressDeny element (or one translated NetworkPolicy peer).
 * L3 × L4 × L7 are ANDed.
 */
export interface DirectionalRule {
  deny: boolean;
  /**
   * L3 peers. `null` = the rule has no peer field: with ports it selects every peer
   * (including world and host); without ports it allows nothing (reference §2.4).
   * `[]` = an explicit empty list: selects nothing.
   */
  peers: PeerSelector[] | null;
  /** L4 (and L7 for allow rules). ICMP rules appear here with protocol ICMP/ICMPV6, port = type. Empty = L3 only. */
  toPorts: PortRule[];
  /** fromRequires/toRequires (1.18 semantics, §2.12): ANDed into every endpoint peer selector of every rule selecting the subject in this direction. */
  requires: LabelRequirement[];
  /** Field path inside the object, e.g. `spec.ingress[0]`, for explanations. */
  path: string;
  location: SourceLocation;
}

/** A sanitized rule: one `spec`/`specs[i]` of a CNP/CCNP, or one NetworkPolicy. */
export interface Rule {
  origin: PolicyOrigin;
  /** Subject selector, namespace already injected for namespaced kinds. */
  subject: LabelSelector;
  /** Namespace the rule is indexed under; undefined for cluster-wide rules. */
  namespace?: string;
  ingress: DirectionalRule[];
  egress: DirectionalRule[];
  /** Whether the rule has any ingress/ingressDeny (resp. egress/egressDeny) element: it then selects the subject for that direction. */
  hasIngress: boolean;
  hasEgress: boolean;
  /** enableDefaultDeny per direction after Sanitize (unset ⇒ true). */
  defaultDeny: { ingress: boolean; egress: boolean };
  /** `spec` / `specs[1]`: where in the object this rule is. */
  path: string;
  description?: string;
}

/** A problem found while loading or validating (DESIGN §3.3 prints these one per line). */
export interface Problem {
  file: string;
  line: number;
  /** `Kind/name` when the problem is inside an object, else undefined. */
  object?: string;
  /** Field path such as `spec.ingress[0].toPorts[0].ports[1].port`, or undefined. */
  field?: string;
  message: string;
  severity: 'error' | 'warning';
}

/** Renders a problem as `file:line: Kind/name: field.path: what is wrong` (DESIGN §3.3). */
export function formatProblem(p: Problem): string {
  const parts = [`${p.file}:${p.line}`];
  if (p.object) parts.push(p.object);
  if (p.field) parts.push(p.field);
  parts.push(p.message);
  return parts.join(': ');
}

/** The result of loading a set of policy paths. */
export interface LoadedPolicies {
  rules: Rule[];
  /** One entry per object that was accepted: its origin (for listing). */
  objects: PolicyOrigin[];
  problems: Problem[];
}
