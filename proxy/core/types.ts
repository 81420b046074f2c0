// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/core/types
 *
 * The contracts every protocol module of `membrane proxy` shares (STYLE B7 item 7):
 * - a connection arrives with a ConnContext (who the client is, where it was going, which
 *   identities the datapath gave both);
 * - each request is decided by the Decider, which applies the L7 policy of both sides (the
 *   client endpoint's egress and the server endpoint's ingress) through src/policy/l7-policy.ts;
 * - every request ends in one L7 flow report;
 * - upstream connections are made by the UpstreamConnector, which marks them (SO_MARK) so the
 *   datapath neither enforces nor redirects them again (DESIGN §4).
 *
 * Verdicts (Cilium proxylib, r2d2parser.go): MORE (need more bytes), PASS (forward), DROP
 * (denied: the protocol's own denial has been or will be written to the client), INJECT (write
 * bytes to the client), ERROR (unparseable: close the connection). Never a throw on input.
 */
import type { Duplex } from 'node:stream';
import type { L7Decision, L7Request } from '../../src/l7/policy.ts';

export type Verdict = 'MORE' | 'PASS' | 'DROP' | 'INJECT' | 'ERROR';

/** One redirected connection. */
export interface ConnContext {
  /** The pod (or outside peer) that opened the connection. */
  client: { ip: string; port: number; identity: number };
  /** The original destination: the accepted socket's local address. */
  server: { ip: string; port: number; identity: number };
  /** The proxy port the datapath redirected to (tells the parser). */
  proxyPort: number;
  /** IPPROTO_TCP or IPPROTO_UDP. */
  proto: number;
}

/** The outcome of one request for both sides. */
export interface RequestDecision {
  /** Forward the request (allowed, or denied but let through by audit mode). */
  forward: boolean;
  /** 'allowed' | 'denied' | 'audit' — what observe reports. */
  verdict: 'allowed' | 'denied' | 'audit';
  /** Per side; undefined where that side does not apply (not a local endpoint, not enforced). */
  egress?: L7Decision;
  ingress?: L7Decision;
  /** Set when the proxy refused the request before any policy was evaluated (malformed: 400). */
  rejected?: string;
}

export interface Decider {
  decide(ctx: ConnContext, req: L7Request): RequestDecision;
}

/** What one request looked like, for the L7 flow record (`l7` of DESIGN §3.4). */
export type L7FlowInfo =
  | {
      type: 'http';
      method: string;
      url: string;
      protocol: string;
      /** HTTP status sent to the client (0: none, the stream was reset first). */
      code: number;
      host?: string;
      /** gRPC calls: the grpc-status the client received (trailers or trailers-only headers). */
      grpcStatus?: number;
    }
  | { type: 'dns'; query: string; qtypes: string[]; rcode: string; ips: string[]; ttl: number }
  | { type: 'kafka'; apiKey: number; apiVersion: number; correlationId: number; topics: string[]; errorCode: number };

export interface FlowReporter {
  /**
   * Reports one request (one L7 flow in `membrane observe`).
   * @param latencyMs request → response (or denial) time
   */
  report(ctx: ConnContext, info: L7FlowInfo, decision: RequestDecision, latencyMs: number): void;
}

export interface UpstreamConnector {
  /**
   * Opens a TCP connection to `ctx.server` from the node, marked with the client's identity so
   * the datapath lets it through unenforced and attributes it to the client.
   */
  connect(ctx: ConnContext): Duplex;
}

/** What a protocol module is given. */
export interface ProtocolDeps {
  decider: Decider;
  reporter: FlowReporter;
  upstream: UpstreamConnector;
  /** Limits and timeouts (src/config.ts Settings). */
  limits: {
    maxHeaderBytes: number;
    headerTimeoutMs: number;
    idleTimeoutMs: number;
    /** HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS offered to clients (default 100). */
    maxConcurrentStreams?: number;
  };
}
