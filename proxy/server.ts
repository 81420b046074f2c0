// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/server
 *
 * `membrane proxy` (DESIGN §3.4, §4): accepts the connections the datapath redirects with
 * bpf_sk_assign and hands each to its protocol.
 *
 * - Listeners: 127.0.0.1:<proxy port> with IP_TRANSPARENT (made by src/datapath/sockets.ts), one
 *   per parser that runs here: HTTP (PROXY_PORTS.http) and DNS over UDP and TCP
 *   (PROXY_PORTS.dns, proxy/dns/dns-proxy.ts). Ports without a listener (Kafka for now) drop
 *   what is redirected to them: fail closed.
 * - A connection's original destination is the accepted socket's local address; both ends'
 *   identities come from the pinned ipcache.
 * - On the HTTP port, the first bytes pick the protocol: the HTTP/2 connection preface goes to
 *   proxy/grpc/h2.ts `serveH2` (loaded lazily; without it the connection is closed), anything
 *   else to HTTP/1.1 (proxy/http/http1.ts).
 * - Control API on `<state-dir>/proxy.sock` (HTTP over a UNIX socket):
 *     PUT /v1/policy   an L7PolicySnapshot (header `x-membrane-agent-socket`: where to report)
 *     GET /v1/status   revision, connections, listeners, flow report counters, DNS counters
 *     GET /v1/fqdn     the DNS cache as `{ names: [{ name, ips }] }` (the agent mirrors it at start)
 *   The last snapshot is kept in `<state-dir>/proxy-policy.json` and loaded at start.
 * - `<state-dir>/proxy.pid` names the running proxy; stop() removes it (when still ours).
 */
import http from 'node:http';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import net from 'node:net';
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { setThreadSlice } from '../src/datapath/sched.ts';
import { transparentListenFd } from '../src/datapath/sockets.ts';
import type { Settings } from '../src/config.ts';
import { SnapshotDecider } from './core/decider.ts';
import { AgentFlowReporter } from './core/flow-reporter.ts';
import { IpcacheIdentities } from './core/identities.ts';
import { PolicyStore, snapshotProblem } from './core/policy-store.ts';
import type { ConnContext, ProtocolDeps, UpstreamConnector } from './core/types.ts';
import { MarkedUpstreamConnector } from './core/upstream.ts';
import { AgentFqdnLink } from './dns/agent-link.ts';
import { DnsProxy, PROXY_DNS_PORT } from './dns/dns-proxy.ts';
import { FqdnLearner } from './dns/fqdn-learner.ts';
import { Http1Proxy } from './http/http1.ts';

/** Scheduler slice of the proxy's main thread and the threads it starts later (src/datapath/sched.ts; the kernel's default is ~1.4 ms here). */
const PROXY_SLICE_NS = 100_000;

/** The HTTP/2 connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Proxy ports served here (mirror of src/endpoint/manager.ts PROXY_PORTS for the parsers that run). */
export const PROXY_HTTP_PORT = 15001;

export interface ProxyServerOptions {
  stateDir: string;
  bpfRoot: string;
  settings: Pick<
    Settings,
    | 'proxyMaxConnections'
    | 'proxyHeaderTimeoutMs'
    | 'proxyIdleTimeoutMs'
    | 'proxyMaxHeaderBytes'
    | 'fqdnMinTtl'
    | 'fqdnMaxIpsPerName'
    | 'dnsGcInterval'
    | 'dnsResponseMaxDelayMs'
    | 'dnsDenyResponse'
    | 'dnsUpstreamTimeoutMs'
    | 'dnsMaxConcurrent'
  >;
  /** Where flows go until the agent says otherwise (default `/run/membrane/agent.sock`). */
  agentSocket?: string;
  /** Listening address (default 127.0.0.1, where the datapath looks). */
  host?: string;
  /** HTTP proxy port (default 15001). */
  httpPort?: number;
  /** DNS proxy port (default 15053); null: no DNS proxy (its queries are dropped, fail closed). */
  dnsPort?: number | null;
  /** Use a plain listener instead of a transparent one (unit tests without the datapath; no DNS). */
  plainListener?: boolean;
  /** Upstream connector (default: marked sockets). */
  upstream?: UpstreamConnector;
  log?: (msg: string) => void;
}

type ServeH2 = (socket: Duplex, ctx: ConnContext, deps: ProtocolDeps) => void;

export class ProxyServer {
  readonly decider = new SnapshotDecider();
  readonly reporter: AgentFlowReporter;
  readonly identities: IpcacheIdentities;
  readonly deps: ProtocolDeps;
  readonly learner: FqdnLearner;
  readonly #fqdnLink: AgentFqdnLink;
  #dns?: DnsProxy;
  readonly #o: ProxyServerOptions;
  readonly #store: PolicyStore;
  readonly #http1: Http1Proxy;
  readonly #log: (msg: string) => void;
  readonly #conns = new Set<net.Socket>();
  #listeners: net.Server[] = [];
  #control?: http.Server;
  #h2: Promise<ServeH2 | null> | null = null;
  /** Event-loop delay (what every request waits behind), reported in status. */
  readonly #loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  /** Connections refused because proxyMaxConnections were open. */
  refused = 0;

  private constructor(o: ProxyServerOptions) {
    this.#o = o;
    this.#log = o.log ?? ((m) => process.stderr.write(`${new Date().toISOString()} proxy: ${m}\n`));
    this.#store = new PolicyStore(o.stateDir);
    this.identities = new IpcacheIdentities(o.bpfRoot);
    this.reporter = new AgentFlowReporter({
      agentSocket: o.agentSocket ?? '/run/membrane/agent.sock',
      endpoints: { endpointOf: (ip) => this.decider.endpointOf(ip) },
    });
    this.deps = {
      decider: this.decider,
      reporter: this.reporter,
      upstream: o.upstream ?? new MarkedUpstreamConnector(),
      limits: { maxHeaderBytes: o.settings.proxyMaxHeaderBytes, headerTimeoutMs: o.settings.proxyHeaderTimeoutMs, idleTimeoutMs: o.settings.proxyIdleTimeoutMs },
    };
    this.#http1 = new Http1Proxy(this.deps);
    this.#fqdnLink = new AgentFqdnLink(() => this.reporter.agentSocket);
    this.learner = new FqdnLearner({ stateDir: o.stateDir, bpfRoot: o.bpfRoot, identities: this.identities, agent: this.#fqdnLink, settings: o.settings, log: this.#log });
  }

  /**
   * Loads the last policy, listens, serves the control API and writes the pid file.
   * @throws when a listener or the control socket cannot be set up (nothing is left open)
   */
  static async start(o: ProxyServerOptions): Promise<ProxyServer> {
    const s = new ProxyServer(o);
    try {
      await s.#start();
    } catch (e) {
      await s.stop();
      throw e;
    }
    return s;
  }

  get pidFile(): string {
    return path.join(this.#o.stateDir, 'proxy.pid');
  }

  get controlSocket(): string {
    return path.join(this.#o.stateDir, 'proxy.sock');
  }

  /** The port the HTTP listener is bound to. */
  get httpPort(): number {
    return (this.#listeners[0]?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  async #start(): Promise<void> {
    mkdirSync(this.#o.stateDir, { recursive: true });
    // This thread handles every request and query, each in tens of microseconds: with a short
    // slice it runs as soon as it wakes rather than after the agent's current slice.
    try {
      setThreadSlice(PROXY_SLICE_NS);
    } catch (e) {
      this.#log(`scheduler slice not set: ${(e as Error).message}`);
    }
    this.#loopDelay.enable();
    const stored = this.#store.read();
    if (stored) {
      this.decider.update(stored.snapshot);
      this.learner.setTable(stored.snapshot.fqdn);
      if (stored.agentSocket && !this.#o.agentSocket) this.reporter.agentSocket = stored.agentSocket;
      this.#log(`loaded policy revision ${stored.snapshot.revision} from ${this.#store.file}`);
    }
    const host = this.#o.host ?? '127.0.0.1';
    const port = this.#o.httpPort ?? PROXY_HTTP_PORT;
    const server = net.createServer({ pauseOnConnect: false, noDelay: true }, (sock) => this.#accept(sock, port));
    server.on('error', (e) => this.#log(`listener ${host}:${port}: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (this.#o.plainListener) server.listen(port, host, () => resolve());
      else server.listen({ fd: transparentListenFd(host, port) }, () => resolve());
    });
    this.#listeners.push(server);
    const dnsPort = this.#o.dnsPort === undefined ? PROXY_DNS_PORT : this.#o.dnsPort;
    if (dnsPort !== null && !this.#o.plainListener) {
      this.learner.start();
      this.#dns = await DnsProxy.start({ bpfRoot: this.#o.bpfRoot, host, port: dnsPort, deps: this.deps, identities: this.identities, learner: this.learner, settings: this.#o.settings, log: this.#log });
    }
    this.#control = await this.#serveControl();
    writeFileSync(this.pidFile, `${process.pid}\n`);
    this.#log(`listening on ${host}:${this.httpPort} (http)${this.#dns ? `, ${host}:${this.#dns.port} (dns udp+tcp)` : ''}; control ${this.controlSocket}; pid ${process.pid}`);
  }

  #accept(sock: net.Socket, proxyPort: number): void {
    if (this.#conns.size >= this.#o.settings.proxyMaxConnections) {
      this.refused++;
      sock.resetAndDestroy();
      return;
    }
    this.#conns.add(sock);
    sock.on('close', () => this.#conns.delete(sock));
    sock.on('error', () => {});
    const clientIp = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
    const serverIp = (sock.localAddress ?? '').replace(/^::ffff:/, '');
    const ctx: ConnContext = {
      client: { ip: clientIp, port: sock.remotePort ?? 0, identity: this.identities.identityOf(clientIp) },
      server: { ip: serverIp, port: sock.localPort ?? 0, identity: this.identities.identityOf(serverIp) },
      proxyPort,
      proto: 6,
    };
    this.#route(sock, ctx);
  }

  /** Reads just enough to tell the HTTP/2 preface from HTTP/1.1, puts it back and dispatches. */
  #route(sock: net.Socket, ctx: ConnContext): void {
    let seen: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => sock.destroy(), this.#o.settings.proxyHeaderTimeoutMs).unref();
    const onData = (chunk: Buffer) => {
      seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isPrefix && n < H2_PREFACE.length) return; // could still be HTTP/2: need more
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.pause();
      sock.unshift(seen);
      if (isPrefix) void this.#serveH2(sock, ctx);
      else this.#http1.handle(sock, ctx);
    };
    const onEnd = () => {
      clearTimeout(timer);
      sock.destroy();
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
  }

  async #serveH2(sock: net.Socket, ctx: ConnContext): Promise<void> {
    this.#h2 ??= import('./grpc/h2.ts').then(
      (m: { serveH2?: ServeH2 }) => m.serveH2 ?? null,
      (e: Error) => {
        this.#log(`HTTP/2 is not available (${e.message}): closing HTTP/2 connections`);
        return null;
      },
    );
    const serve = await this.#h2;
    if (!serve) {
      sock.destroy();
      return;
    }
    try {
      serve(sock, ctx, this.deps);
    } catch (e) {
      this.#log(`HTTP/2 connection failed: ${(e as Error).message}`);
      sock.destroy();
    }
  }

  async #serveControl(): Promise<http.Server> {
    const file = this.controlSocket;
    if (existsSync(file)) unlinkSync(file);
    const server = http.createServer((req, res) => {
      const send = (code: number, doc: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(doc));
      };
      if (req.method === 'GET' && req.url === '/v1/status') return send(200, this.status());
      if (req.method === 'GET' && req.url === '/v1/fqdn') return send(200, { names: this.learner.cache.names() });
      if (req.method === 'PUT' && req.url === '/v1/policy') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          let doc: unknown;
          try {
            doc = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch (e) {
            return send(400, { error: `not JSON: ${(e as Error).message}` });
          }
          const problem = snapshotProblem(doc);
          if (problem) return send(400, { error: problem });
          const snapshot = doc as Parameters<SnapshotDecider['update']>[0];
          const agentSocket = req.headers['x-membrane-agent-socket'];
          if (typeof agentSocket === 'string' && agentSocket) this.reporter.agentSocket = agentSocket;
          this.decider.update(snapshot);
          this.learner.setTable(snapshot.fqdn);
          this.#dns?.policyChanged();
          try {
            this.#store.write({ snapshot, agentSocket: this.reporter.agentSocket });
          } catch (e) {
            this.#log(`cannot persist the policy: ${(e as Error).message}`);
          }
          send(200, { revision: snapshot.revision });
        });
        return;
      }
      send(404, { error: `no route ${req.method} ${req.url}` });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => resolve());
    });
    return server;
  }

  status(): Record<string, unknown> {
    return {
      pid: process.pid,
      revision: this.decider.revision,
      listeners: { http: this.httpPort },
      connections: this.#conns.size,
      refused: this.refused,
      agentSocket: this.reporter.agentSocket,
      flows: { sent: this.reporter.sent, dropped: this.reporter.dropped, pending: this.reporter.pending },
      eventLoopDelayMs: { p50: this.#loopDelay.percentile(50) / 1e6, p99: this.#loopDelay.percentile(99) / 1e6, max: this.#loopDelay.max / 1e6 },
      dns: this.#dns
        ? {
            ...this.#dns.status(),
            cache: this.learner.cache.size,
            fqdn: this.learner.stats,
            agent: { sent: this.#fqdnLink.sent, failed: this.#fqdnLink.failed, backlog: this.#fqdnLink.backlog, droppedNames: this.#fqdnLink.droppedNames },
          }
        : null,
    };
  }

  /** Stops listening, closes every connection and removes the pid file and control socket. */
  async stop(): Promise<void> {
    this.#loopDelay.disable();
    for (const l of this.#listeners) l.close();
    for (const c of this.#conns) c.destroy();
    await this.#http1.close();
    if (this.#dns) {
      await this.#dns.stop();
      this.learner.stop();
    }
    this.#fqdnLink.close();
    if (this.#control) await new Promise<void>((r) => this.#control!.close(() => r()));
    this.#control?.closeAllConnections();
    this.reporter.close();
    this.identities.close();
    try {
      if (Number(readFileSync(this.pidFile, 'utf8').trim()) === process.pid) rmSync(this.pidFile, { force: true });
    } catch {
      /* none */
    }
    if (this.#control) rmSync(this.controlSocket, { force: true });
  }
}
