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
import type { HttpRequestInfo } from '../l7/http.ts';
import type { KafkaRequestInfo } from '../l7/kafka.ts';
import { decideL7, type L7Request } from '../l7/policy.ts';
import { endpointL7Policy } from './l7-policy.ts';
import { ID_HOST } from '../identity/reserved.ts';
import type { PolicyEngine, EngineEndpoint } from './engine.ts';
import { ORIGIN_ALLOW_LOCALHOST, ORIGIN_NO_DEFAULT_DENY, isSyntheticOrigin, keyString, protoName, type Direction } from './types.ts';

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
  return { enforced: false, verdict: 'allowed', redirected: false, l7: null, allowedBy: [], deniedBy: [], reason, steps: [] };
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
  if (!dp.enforced) return notEnforced(`no policy selects ${ep.ref} for ${dir}`);
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
  const request: L7Request | undefined =
    parser === 'http' ? input.http && { type: 'http', http: input.http } : parser === 'dns' ? input.dns !== undefined ? { type: 'dns', qname: input.dns } : undefined : input.kafka && { type: 'kafka', kafka: input.kafka };
  if (!request) {
    steps.push(`no ${parser} request given: L7 not evaluated`);
    return { enforced: true, verdict: 'allowed', redirected: true, l7: 'not-evaluated', allowedBy, deniedBy: [], reason: `allowed at L3/L4 by ${originText(match.entry.derivedFrom)}; redirected to the ${parser} proxy, L7 not evaluated`, steps, matchedKey };
  }
  const l7 = decideL7(endpointL7Policy(engine, ep), dir, peer, input.proto, input.port, request);
  steps.push(l7.detail);
  if (l7.allowed) {
    return { enforced: true, verdict: 'allowed', redirected: true, l7: 'allowed', allowedBy: l7.by, deniedBy: [], reason: `L7 allowed by ${originText(l7.by.length ? l7.by : l7.origins)}: ${l7.detail}`, steps, matchedKey };
  }
  return withAudit({ enforced: true, verdict: 'denied', redirected: true, l7: 'denied', allowedBy: [], deniedBy: l7.by, reason: `L7 denied: ${l7.detail}`, steps, matchedKey });
}
