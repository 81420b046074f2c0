// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/http/http1
 *
 * Http1Proxy: HTTP/1.1 enforcement for redirected connections. Inbound bytes are parsed by
 * node:http (an http.Server that never listens: `handle()` feeds it each accepted socket);
 * upstream requests go through one undici Pool (keep-alive) per (original destination, client
 * identity), whose `connect` is the UpstreamConnector (marked sockets, DESIGN §4).
 *
 * Per request, in this order (each step below repeats its number):
 * 1. the request target is checked (request-target.ts) and the framing headers (framing.ts);
 *    a failure answers 400 and closes the connection (node:http's parser has already done the
 *    same for malformed framing, obs-fold, bad chunk sizes, oversized heads → 431);
 * 2. the Decider decides it with both sides' L7 policy;
 * 3. denied: 403 "Access denied\r\n"; the connection stays usable (an unread body is discarded);
 * 4. allowed (or audit): forwarded with its end-to-end headers; the body streams both ways with
 *    backpressure, never buffered whole, byte for byte. `Expect: 100-continue` is answered by
 *    the proxy once the request is allowed (undici does not forward Expect); an `Upgrade`
 *    request is sent upstream on a connection of its own and, on 101, the two sockets are
 *    spliced;
 * 5. every request ends in one L7 flow report (allowed, audit, denied or rejected).
 *
 * Limits: `maxHeaderBytes` (node:http maxHeaderSize → 431), `headerTimeoutMs` (node:http
 * headersTimeout → 408: slowloris), `idleTimeoutMs` (keep-alive idle, and socket inactivity).
 */
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { ConnContext, ProtocolDeps, RequestDecision } from '../core/types.ts';
import { DENIED_BODY, enforceHead, type HeadOutcome } from './enforcer.ts';
import { endToEndHeadersFlat, HOP_BY_HOP } from './framing.ts';

export { DENIED_BODY };

const rejected = (reason: string): RequestDecision => ({ forward: false, verdict: 'denied', rejected: reason });

interface PoolEntry {
  pool: Pool;
  lastUsed: number;
}

/**
 * Flat [name, value, …] list of response headers without hop-by-hop ones and without those the
 * Connection header names (undici gives them lower-cased, repeated ones as arrays).
 */
function responseHeaders(headers: Record<string, string | string[] | undefined>): string[] {
  const connection = headers.connection;
  let named: Set<string> | null = null;
  if (connection !== undefined) {
    named = new Set();
    for (const c of Array.isArray(connection) ? connection : [connection]) for (const t of c.split(',')) named.add(t.trim().toLowerCase());
  }
  const raw: string[] = [];
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || HOP_BY_HOP.has(k) || (named !== null && named.has(k))) continue;
    if (typeof v === 'string') raw.push(k, v);
    else for (const one of v) raw.push(k, one);
  }
  return raw;
}

/** The request a ForwardHandler serves, on ServerResponse, for the shared 'close' / 'drain' listeners. */
const kForward = Symbol('membrane.forward');
type ForwardedResponse = http.ServerResponse & { [kForward]?: ForwardHandler };

function onResponseClose(this: ForwardedResponse): void {
  this[kForward]?.onClientClose();
}

function onResponseDrain(this: ForwardedResponse): void {
  this[kForward]?.controller?.resume();
}

const CONNECT_FAILURE = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|connect/i;

/**
 * One forwarded request (4. and 5. of the module comment): relays undici's response to the
 * client with backpressure and reports the request once. A class rather than closures: one
 * object per request, its methods shared.
 */
class ForwardHandler implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | null = null;
  #done = false;
  #drainListening = false;

  constructor(
    readonly proxy: Http1Proxy,
    readonly ctx: ConnContext,
    readonly req: http.IncomingMessage,
    readonly res: ForwardedResponse,
    readonly decision: RequestDecision,
    readonly t0: number,
    readonly hasBody: boolean,
  ) {
    res[kForward] = this;
    res.on('close', onResponseClose);
  }

  finish(code: number): void {
    if (this.#done) return;
    this.#done = true;
    this.res[kForward] = undefined;
    this.proxy.report(this.ctx, this.req, code, this.decision, this.t0);
  }

  onClientClose(): void {
    if (!this.res.writableFinished) {
      this.controller?.abort(new Error('client went away'));
      this.finish(this.res.statusCode || 499);
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (statusCode < 200) return; // 1xx from upstream: the proxy speaks for itself
    this.res.writeHead(statusCode, statusMessage || undefined, responseHeaders(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      if (!this.#drainListening) {
        this.#drainListening = true;
        this.res.on('drain', onResponseDrain);
      }
    }
  }

  onResponseEnd(): void {
    this.res.end();
    this.finish(this.res.statusCode);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    const res = this.res;
    if (!res.headersSent) {
      const code = CONNECT_FAILURE.test(`${(err as NodeJS.ErrnoException).code} ${err.message}`) ? 503 : 502;
      res.shouldKeepAlive = false;
      res.writeHead(code, { 'content-type': 'text/plain', 'content-length': 0, connection: 'close' });
      res.end();
      this.finish(code);
    } else {
      res.destroy(err);
      this.finish(res.statusCode);
    }
    if (this.hasBody && !this.req.complete) this.req.resume();
  }
}

export class Http1Proxy {
  readonly #deps: ProtocolDeps;
  readonly #server: http.Server;
  readonly #ctx = new WeakMap<object, ConnContext>();
  readonly #pools = new Map<string, PoolEntry>();
  readonly #sweep: NodeJS.Timeout;
  readonly #tunnels = new Set<Duplex>();

  constructor(deps: ProtocolDeps) {
    this.#deps = deps;
    const { maxHeaderBytes, headerTimeoutMs, idleTimeoutMs } = deps.limits;
    this.#server = http.createServer({
      maxHeaderSize: maxHeaderBytes,
      headersTimeout: headerTimeoutMs,
      requestTimeout: 0,
      keepAliveTimeout: idleTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headerTimeoutMs / 4))),
      joinDuplicateHeaders: false,
      insecureHTTPParser: false,
    });
    this.#server.timeout = idleTimeoutMs;
    this.#server.on('request', (req, res) => this.#onRequest(req, res, false));
    this.#server.on('checkContinue', (req, res) => this.#onRequest(req, res, true));
    this.#server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(417, { connection: 'close' });
      res.end();
    });
    this.#server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#server.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
      this.#reject(req, socket, 'CONNECT is not supported');
    });
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket));
    // node:http tracks header and request timeouts only for servers that emitted 'listening'
    // (setupConnectionsTracking); this one is fed sockets instead of listening.
    this.#server.emit('listening');
    this.#sweep = setInterval(() => this.#sweepPools(), 30_000).unref();
  }

  /**
   * Serves one redirected connection (its first bytes may have been unshifted back).
   * @param socket the accepted socket
   * @param ctx who the client is and where it was going
   */
  handle(socket: net.Socket, ctx: ConnContext): void {
    this.#ctx.set(socket, ctx);
    this.#server.emit('connection', socket);
    // the router paused the socket to put its first bytes back: let node:http's parser have them
    socket.resume();
  }

  /** Closes the upstream pools and tunnels (connections being served are the caller's). */
  async close(): Promise<void> {
    clearInterval(this.#sweep);
    this.#server.closeAllConnections?.();
    for (const t of this.#tunnels) t.destroy();
    await Promise.allSettled([...this.#pools.values()].map((p) => p.pool.destroy()));
    this.#pools.clear();
  }

  #pool(ctx: ConnContext): Pool {
    const key = `${ctx.server.ip}:${ctx.server.port}/${ctx.client.identity}`;
    let e = this.#pools.get(key);
    if (!e) {
      const upstreamCtx = ctx;
      const pool = new Pool(`http://${ctx.server.ip}:${ctx.server.port}`, {
        connect: (_opts, cb) => {
          let s: Duplex;
          try {
            s = this.#deps.upstream.connect(upstreamCtx);
          } catch (err) {
            cb(err as Error, null);
            return;
          }
          const onErr = (err: Error) => cb(err, null);
          s.once('error', onErr);
          s.once('connect', () => {
            s.off('error', onErr);
            cb(null, s as net.Socket);
          });
        },
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: Math.max(4_000, this.#deps.limits.idleTimeoutMs),
        headersTimeout: Math.max(1_000, this.#deps.limits.idleTimeoutMs),
        bodyTimeout: Math.max(1_000, this.#deps.limits.idleTimeoutMs),
        maxHeaderSize: Math.max(16_384, this.#deps.limits.maxHeaderBytes * 4),
      });
      e = { pool, lastUsed: Date.now() };
      this.#pools.set(key, e);
    }
    e.lastUsed = Date.now();
    return e.pool;
  }

  #sweepPools(): void {
    const old = Date.now() - 120_000;
    for (const [k, e] of this.#pools) {
      const stats = e.pool.stats;
      if (e.lastUsed < old && stats.running === 0 && stats.pending === 0) {
        this.#pools.delete(k);
        void e.pool.close().catch(() => {});
      }
    }
  }

  #ctxOf(socket: object): ConnContext | undefined {
    return this.#ctx.get(socket);
  }

  /** 5. (one L7 flow per request) */
  report(ctx: ConnContext, req: http.IncomingMessage, code: number, decision: RequestDecision, t0: number): void {
    const host = req.headers.host;
    this.#deps.reporter.report(
      ctx,
      { type: 'http', method: req.method ?? '', url: req.url ?? '', protocol: `HTTP/${req.httpVersion}`, code, ...(host !== undefined ? { host } : {}) },
      decision,
      performance.now() - t0,
    );
  }

  /** 1. and 2. (enforcer.ts: checks, then the Decider) */
  #enforce(ctx: ConnContext, req: http.IncomingMessage): HeadOutcome {
    return enforceHead(this.#deps.decider, ctx, { method: req.method ?? '', target: req.url ?? '', httpVersion: req.httpVersion, rawHeaders: req.rawHeaders });
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void {
    const t0 = performance.now();
    const ctx = this.#ctxOf(req.socket);
    if (!ctx) {
      res.destroy();
      return;
    }
    // 1. and 2.
    const outcome = this.#enforce(ctx, req);
    if (outcome.verdict === 'ERROR') {
      res.shouldKeepAlive = false;
      res.writeHead(outcome.status, { 'content-type': 'text/plain', 'content-length': 0, connection: 'close' });
      res.end();
      this.report(ctx, req, outcome.status, rejected(outcome.reason), t0);
      return;
    }
    const decision = outcome.decision;
    // 3.
    if (!decision.forward) {
      const h: http.OutgoingHttpHeaders = { 'content-type': 'text/plain', 'content-length': DENIED_BODY.length };
      if (expectContinue) {
        // the client may or may not send the body it announced: do not guess, close after
        res.shouldKeepAlive = false;
        h.connection = 'close';
      }
      res.writeHead(403, h);
      res.end(DENIED_BODY);
      this.report(ctx, req, 403, decision, t0);
      return;
    }
    // 4.
    if (expectContinue) res.writeContinue();
    this.#forward(ctx, req, res, decision, t0, outcome.verdict === 'PASS' && outcome.body !== 'none');
  }

  #forward(ctx: ConnContext, req: http.IncomingMessage, res: http.ServerResponse, decision: RequestDecision, t0: number, hasBody: boolean): void {
    const handler = new ForwardHandler(this, ctx, req, res, decision, t0, hasBody);
    try {
      this.#pool(ctx).dispatch(
        {
          path: req.url!,
          method: req.method as Dispatcher.HttpMethod,
          headers: endToEndHeadersFlat(req.rawHeaders),
          body: hasBody ? req : null,
        },
        handler,
      );
    } catch (err) {
      handler.onResponseError(null, err as Error);
    }
  }

  #reject(req: http.IncomingMessage, socket: Duplex, reason: string, status = 400): void {
    const ctx = this.#ctxOf(socket);
    socket.end(`HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : 'Error'}\r\ncontent-type: text/plain\r\ncontent-length: ${reason.length + 2}\r\nconnection: close\r\n\r\n${reason}\r\n`);
    if (ctx) this.report(ctx, req, status, rejected(reason), performance.now());
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const code = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    // A request whose head was fine may be forwarded already when its body turns out malformed
    // (bad chunk size): its upstream request is aborted when the socket closes (res 'close').
    const inFlight = (socket as net.Socket & { _httpMessage?: http.ServerResponse })._httpMessage;
    if (inFlight && !inFlight.headersSent) inFlight.statusCode = code;
    if (socket.writable && (!inFlight || !inFlight.headersSent)) {
      const text = code === 431 ? 'Request Header Fields Too Large' : code === 408 ? 'Request Timeout' : 'Bad Request';
      socket.end(`HTTP/1.1 ${code} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    }
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /** 4. (Upgrade) */
  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const t0 = performance.now();
    const ctx = this.#ctxOf(socket);
    if (!ctx) {
      socket.destroy();
      return;
    }
    const outcome = this.#enforce(ctx, req);
    if (outcome.verdict === 'ERROR') return this.#reject(req, socket, outcome.reason, outcome.status);
    const decision = outcome.decision;
    if (!decision.forward) {
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${DENIED_BODY.length}\r\nconnection: close\r\n\r\n${DENIED_BODY}`);
      this.report(ctx, req, 403, decision, t0);
      return;
    }
    let up: Duplex;
    try {
      up = this.#deps.upstream.connect(ctx);
    } catch {
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      this.report(ctx, req, 503, decision, t0);
      return;
    }
    this.#tunnels.add(up);
    let reported = false;
    const report = (code: number) => {
      if (!reported) this.report(ctx, req, code, decision, t0);
      reported = true;
    };
    const teardown = () => {
      this.#tunnels.delete(up);
      up.destroy();
      socket.destroy();
    };
    up.on('error', () => {
      if (!reported) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        report(503);
      }
      teardown();
    });
    socket.on('error', teardown);
    socket.on('close', teardown);
    up.on('close', () => socket.end());
    up.once('connect', () => {
      let h = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) h += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(h + '\r\n');
      if (head.length) up.write(head);
      // The response head decides: 101 splices both ways; anything else is relayed and then
      // the connection ends (no further request may follow unchecked on this connection).
      let buf = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > 65536) teardown();
          return;
        }
        up.off('data', onData);
        up.pause();
        const code = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buf.subarray(0, end).toString('latin1'))?.[1] ?? 502);
        report(code);
        socket.write(buf);
        if (code === 101) {
          socket.pipe(up);
          up.pipe(socket);
        } else {
          up.pipe(socket);
          socket.resume();
        }
        up.resume();
      };
      up.on('data', onData);
    });
  }
}
