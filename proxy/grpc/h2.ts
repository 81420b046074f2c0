// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/grpc/h2
 *
 * HTTP/2 with prior knowledge (h2c), and therefore gRPC, through the L7 proxy (DESIGN §2:
 * "gRPC rules are HTTP rules on `POST /package.Service/Method`"; reference §3).
 *
 * The caller has read the client connection preface, put it back (`unshift`) and hands the
 * socket here. One connection is two sessions:
 * - inbound: an `http2` server session on the client's socket;
 * - upstream: at most one `http2` client session at a time to the original destination
 *   (`ctx.server`), opened through `deps.upstream.connect(ctx)` so it carries the proxy's
 *   SO_MARK. It is opened on the first forwarded stream; when the server sends GOAWAY or the
 *   session fails, the next forwarded stream opens a new one. Streams are started on it once
 *   the server's SETTINGS have arrived (within headerTimeoutMs, else they fail as in 4.) and
 *   while fewer than its SETTINGS_MAX_CONCURRENT_STREAMS of ours are open; the others wait in
 *   arrival order, their bodies held back by HTTP/2 flow control.
 *
 * Each inbound stream, in order:
 * 1. decided by the Decider on (`:method`, `:path`, `:authority`, headers in wire order);
 * 2. denied (not `forward`): answered in the protocol's own terms and never sent upstream —
 *    gRPC (`content-type: application/grpc*`): HTTP 200, trailers-only, `grpc-status: 7`
 *    (PERMISSION_DENIED) `grpc-message: Access denied`; anything else: 403 "Access denied\r\n".
 *    The connection and its other streams are not affected;
 * 3. forwarded (allowed, or audit): a stream on the upstream session; bodies are piped both
 *    ways (HTTP/2 flow control is the back-pressure, nothing is buffered whole), trailers are
 *    forwarded both ways (gRPC status lives there), 1xx headers are forwarded;
 * 4. resets cross over: a client RST_STREAM resets the upstream stream with the same code and
 *    an upstream reset after the response headers resets the client stream with its code. An
 *    upstream failure before response headers answers gRPC 14 (UNAVAILABLE) or HTTP 503, except
 *    REFUSED_STREAM, which is passed on so that the client may retry;
 * 5. reported once, when the stream closes: one L7 flow with the status sent to the client
 *    (and the grpc-status for gRPC), latency = request headers → response headers (or denial).
 *
 * Limits (ProtocolDeps.limits): SETTINGS_MAX_CONCURRENT_STREAMS (excess streams are refused by
 * nghttp2), SETTINGS_MAX_HEADER_LIST_SIZE = maxHeaderBytes (larger header blocks reset the
 * stream), the client's SETTINGS must arrive within headerTimeoutMs, and a connection without
 * open streams for idleTimeoutMs is closed with GOAWAY. An open stream is never timed out here
 * (long-lived gRPC streams are quiet by design).
 *
 * Nothing here throws on client or server input: protocol errors end the session (nghttp2
 * sends GOAWAY), and every stream and session error is handled.
 */
import http2, {
  constants as H2,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { L7Request } from '../../src/l7/policy.ts';
import type { ConnContext, L7FlowInfo, ProtocolDeps, RequestDecision } from '../core/types.ts';

/** SETTINGS_MAX_CONCURRENT_STREAMS when ProtocolDeps.limits does not set one. */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 100;

/** gRPC status codes used here (grpc/doc/statuscodes.md). */
export const GRPC_STATUS = { INTERNAL: 13, PERMISSION_DENIED: 7, UNAVAILABLE: 14 } as const;

const DENY_BODY = 'Access denied\r\n';
const UNAVAILABLE_BODY = 'upstream connect error or disconnect/reset before headers\r\n';
const INTERNAL_BODY = 'Internal error\r\n';

type FlowHttp = Extract<L7FlowInfo, { type: 'http' }>;
type Http2Headers = IncomingHttpHeaders | OutgoingHttpHeaders;

const noop = (): void => {};

/**
 * Serves one h2c connection (client preface already unshifted into `socket`).
 * @param socket the accepted (redirected) client connection
 * @param ctx who the client is and where it was going
 * @param deps decider, reporter, upstream connector and limits
 */
export function serveH2(socket: Duplex, ctx: ConnContext, deps: ProtocolDeps): void {
  new H2Connection(socket, ctx, deps).start();
}

function firstString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function isGrpc(headers: IncomingHttpHeaders): boolean {
  return (firstString(headers['content-type']) ?? '').toLowerCase().startsWith('application/grpc');
}

function grpcStatusOf(headers: Http2Headers): number | undefined {
  const v = headers['grpc-status'];
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return undefined;
  const n = Number(s);
  return Number.isInteger(n) ? n : undefined;
}

/** Copies a received header block for sending on the other session (keeps sensitive marks). */
function relayHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = v;
  const sensitive = (h as Record<symbol, unknown>)[http2.sensitiveHeaders];
  if (Array.isArray(sensitive) && sensitive.length) (out as Record<symbol, unknown>)[http2.sensitiveHeaders] = sensitive;
  return out;
}

/** The request's regular headers in wire order, for header rules. */
function headerList(rawHeaders: string[] | undefined, headers: IncomingHttpHeaders): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (rawHeaders) {
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (!rawHeaders[i]!.startsWith(':')) out.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
    return out;
  }
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith(':') || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, one]);
  }
  return out;
}

function alive(s: ServerHttp2Stream | ClientHttp2Stream): boolean {
  return !s.destroyed && !s.closed;
}

/** Answers a stream locally (denial or error) and drains whatever the client still sends. */
function answerLocally(stream: ServerHttp2Stream, grpc: boolean, status: number, grpcStatus: number, body: string): void {
  if (!alive(stream) || stream.headersSent) return;
  try {
    if (grpc) {
      // Trailers-only response: one HEADERS frame with END_STREAM.
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus), 'grpc-message': grpcMessage(grpcStatus) }, { endStream: true });
    } else {
      stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      stream.end(body);
    }
  } catch {
    stream.close(H2.NGHTTP2_INTERNAL_ERROR);
  }
  stream.resume();
}

function grpcMessage(code: number): string {
  if (code === GRPC_STATUS.PERMISSION_DENIED) return 'Access denied';
  if (code === GRPC_STATUS.UNAVAILABLE) return 'upstream connect error or disconnect/reset before headers';
  return 'Internal error';
}

/** The upstream session with what admission needs. */
interface Upstream {
  session: ClientHttp2Session;
  /** The server's SETTINGS have arrived. */
  ready: boolean;
  /** Our open streams on it. */
  active: number;
}

interface Waiting {
  stream: ServerHttp2Stream;
  begin(up: Upstream): void;
  fail(): void;
}

class H2Connection {
  readonly #socket: Duplex;
  readonly #ctx: ConnContext;
  readonly #deps: ProtocolDeps;
  #session: ServerHttp2Session | undefined;
  #upstream: Upstream | undefined;
  /** Forwarded streams waiting for room on the upstream session, in arrival order. */
  readonly #waiting: Waiting[] = [];
  #openStreams = 0;
  #closed = false;

  constructor(socket: Duplex, ctx: ConnContext, deps: ProtocolDeps) {
    this.#socket = socket;
    this.#ctx = ctx;
    this.#deps = deps;
  }

  start(): void {
    const { limits } = this.#deps;
    const server = http2.createServer({
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
        maxHeaderListSize: limits.maxHeaderBytes,
      },
    });
    server.on('sessionError', noop);
    server.on('session', (session: ServerHttp2Session) => {
      this.#session = session;
      session.on('error', noop);
      session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: unknown) =>
        this.#onStream(stream, headers, flags, Array.isArray(rawHeaders) ? (rawHeaders as string[]) : undefined),
      );
      // Settings handshake deadline (headerTimeoutMs), then the idle timeout.
      let settled = false;
      const handshake = setTimeout(() => {
        if (!settled) session.destroy();
      }, limits.headerTimeoutMs);
      handshake.unref();
      session.once('remoteSettings', () => {
        settled = true;
        clearTimeout(handshake);
      });
      if (limits.idleTimeoutMs > 0) {
        // (setTimeout(ms, cb) would listen once; the timer fires again after later activity)
        session.setTimeout(limits.idleTimeoutMs);
        session.on('timeout', () => {
          if (this.#openStreams === 0 && !session.closed) session.close();
        });
      }
      session.once('close', () => {
        clearTimeout(handshake);
        this.#onClose();
      });
    });
    this.#socket.on('error', noop);
    server.emit('connection', this.#socket);
    if (!this.#session) this.#socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#waiting.length = 0;
    const up = this.#upstream;
    this.#upstream = undefined;
    // Every inbound stream has closed (and reset its upstream stream): close gracefully.
    if (up && !up.session.destroyed) up.session.close();
    if (!this.#socket.destroyed) this.#socket.destroy();
  }

  /** The current upstream session, opening one when there is none usable. */
  #upstreamSession(): Upstream {
    const cur = this.#upstream;
    if (cur && !cur.session.closed && !cur.session.destroyed) return cur;
    const { ip, port } = this.#ctx.server;
    const host = ip.includes(':') ? `[${ip}]` : ip;
    const session = http2.connect(`http://${host}:${port}`, {
      createConnection: () => this.#deps.upstream.connect(this.#ctx),
      settings: { enablePush: false, maxHeaderListSize: this.#deps.limits.maxHeaderBytes },
    });
    const up: Upstream = { session, ready: false, active: 0 };
    session.on('error', noop);
    // An upstream that does not speak HTTP/2 never sends SETTINGS: give up after headerTimeoutMs.
    const deadline = setTimeout(() => {
      if (!up.ready) session.destroy();
    }, this.#deps.limits.headerTimeoutMs);
    deadline.unref();
    session.once('remoteSettings', () => {
      clearTimeout(deadline);
      up.ready = true;
      this.#pump();
    });
    session.once('close', () => {
      clearTimeout(deadline);
      if (this.#upstream === up) this.#upstream = undefined;
      // Never reached the server: the streams waiting for it fail; otherwise (GOAWAY) they
      // go to a new session.
      if (!up.ready) for (const w of this.#waiting.splice(0)) w.fail();
      else this.#pump();
    });
    this.#upstream = up;
    return up;
  }

  /**
   * Starts waiting streams while the upstream session has room: its SETTINGS have arrived and
   * fewer than its SETTINGS_MAX_CONCURRENT_STREAMS of our streams are open (a stream the server
   * would refuse waits here instead, with the client's flow control stopping its body).
   */
  #pump(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      let up: Upstream;
      try {
        up = this.#upstreamSession();
      } catch {
        for (const w of this.#waiting.splice(0)) w.fail();
        return;
      }
      if (!up.ready) return;
      const max = up.session.remoteSettings.maxConcurrentStreams ?? Number.MAX_SAFE_INTEGER;
      if (up.active >= max) return;
      this.#waiting.shift()!.begin(up);
    }
  }

  #report(info: FlowHttp, decision: RequestDecision, latencyMs: number): void {
    try {
      this.#deps.reporter.report(this.#ctx, info, decision, latencyMs);
    } catch {
      // a failing reporter must not break the connection
    }
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[] | undefined): void {
    const start = performance.now();
    let latencyMs: number | undefined;
    const method = firstString(headers[':method']) ?? '';
    const path = firstString(headers[':path']) ?? '';
    const host = firstString(headers[':authority']) ?? firstString(headers.host);
    const grpc = isGrpc(headers);
    const info: FlowHttp = { type: 'http', method, url: path, protocol: 'HTTP/2', code: 0 };
    if (host !== undefined) info.host = host;
    let decision: RequestDecision = { forward: false, verdict: 'denied' };
    this.#openStreams++;
    stream.on('error', noop);
    stream.once('close', () => {
      this.#openStreams--;
      this.#report(info, decision, latencyMs ?? performance.now() - start);
    });
    const answered = (status: number, grpcStatus: number, body: string) => {
      latencyMs = performance.now() - start;
      info.code = grpc ? 200 : status;
      if (grpc) info.grpcStatus = grpcStatus;
      answerLocally(stream, grpc, status, grpcStatus, body);
    };

    // 1.
    try {
      const req: L7Request = { type: 'http', http: { method, path, headers: headerList(rawHeaders, headers) } };
      if (host !== undefined) req.http.host = host;
      decision = this.#deps.decider.decide(this.#ctx, req);
    } catch {
      answered(500, GRPC_STATUS.INTERNAL, INTERNAL_BODY);
      return;
    }
    // 2.
    if (!decision.forward) {
      answered(403, GRPC_STATUS.PERMISSION_DENIED, DENY_BODY);
      return;
    }
    // 3.
    const endStream = (flags & H2.NGHTTP2_FLAG_END_STREAM) !== 0 || stream.readableEnded;
    // Request trailers may arrive while the stream waits for room upstream.
    const requestTrailers: { value?: OutgoingHttpHeaders } = {};
    if (!endStream) stream.on('trailers', (t: IncomingHttpHeaders) => (requestTrailers.value = relayHeaders(t)));
    const waiting: Waiting = {
      stream,
      fail: () => answered(503, GRPC_STATUS.UNAVAILABLE, UNAVAILABLE_BODY),
      begin: (upstream) => {
        if (!alive(stream)) return;
        let up: ClientHttp2Stream;
        try {
          up = upstream.session.request(relayHeaders(headers), endStream ? { endStream: true } : { endStream: false, waitForTrailers: true });
        } catch {
          waiting.fail();
          return;
        }
        upstream.active++;
        up.once('close', () => {
          upstream.active--;
          this.#pump();
        });
        this.#relay(stream, up, endStream, requestTrailers, grpc, info, answered, () => (latencyMs = performance.now() - start));
      },
    };
    stream.once('close', () => {
      const i = this.#waiting.indexOf(waiting);
      if (i >= 0) this.#waiting.splice(i, 1);
    });
    this.#waiting.push(waiting);
    this.#pump();
  }

  /** Relays one forwarded stream both ways (steps 3 to 4 of the module comment). */
  #relay(
    stream: ServerHttp2Stream,
    up: ClientHttp2Stream,
    endStream: boolean,
    requestTrailers: { value?: OutgoingHttpHeaders },
    grpc: boolean,
    info: FlowHttp,
    answered: (status: number, grpcStatus: number, body: string) => void,
    responded: () => void,
  ): void {
    up.on('error', noop);
    let responseTrailers: OutgoingHttpHeaders | undefined;

    if (!endStream) {
      up.on('wantTrailers', () => {
        try {
          up.sendTrailers(requestTrailers.value ?? {});
        } catch {
          up.close(H2.NGHTTP2_INTERNAL_ERROR);
        }
      });
      // A client reset also ends the readable side: only a clean end is passed on as END_STREAM.
      stream.pipe(up, { end: false });
      stream.once('end', () => {
        if (!alive(up)) return;
        const code = stream.rstCode;
        if (code !== undefined && code !== H2.NGHTTP2_NO_ERROR) up.close(code);
        else up.end();
      });
    }

    up.on('headers', (h: IncomingHttpHeaders) => {
      // 1xx informational responses
      if (alive(stream) && !stream.headersSent) {
        try {
          stream.additionalHeaders(relayHeaders(h));
        } catch {
          // an informational header the client side rejects is dropped
        }
      }
    });
    up.once('response', (h: IncomingHttpHeaders, upFlags: number) => {
      responded();
      info.code = Number(h[':status']) || 0;
      const gs = grpc ? grpcStatusOf(h) : undefined;
      if (gs !== undefined) info.grpcStatus = gs;
      if (!alive(stream)) return;
      const ended = (upFlags & H2.NGHTTP2_FLAG_END_STREAM) !== 0;
      try {
        if (ended) {
          stream.respond(relayHeaders(h), { endStream: true });
          up.resume();
          return;
        }
        stream.on('wantTrailers', () => {
          try {
            stream.sendTrailers(responseTrailers ?? {});
          } catch {
            stream.close(H2.NGHTTP2_INTERNAL_ERROR);
          }
        });
        stream.respond(relayHeaders(h), { waitForTrailers: true });
      } catch {
        stream.close(H2.NGHTTP2_INTERNAL_ERROR);
        up.close(H2.NGHTTP2_CANCEL);
        return;
      }
      // An upstream reset also ends the readable side: only a clean end is passed on.
      up.pipe(stream, { end: false });
      up.once('end', () => {
        if (!alive(stream)) return;
        const code = up.rstCode;
        if (code !== undefined && code !== H2.NGHTTP2_NO_ERROR) stream.close(code);
        else stream.end();
      });
    });
    up.on('trailers', (t: IncomingHttpHeaders) => {
      responseTrailers = relayHeaders(t);
      const gs = grpc ? grpcStatusOf(t) : undefined;
      if (gs !== undefined) info.grpcStatus = gs;
    });

    // 4.
    stream.once('close', () => {
      if (!alive(up)) return;
      const code = stream.rstCode;
      up.close(code !== undefined && code !== H2.NGHTTP2_NO_ERROR ? code : H2.NGHTTP2_CANCEL);
    });
    up.once('close', () => {
      if (!alive(stream)) return;
      const code = up.rstCode ?? H2.NGHTTP2_NO_ERROR;
      if (!stream.headersSent) {
        if (code === H2.NGHTTP2_REFUSED_STREAM) {
          stream.close(H2.NGHTTP2_REFUSED_STREAM);
          return;
        }
        answered(503, GRPC_STATUS.UNAVAILABLE, UNAVAILABLE_BODY);
        return;
      }
      if (code !== H2.NGHTTP2_NO_ERROR) {
        stream.close(code);
        return;
      }
      // The server finished (or stopped reading with NO_ERROR): discard what the client still sends.
      if (!stream.readableEnded) {
        stream.unpipe(up);
        stream.resume();
      }
    });
  }
}
