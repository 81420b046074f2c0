// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/trace
 *
 * Offline verdict of one flow, down to L7 (DESIGN §3.2). Policy applies on both sides: the
 * source endpoint's egress and the destination endpoint's ingress, each decided exactly as the
 * datapath decides it from that endpoint's MapState (reference §2.3, §2.5), then, when the
 * entry redirects to a proxy, by the L7 rules the proxy would apply for that peer and port
 * (§2.7: every allow rule for the peer on the port counts; one without L7 rules allows all).
 */
import { HttpRuleSet, type HttpRequestInfo } from '../l7/http.ts';
import { DnsRuleSet } from '../l7/dns.ts';
import { KafkaRuleSet, type KafkaRequestInfo } from '../l7/kafka.ts';
import { ID_HOST } from '../identity/reserved.ts';
import type { PolicyEngine, EngineEndpoint } from './engine.ts';
import type { L4Filter, PerSelectorPolicy } from './l4-filter.ts';
import type { NamedPortResolver } from './map-state.ts';
import {
  ORIGIN_ALLOW_LOCALHOST,
  ORIGIN_NO_DEFAULT_DENY,
  PROTO_ANY,
  isSyntheticOrigin,
  keyString,
  protoName,
  type Direction,
  type L7Parser,
} from './types.ts';

/** A flow end: an endpoint, an IP address, or the node itself. */
export type FlowPeer = { kind: 'endpoint'; endpoint: EngineEndpoint } | { kind: 'ip'; ip: string } | { kind: 'host' };

export interface TraceInput {
  from: FlowPeer;
  to: FlowPeer;
  proto: number;
  /** Destination port, or ICMP type. */
  port: number;
  http?: HttpRequestInfo;
  dns?: string;
  kafka?: KafkaRequestInfo;
  /** Global audit mode. */
  audit?: boolean;
}

export type Verdict = 'allowed' | 'denied' | 'audit';

/** One side of the decision, as in the `--json` contract. */
export interface TraceSide {
  enforced: boolean;
  verdict: Verdict;
  redirected: boolean;
  l7: 'allowed' | 'denied' | 'not-evaluated' | null;
  allowedBy: string[];
  deniedBy: string[];
  reason: string;
  /** Readable steps for the human output (not part of the JSON contract). */
  steps: string[];
  /** Map key that decided, if any (for debugging and golden tests). */
  matchedKey?: string;
}

export interface TraceResult {
  verdict: Verdict;
  egress: TraceSide;
  ingress: TraceSide;
  sourceIdentity: number;
  destinationIdentity: number;
}

function peerIdentity(engine: PolicyEngine, p: FlowPeer): number {
  if (p.kind === 'endpoint') return p.endpoint.identity.id;
  if (p.kind === 'host') return ID_HOST;
  return engine.identityOfIp(p.ip);
}

function describePeer(p: FlowPeer): string {
  if (p.kind === 'endpoint') return p.endpoint.ref;
  if (p.kind === 'host') return 'host';
  return p.ip;
}

function policies(origins: Iterable<string>): string[] {
  return [...new Set([...origins].filter((o) => !isSyntheticOrigin(o)))].sort();
}

function notEnforced(reason: string): TraceSide {
  return { enforced: false, verdict: 'allowed', redirected: false, l7: null, allowedBy: [], deniedBy: [], reason, steps: [reason] };
}

/**
 * Traces a flow.
 * @param engine the policy engine holding endpoints and policies
 * @param input the flow
 * @throws PolicyMergeError if an involved endpoint's policy cannot be computed
 */
export function traceFlow(engine: PolicyEngine, input: TraceInput): TraceResult {
  const srcId = peerIdentity(engine, input.from);
  const dstId = peerIdentity(engine, input.to);
  const egress =
    input.from.kind === 'endpoint'
      ? traceSide(engine, input.from.endpoint, 'egress', dstId, describePeer(input.to), input)
      : notEnforced(input.from.kind === 'host' ? 'source is the node (host): no egress policy applies' : `source ${describePeer(input.from)} is not a local endpoint: no egress policy applies`);
  const ingress =
    input.to.kind === 'endpoint'
      ? traceSide(engine, input.to.endpoint, 'ingress', srcId, describePeer(input.from), input)
      : notEnforced(input.to.kind === 'host' ? 'destination is the node (host): no ingress policy applies' : `destination ${describePeer(input.to)} is not a local endpoint: no ingress policy applies`);
  const verdict: Verdict = egress.verdict === 'denied' || ingress.verdict === 'denied' ? 'denied' : egress.verdict === 'audit' || ingress.verdict === 'audit' ? 'audit' : 'allowed';
  return { verdict, egress, ingress, sourceIdentity: srcId, destinationIdentity: dstId };
}

function originText(origins: string[]): string {
  const real = policies(origins);
  if (real.length > 0) return real.join(', ');
  if (origins.includes(ORIGIN_ALLOW_LOCALHOST)) return 'allow-localhost (the node may reach its local endpoints)';
  if (origins.includes(ORIGIN_NO_DEFAULT_DENY)) return 'no default deny (every selecting rule has enableDefaultDeny: false)';
  return origins.join(', ');
}

function traceSide(engine: PolicyEngine, ep: EngineEndpoint, dir: Direction, peer: number, peerText: string, input: TraceInput): TraceSide {
  const view = engine.endpointPolicy(ep.ref);
  const dp = view.selectorPolicy[dir];
  const audit = !!(input.audit || ep.spec.audit);
  const what = `${dir} of ${ep.ref} (identity ${ep.identity.id}) for peer ${peerText} (identity ${peer}), ${protoName(input.proto)}/${input.port}`;
  if (!dp.enforced) return notEnforced(`no policy selects ${ep.ref} for ${dir}: not enforced, allowed`);
  const steps = [`${what}: selected by ${dp.selectedBy.join(', ')}; ${dp.defaultDeny ? 'default deny' : 'no default deny'}`];
  const withAudit = (side: TraceSide): TraceSide => {
    if (side.verdict === 'denied' && audit) {
      side.verdict = 'audit';
      side.reason += ' (audit mode: would be denied, passed)';
      side.steps.push('audit mode: the denial is reported, the flow passes');
    }
    return side;
  };
  const { match } = view.mapState.lookup(dir, peer, input.proto, input.port);
  if (!match) {
    steps.push('no map entry matches: default deny');
    return withAudit({ enforced: true, verdict: 'denied', redirected: false, l7: null, allowedBy: [], deniedBy: [], reason: 'default deny', steps });
  }
  const matchedKey = keyString(match.key);
  if (match.entry.deny) {
    const by = policies(match.entry.derivedFrom);
    steps.push(`entry ${matchedKey} denies (deny rules take precedence): ${by.join(', ')}`);
    return withAudit({ enforced: true, verdict: 'denied', redirected: false, l7: null, allowedBy: [], deniedBy: by, reason: `denied by ${by.join(', ')}`, steps, matchedKey });
  }
  const allowedBy = policies(match.entry.derivedFrom);
  steps.push(`entry ${matchedKey} allows: ${originText(match.entry.derivedFrom)}`);
  if (!match.entry.redirect) {
    return { enforced: true, verdict: 'allowed', redirected: false, l7: null, allowedBy, deniedBy: [], reason: `allowed by ${originText(match.entry.derivedFrom)}`, steps, matchedKey };
  }
  const parser = match.entry.redirect;
  steps.push(`the flow is redirected to the ${parser} proxy`);
  const l7 = evaluateL7(engine, ep, dir, peer, input, parser, view.selectorPolicy[dir].filters);
  if (l7 === null) {
    steps.push(`no ${parser} request given: L7 not evaluated`);
    return { enforced: true, verdict: 'allowed', redirected: true, l7: 'not-evaluated', allowedBy, deniedBy: [], reason: `allowed at L3/L4 by ${originText(match.entry.derivedFrom)}; redirected to the ${parser} proxy, L7 not evaluated`, steps, matchedKey };
  }
  steps.push(l7.detail);
  if (l7.allowed) {
    return { enforced: true, verdict: 'allowed', redirected: true, l7: 'allowed', allowedBy: l7.by, deniedBy: [], reason: `L7 allowed by ${originText(l7.by.length ? l7.by : l7.origins)}: ${l7.detail}`, steps, matchedKey };
  }
  return withAudit({ enforced: true, verdict: 'denied', redirected: true, l7: 'denied', allowedBy: [], deniedBy: l7.by, reason: `L7 denied: ${l7.detail}`, steps, matchedKey });
}

/** Does a filter apply to (proto, port) for this peer? Named ports resolve as in map-state. */
function filterApplies(f: L4Filter, proto: number, port: number, dir: Direction, peer: number, ports: NamedPortResolver): boolean {
  if (f.port.proto === PROTO_ANY) return true;
  if (f.port.proto !== proto) return false;
  if (f.port.name) {
    const resolved = dir === 'ingress' ? ports.own(f.port.name, proto) : ports.peer(peer, f.port.name, proto);
    return resolved.includes(port);
  }
  if (f.port.port === 0) return true;
  return port >= f.port.port && port <= Math.max(f.port.port, f.port.endPort);
}

interface L7Outcome {
  allowed: boolean;
  /** Policies that allowed it, or (when denied) whose L7 rules were evaluated. */
  by: string[];
  origins: string[];
  detail: string;
}

function evaluateL7(
  engine: PolicyEngine,
  ep: EngineEndpoint,
  dir: Direction,
  peer: number,
  input: TraceInput,
  parser: L7Parser,
  filters: Map<string, L4Filter>,
): L7Outcome | null {
  const request = parser === 'http' ? input.http : parser === 'dns' ? input.dns : input.kafka;
  if (request === undefined) return null;
  const ports = engine.portResolver(ep);
  const applicable: PerSelectorPolicy[] = [];
  for (const f of filters.values()) {
    if (!filterApplies(f, input.proto, input.port, dir, peer, ports)) continue;
    for (const { selector, policy } of f.perSelector.values()) {
      if (policy.deny) continue;
      if (selector.wildcard || selector.selections.has(peer)) applicable.push(policy);
    }
  }
  // 1. an allow rule without L7 rules for this peer and port allows every request (§2.7)
  const plain = applicable.filter((p) => p.parser === null || p.wildcardL7.length > 0);
  if (plain.length > 0) {
    const origins = plain.flatMap((p) => (p.parser === null ? [...p.derivedFrom] : p.wildcardL7));
    return { allowed: true, by: policies(origins), origins, detail: `a rule without L7 restrictions applies (${originText(origins)})` };
  }
  const l7Policies = policies(applicable.flatMap((p) => [...p.derivedFrom]));
  // 2. otherwise any matching L7 rule allows
  if (parser === 'http') {
    const rules = applicable.flatMap((p) => p.http);
    const req = input.http!;
    const set = new HttpRuleSet(rules.map((r) => r.rule));
    const res = set.matches(req);
    const desc = `HTTP ${req.method} ${req.path}${req.host ? ` (host ${req.host})` : ''}`;
    if (res.allowed && res.ruleIndex !== null) {
      const o = rules[res.ruleIndex]!.origin;
      return { allowed: true, by: [o], origins: [o], detail: `${desc} matches rule ${JSON.stringify(rules[res.ruleIndex]!.rule)} of ${o}` };
    }
    return { allowed: false, by: l7Policies, origins: l7Policies, detail: `${desc} matches no HTTP rule of ${l7Policies.join(', ')}` };
  }
  if (parser === 'dns') {
    const rules = applicable.flatMap((p) => p.dns);
    const res = new DnsRuleSet(rules.map((r) => r.rule)).matches(input.dns!);
    if (res.allowed && res.ruleIndex !== null) {
      const o = rules[res.ruleIndex]!.origin;
      return { allowed: true, by: [o], origins: [o], detail: `DNS query ${input.dns} matches ${JSON.stringify(rules[res.ruleIndex]!.rule)} of ${o}` };
    }
    return { allowed: false, by: l7Policies, origins: l7Policies, detail: `DNS query ${input.dns} matches no DNS rule of ${l7Policies.join(', ')} (answered REFUSED)` };
  }
  const rules = applicable.flatMap((p) => p.kafka);
  const req = input.kafka!;
  const res = new KafkaRuleSet(rules.map((r) => r.rule)).matches(req);
  const desc = `Kafka apiKey ${req.apiKey}${req.topics.length ? ` topics ${req.topics.join(',')}` : ''}`;
  if (res.allowed) {
    const by = policies(res.ruleIndexes.map((i) => rules[i]!.origin));
    return { allowed: true, by, origins: by, detail: `${desc} allowed by Kafka rules of ${by.join(', ')}` };
  }
  return {
    allowed: false,
    by: l7Policies,
    origins: l7Policies,
    detail: `${desc} matches no Kafka rule of ${l7Policies.join(', ')}${res.remainingTopics.length ? ` (topics not allowed: ${res.remainingTopics.join(',')})` : ''}`,
  };
}
