// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/l7-policy
 *
 * The L7 policy of local endpoints in a serialisable form, and the one decision function that
 * both `policy trace` and the proxy use (so they cannot disagree). It plays the role of
 * Cilium's NPDS: per endpoint, direction and port, the rules per remote identity set.
 *
 * Decision for a request on (endpoint, direction, peer identity, protocol, port), reference §2.7:
 * 1. collect every allow rule whose port matches and whose peers include the peer (or any peer);
 * 2. a rule without L7 rules, or with a wildcard L7 rule, allows every request;
 * 3. otherwise the request is allowed when any L7 rule of the collected rules matches it
 *    (Kafka: the topic set must be covered by the collected rules together, §4);
 * 4. nothing collected: denied (the datapath would not have redirected it).
 */
import type { DnsRule, HttpRule, KafkaRule } from '../api/types.ts';
import { DnsRuleSet } from '../l7/dns.ts';
import { HttpRuleSet, type HttpRequestInfo } from '../l7/http.ts';
import { KafkaRuleSet, type KafkaRequestInfo } from '../l7/kafka.ts';
import type { EngineEndpoint, PolicyEngine } from './engine.ts';
import type { OriginL7 } from './l4-filter.ts';
import { DIRECTIONS, PROTO_ANY, isSyntheticOrigin, type Direction, type L7Parser } from './types.ts';

/** One allow rule of one port, for a set of peer identities. */
export interface L7Rule {
  /** Peer identities, or 'any' (wildcard selector). */
  peers: number[] | 'any';
  parser: L7Parser | null;
  http: OriginL7<HttpRule>[];
  dns: OriginL7<DnsRule>[];
  kafka: OriginL7<KafkaRule>[];
  /** Origins of rules that allow every request (wildcard L7). */
  wildcardL7: string[];
  /** Policies the rule came from. */
  derivedFrom: string[];
}

/** The allow rules of one protocol and port range (named ports already resolved). */
export interface L7PortPolicy {
  /** 0 = any protocol (an L3-only rule). */
  proto: number;
  /** 0 = every port. */
  port: number;
  endPort: number;
  rules: L7Rule[];
}

export interface EndpointL7Policy {
  ref: string;
  ips: string[];
  identity: number;
  /** Audit mode of this endpoint (the endpoints file's `audit`). */
  audit: boolean;
  /** Whether each direction is enforced (some policy selects the endpoint for it). */
  ingressEnforced: boolean;
  egressEnforced: boolean;
  ingress: L7PortPolicy[];
  egress: L7PortPolicy[];
}

/** What the agent sends the proxy. */
export interface L7PolicySnapshot {
  revision: number;
  endpoints: EndpointL7Policy[];
  /** Global audit mode (`membrane agent --audit`). */
  globalAudit: boolean;
}

/**
 * The L7 policy of one endpoint: every allow rule of both directions, with named ports
 * resolved as the datapath resolved them.
 * @throws PolicyMergeError when the endpoint's policy cannot be computed
 */
export function endpointL7Policy(engine: PolicyEngine, ep: EngineEndpoint): EndpointL7Policy {
  const view = engine.endpointPolicy(ep.ref);
  const ports = engine.portResolver(ep);
  const out: EndpointL7Policy = {
    ref: ep.ref,
    ips: ep.spec.ips,
    identity: ep.identity.id,
    audit: !!ep.spec.audit,
    ingressEnforced: view.selectorPolicy.ingress.enforced,
    egressEnforced: view.selectorPolicy.egress.enforced,
    ingress: [],
    egress: [],
  };
  for (const dir of DIRECTIONS) {
    for (const f of view.selectorPolicy[dir].filters.values()) {
      // (port spec) → rules; named ports may resolve to different ports per peer
      const byPort = new Map<string, L7PortPolicy>();
      const put = (port: number, endPort: number, rule: L7Rule) => {
        const k = `${port}-${endPort}`;
        let pp = byPort.get(k);
        if (!pp) byPort.set(k, (pp = { proto: f.port.proto, port, endPort, rules: [] }));
        pp.rules.push(rule);
      };
      for (const { selector, policy } of f.perSelector.values()) {
        if (policy.deny) continue;
        const base = {
          parser: policy.parser,
          http: policy.http,
          dns: policy.dns,
          kafka: policy.kafka,
          wildcardL7: policy.wildcardL7,
          derivedFrom: [...policy.derivedFrom].sort(),
        };
        if (!f.port.name) {
          put(f.port.port, Math.max(f.port.port, f.port.endPort), { ...base, peers: selector.wildcard ? 'any' : [...selector.selections] });
          continue;
        }
        if (dir === 'ingress' || selector.wildcard) {
          const resolved = dir === 'ingress' ? ports.own(f.port.name, f.port.proto) : ports.peer(0, f.port.name, f.port.proto);
          for (const p of resolved) put(p, p, { ...base, peers: selector.wildcard ? 'any' : [...selector.selections] });
          continue;
        }
        const perPort = new Map<number, number[]>();
        for (const id of selector.selections) {
          for (const p of ports.peer(id, f.port.name, f.port.proto)) {
            const list = perPort.get(p) ?? [];
            list.push(id);
            perPort.set(p, list);
          }
        }
        for (const [p, ids] of perPort) put(p, p, { ...base, peers: ids });
      }
      out[dir].push(...byPort.values());
    }
  }
  return out;
}

/**
 * The L7 policy of every endpoint, or of the endpoints named. Endpoints whose policy cannot be
 * computed are left out (the proxy keeps their last rules).
 */
export function buildL7Snapshot(engine: PolicyEngine, revision: number, globalAudit: boolean, refs?: Iterable<string>): L7PolicySnapshot {
  const endpoints: EndpointL7Policy[] = [];
  const wanted = refs ? new Set(refs) : null;
  for (const ep of engine.endpoints()) {
    if (wanted && !wanted.has(ep.ref)) continue;
    try {
      endpoints.push(endpointL7Policy(engine, ep));
    } catch {
      /* reported by the agent; the proxy keeps what it had */
    }
  }
  return { revision, endpoints, globalAudit };
}

/** A request as the proxy (or trace) sees it. */
export type L7Request = { type: 'http'; http: HttpRequestInfo } | { type: 'dns'; qname: string } | { type: 'kafka'; kafka: KafkaRequestInfo };

export interface L7Decision {
  allowed: boolean;
  /** Policies that allowed it; when denied, the policies whose L7 rules were evaluated. */
  by: string[];
  /** Raw origins behind the decision (may include synthetic ones such as allow-localhost). */
  origins: string[];
  /** One readable sentence. */
  detail: string;
}

function portMatches(pp: L7PortPolicy, proto: number, port: number): boolean {
  if (pp.proto === PROTO_ANY) return true;
  if (pp.proto !== proto) return false;
  if (pp.port === 0) return true;
  return port >= pp.port && port <= Math.max(pp.port, pp.endPort);
}

function policies(origins: Iterable<string>): string[] {
  return [...new Set([...origins].filter((o) => !isSyntheticOrigin(o)))].sort();
}

/**
 * Decides one request (numbered as in the module comment).
 * @param ep the local endpoint whose policy applies
 * @param dir its direction (ingress: the peer is the client; egress: the peer is the server)
 * @param peer the peer's identity
 */
export function decideL7(ep: EndpointL7Policy, dir: Direction, peer: number, proto: number, port: number, req: L7Request): L7Decision {
  // 1.
  const rules = ep[dir].filter((pp) => portMatches(pp, proto, port)).flatMap((pp) => pp.rules.filter((r) => r.peers === 'any' || r.peers.includes(peer)));
  if (rules.length === 0) return { allowed: false, by: [], origins: [], detail: `no rule of ${ep.ref} allows identity ${peer} on port ${port}` };
  // 2.
  const open = rules.filter((r) => r.parser === null || r.wildcardL7.length > 0);
  if (open.length > 0) {
    const origins = open.flatMap((r) => (r.parser === null ? r.derivedFrom : r.wildcardL7));
    return { allowed: true, by: policies(origins), origins, detail: `a rule without L7 restrictions applies (${describe(origins)})` };
  }
  const evaluated = policies(rules.flatMap((r) => r.derivedFrom));
  // 3.
  if (req.type === 'http') {
    const list = rules.flatMap((r) => r.http);
    const h = req.http;
    const res = new HttpRuleSet(list.map((r) => r.rule)).matches(h);
    const desc = `HTTP ${h.method} ${h.path}${h.host ? ` (host ${h.host})` : ''}`;
    if (res.allowed && res.ruleIndex !== null) {
      const o = list[res.ruleIndex]!.origin;
      return { allowed: true, by: [o], origins: [o], detail: `${desc} matches rule ${JSON.stringify(list[res.ruleIndex]!.rule)} of ${o}` };
    }
    return { allowed: false, by: evaluated, origins: evaluated, detail: `${desc} matches no HTTP rule of ${evaluated.join(', ')}` };
  }
  if (req.type === 'dns') {
    const list = rules.flatMap((r) => r.dns);
    const res = new DnsRuleSet(list.map((r) => r.rule)).matches(req.qname);
    if (res.allowed && res.ruleIndex !== null) {
      const o = list[res.ruleIndex]!.origin;
      return { allowed: true, by: [o], origins: [o], detail: `DNS query ${req.qname} matches ${JSON.stringify(list[res.ruleIndex]!.rule)} of ${o}` };
    }
    return { allowed: false, by: evaluated, origins: evaluated, detail: `DNS query ${req.qname} matches no DNS rule of ${evaluated.join(', ')}` };
  }
  const list = rules.flatMap((r) => r.kafka);
  const k = req.kafka;
  const res = new KafkaRuleSet(list.map((r) => r.rule)).matches(k);
  const desc = `Kafka apiKey ${k.apiKey}${k.topics.length ? ` topics ${k.topics.join(',')}` : ''}`;
  if (res.allowed) {
    const by = policies(res.ruleIndexes.map((i) => list[i]!.origin));
    return { allowed: true, by, origins: by, detail: `${desc} allowed by Kafka rules of ${by.join(', ')}` };
  }
  return {
    allowed: false,
    by: evaluated,
    origins: evaluated,
    detail: `${desc} matches no Kafka rule of ${evaluated.join(', ')}${res.remainingTopics.length ? ` (topics not allowed: ${res.remainingTopics.join(',')})` : ''}`,
  };
}

function describe(origins: string[]): string {
  const real = policies(origins);
  if (real.length) return real.join(', ');
  return origins.map((o) => (o === '<allow-localhost>' ? 'allow-localhost' : o === '<enableDefaultDeny=false>' ? 'no default deny' : o)).join(', ');
}
