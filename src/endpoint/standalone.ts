// SPDX-License-Identifier: Apache-2.0
/**
 * @module endpoint/standalone
 *
 * Builds a PolicyEngine from the standalone inputs (DESIGN §3.1, §2 "Standalone mode behaves
 * like Kubernetes mode"): namespaces and endpoints from the endpoints file, the node's gateway
 * as a host address, and the sanitized rules grouped by policy object.
 */
import type { Rule } from '../api/types.ts';
import { PolicyEngine } from '../policy/engine.ts';
import type { EndpointsFile } from './endpoints-file.ts';

/** Groups rules by the object they came from. */
export function rulesByObject(rules: Rule[]): Map<string, Rule[]> {
  const out = new Map<string, Rule[]>();
  for (const r of rules) {
    const list = out.get(r.origin.ref);
    if (list) list.push(r);
    else out.set(r.origin.ref, [r]);
  }
  return out;
}

/**
 * @param endpoints the parsed endpoints file
 * @param rules every sanitized rule
 * @returns an engine holding them (policies are computed lazily per endpoint)
 */
export function buildEngine(endpoints: EndpointsFile, rules: Rule[]): PolicyEngine {
  const engine = new PolicyEngine({ hostIps: [endpoints.gateway] });
  engine.bulk(() => {
    engine.setNamespaces(endpoints.namespaces);
    for (const ep of endpoints.endpoints) engine.upsertEndpoint(ep);
    for (const [ref, list] of rulesByObject(rules)) engine.replacePolicyObject(ref, list);
  });
  return engine;
}
