// SPDX-License-Identifier: Apache-2.0
/**
 * @module l7/policy
 *
 * The L7 policy of local endpoints in a serialisable form (what the agent sends the proxy,
 * playing the role of Cilium's NPDS), and the one decision function that both `policy trace`
 * and the proxy use, so they cannot disagree. Pure.
 *
 * Decision for a request on (endpoint, direction, peer identity, protocol, port), reference §2.7:
 * 1. collect every allow rule whose port matches and whose peers include the peer (or any peer);
 * 2. a rule without L7 rules, or with a wildcard L7 rule, allows every request;
 * 3. otherwise the request is allowed when any L7 rule of the collected rules matches it
 *    (Kafka: the topic set must be covered by the collected rules together, §4);
 * 4. nothing collected: denied (the datapath would not have redirected it).
 */
import { DnsRuleSet, type DnsRuleSpec } from './dns.ts';
import type { FqdnIdentityTable } from './fqdn.ts';
import { HttpRuleSet, type HttpRequestInfo, type HttpRuleSpec } from './http.ts';
import { KafkaRuleSet, type KafkaRequestInfo, type KafkaRuleSpec } from './kafka.ts';

export type L7Parser = 'http' | 'dns' | 'kafka';
export type Direction = 'ingress' | 'egress';

/** An L7 rule with the policy it came from (for allowedBy). */
export interface OriginRule<T> {
  rule: T;
  origin: string;
}

const PROTO_ANY = 0;

/** Synthetic origins (entries the engine adds by itself) start with '<'. */
function isSyntheticOrigin(o: string): boolean {
  return o.startsWith('<');
}

/** One allow rule of one port, for a set of peer identities. */
export interface L7Rule {
  /** Peer identities, or 'any' (wildcard selector). */
  peers: number[] | 'any';
  parser: L7Parser | null;
  http: OriginRule<HttpRuleSpec>[];
  dns: OriginRule<DnsRuleSpec>[];
  kafka: OriginRule<KafkaRuleSpec>[];
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
  /** FQDN identities, for the DNS proxy's ipcache writes (src/l7/fqdn.ts). */
  fqdn?: FqdnIdentityTable;
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

/**
 * Compiled rule sets per snapshot rule: the proxy decides every request against the same
 * snapshot objects, so each rule's regexes are compiled once, not per request. (HTTP and DNS
 * rules are OR-ed, so matching rule by rule equals matching their union; Kafka rules are
 * evaluated together because a multi-topic request may be covered by several rules.)
 */
const httpSets = new WeakMap<L7Rule, HttpRuleSet>();
const dnsSets = new WeakMap<L7Rule, DnsRuleSet>();

function httpSetOf(r: L7Rule): HttpRuleSet {
  let set = httpSets.get(r);
  if (!set) httpSets.set(r, (set = new HttpRuleSet(r.http.map((x) => x.rule))));
  return set;
}

function dnsSetOf(r: L7Rule): DnsRuleSet {
  let set = dnsSets.get(r);
  if (!set) dnsSets.set(r, (set = new DnsRuleSet(r.dns.map((x) => x.rule))));
  return set;
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
  // 3. only rules of the request's parser can allow it (an empty rule list would allow all)
  const typed = rules.filter((r) => r.parser === req.type);
  if (req.type === 'http') {
    const h = req.http;
    const desc = `HTTP ${h.method} ${h.path}${h.host ? ` (host ${h.host})` : ''}`;
    for (const r of typed) {
      const res = httpSetOf(r).matches(h);
      if (res.allowed && res.ruleIndex !== null) {
        const hit = r.http[res.ruleIndex]!;
        return { allowed: true, by: [hit.origin], origins: [hit.origin], detail: `${desc} matches rule ${JSON.stringify(hit.rule)} of ${hit.origin}` };
      }
    }
    return { allowed: false, by: evaluated, origins: evaluated, detail: `${desc} matches no HTTP rule of ${evaluated.join(', ')}` };
  }
  if (req.type === 'dns') {
    for (const r of typed) {
      const res = dnsSetOf(r).matches(req.qname);
      if (res.allowed && res.ruleIndex !== null) {
        const hit = r.dns[res.ruleIndex]!;
        return { allowed: true, by: [hit.origin], origins: [hit.origin], detail: `DNS query ${req.qname} matches ${JSON.stringify(hit.rule)} of ${hit.origin}` };
      }
    }
    return { allowed: false, by: evaluated, origins: evaluated, detail: `DNS query ${req.qname} matches no DNS rule of ${evaluated.join(', ')}` };
  }
  const list = typed.flatMap((r) => r.kafka);
  const k = req.kafka;
  const res = list.length ? new KafkaRuleSet(list.map((r) => r.rule)).matches(k) : { allowed: false, ruleIndexes: [], remainingTopics: k.topics };
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
