// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/l7-policy
 *
 * Builds the serialisable L7 policy (src/l7/policy.ts) of local endpoints from the engine:
 * every allow rule of both directions, named ports resolved as the datapath resolved them.
 */
import type { EndpointL7Policy, L7PolicySnapshot, L7PortPolicy, L7Rule } from '../l7/policy.ts';
import type { EngineEndpoint, PolicyEngine } from './engine.ts';
import { DIRECTIONS } from './types.ts';

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
 * The L7 policy of every endpoint, or of the endpoints named. An endpoint whose policy cannot
 * be computed keeps the rules it had in `previous` (fail closed: never fewer restrictions, never
 * a gap); `previous` is updated with every endpoint that could be computed.
 */
export function buildL7Snapshot(
  engine: PolicyEngine,
  revision: number,
  globalAudit: boolean,
  refs?: Iterable<string>,
  previous: Map<string, EndpointL7Policy> = new Map(),
): L7PolicySnapshot {
  const endpoints: EndpointL7Policy[] = [];
  const wanted = refs ? new Set(refs) : null;
  for (const ep of engine.endpoints()) {
    if (wanted && !wanted.has(ep.ref)) continue;
    try {
      const l7 = endpointL7Policy(engine, ep);
      previous.set(ep.ref, l7);
      endpoints.push(l7);
    } catch {
      const last = previous.get(ep.ref);
      if (last) endpoints.push(last);
    }
  }
  return { revision, endpoints, globalAudit, fqdn: engine.fqdnTable() };
}
