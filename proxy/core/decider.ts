// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/core/decider
 *
 * SnapshotDecider: decides requests from the last L7PolicySnapshot the agent sent. Both sides
 * of the flow apply (DESIGN §2, reference §3 "Direction"): the client endpoint's egress when
 * the client is a local endpoint whose egress is enforced, and the server endpoint's ingress
 * when the server is a local endpoint whose ingress is enforced. A request is forwarded when
 * every applicable side allows it; audit mode (global, or the endpoint's) forwards a would-be
 * denial and reports it as `audit` (DESIGN §2: audit covers L7 too).
 */
import { decideL7, type EndpointL7Policy, type L7PolicySnapshot, type L7Request } from '../../src/l7/policy.ts';
import type { ConnContext, Decider, RequestDecision } from './types.ts';

export class SnapshotDecider implements Decider {
  #snapshot: L7PolicySnapshot = { revision: 0, endpoints: [], globalAudit: false };
  #byIp = new Map<string, EndpointL7Policy>();

  /** Replaces the policy (the previous one stays in force until this returns). */
  update(snapshot: L7PolicySnapshot): void {
    const byIp = new Map<string, EndpointL7Policy>();
    for (const ep of snapshot.endpoints) for (const ip of ep.ips) byIp.set(ip, ep);
    this.#snapshot = snapshot;
    this.#byIp = byIp;
  }

  get revision(): number {
    return this.#snapshot.revision;
  }

  /** The local endpoint owning an address, if any. */
  endpointOf(ip: string): EndpointL7Policy | undefined {
    return this.#byIp.get(ip);
  }

  decide(ctx: ConnContext, req: L7Request): RequestDecision {
    const src = this.#byIp.get(ctx.client.ip);
    const dst = this.#byIp.get(ctx.server.ip);
    const egress = src && src.egressEnforced ? decideL7(src, 'egress', ctx.server.identity, ctx.proto, ctx.server.port, req) : undefined;
    const ingress = dst && dst.ingressEnforced ? decideL7(dst, 'ingress', ctx.client.identity, ctx.proto, ctx.server.port, req) : undefined;
    const denied = (egress && !egress.allowed) || (ingress && !ingress.allowed);
    if (!denied) return { forward: true, verdict: 'allowed', egress, ingress };
    const audit = this.#snapshot.globalAudit || (egress && !egress.allowed && src!.audit) || (ingress && !ingress.allowed && dst!.audit);
    return audit ? { forward: true, verdict: 'audit', egress, ingress } : { forward: false, verdict: 'denied', egress, ingress };
  }
}
