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
 *
 * Fail closed: the datapath redirects a flow only when an enforced side has an L7 rule for it,
 * so a request for which neither side applies means this proxy does not have that policy yet
 * (it starts before the agent's first push, or the endpoint is newer than its snapshot): it is
 * denied, never let through unchecked.
 *
 * HTTP decisions are cached: for one snapshot, a decision is a pure function of the
 * connection's facts (both addresses, the server port, both identities, the protocol) and of the
 * request's method, target and host, unless some HTTP rule of the snapshot matches headers (then
 * nothing is cached). The cache is dropped with every new snapshot and when it holds
 * `DECISION_CACHE_MAX` decisions. Cached decisions are shared objects: callers never mutate them.
 */
import { decideL7, type EndpointL7Policy, type L7PolicySnapshot, type L7Request } from '../../src/l7/policy.ts';
import type { ConnContext, Decider, RequestDecision } from './types.ts';

/** Decisions kept at most (all of them are dropped when the cache is full). */
export const DECISION_CACHE_MAX = 10_000;

/** Whether any HTTP rule of the snapshot looks at request headers. */
function matchesHeaders(snapshot: L7PolicySnapshot): boolean {
  for (const ep of snapshot.endpoints) {
    for (const pp of [...ep.ingress, ...ep.egress]) for (const r of pp.rules) for (const h of r.http) if (h.rule.headers?.length) return true;
  }
  return false;
}

export class SnapshotDecider implements Decider {
  #snapshot: L7PolicySnapshot = { revision: 0, endpoints: [], globalAudit: false };
  #byIp = new Map<string, EndpointL7Policy>();
  #cacheable = true;
  /** connection facts → `method\nhost\ntarget` → decision (for the current snapshot) */
  #cache = new Map<string, Map<string, RequestDecision>>();
  #cached = 0;
  /** The connection-facts key of each connection, made once. */
  readonly #connKeys = new WeakMap<ConnContext, string>();

  /** Replaces the policy (the previous one stays in force until this returns). */
  update(snapshot: L7PolicySnapshot): void {
    const byIp = new Map<string, EndpointL7Policy>();
    for (const ep of snapshot.endpoints) for (const ip of ep.ips) byIp.set(ip, ep);
    this.#snapshot = snapshot;
    this.#byIp = byIp;
    this.#cacheable = !matchesHeaders(snapshot);
    this.#cache = new Map();
    this.#cached = 0;
  }

  get revision(): number {
    return this.#snapshot.revision;
  }

  /** The local endpoint owning an address, if any. */
  endpointOf(ip: string): EndpointL7Policy | undefined {
    return this.#byIp.get(ip);
  }

  decide(ctx: ConnContext, req: L7Request): RequestDecision {
    if (req.type !== 'http' || !this.#cacheable) return this.#decide(ctx, req);
    let connKey = this.#connKeys.get(ctx);
    if (connKey === undefined) {
      connKey = `${ctx.client.ip} ${ctx.client.identity} ${ctx.server.ip} ${ctx.server.port} ${ctx.server.identity} ${ctx.proto}`;
      this.#connKeys.set(ctx, connKey);
    }
    let forConn = this.#cache.get(connKey);
    if (!forConn) this.#cache.set(connKey, (forConn = new Map()));
    // method is a token, host and target have no line ends (checked before, or forbidden by HTTP/2)
    const reqKey = `${req.http.method}\n${req.http.host ?? ''}\n${req.http.path}`;
    let d = forConn.get(reqKey);
    if (d === undefined) {
      d = this.#decide(ctx, req);
      if (++this.#cached > DECISION_CACHE_MAX) {
        this.#cache = new Map([[connKey, (forConn = new Map())]]);
        this.#cached = 1;
      }
      forConn.set(reqKey, d);
    }
    return d;
  }

  #decide(ctx: ConnContext, req: L7Request): RequestDecision {
    const src = this.#byIp.get(ctx.client.ip);
    const dst = this.#byIp.get(ctx.server.ip);
    const egress = src && src.egressEnforced ? decideL7(src, 'egress', ctx.server.identity, ctx.proto, ctx.server.port, req) : undefined;
    const ingress = dst && dst.ingressEnforced ? decideL7(dst, 'ingress', ctx.client.identity, ctx.proto, ctx.server.port, req) : undefined;
    if (!egress && !ingress) {
      const detail = `no L7 policy for this flow in the proxy's policy (revision ${this.#snapshot.revision}): denied until the agent sends it`;
      return { forward: false, verdict: 'denied', egress: { allowed: false, by: [], origins: [], detail } };
    }
    const denied = (egress && !egress.allowed) || (ingress && !ingress.allowed);
    if (!denied) return { forward: true, verdict: 'allowed', egress, ingress };
    const audit = this.#snapshot.globalAudit || (egress && !egress.allowed && src!.audit) || (ingress && !ingress.allowed && dst!.audit);
    return audit ? { forward: true, verdict: 'audit', egress, ingress } : { forward: false, verdict: 'denied', egress, ingress };
  }
}
