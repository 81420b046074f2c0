// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/dns/dns-proxy
 *
 * The DNS proxy of `membrane proxy` (reference §5.1–§5.3; DESIGN §4 "DNS redirect").
 *
 * How queries arrive: port-53 flows the policy redirects (`rules.dns`) are bpf_sk_assign-ed to
 * 127.0.0.1:<dns proxy port> in the node namespace.
 * - UDP: a socket bound there, owned and polled by node:dgram. The datapath records each
 *   redirected datagram's original destination and the sending endpoint's identity in
 *   mbr_origdst_v1, keyed by the client's address and port (src/datapath/proxy-orig-map.ts):
 *   the proxy takes the client's identity from there for every datagram (none: not redirected,
 *   dropped). Node delivers one datagram per callback and cannot read IP_ORIGDSTADDR, so for that
 *   one the destination comes from the entry too; the datagrams waiting behind it are read in
 *   batches (recvmmsg, DatagramReceiver) with their own IP_ORIGDSTADDR. Answers from upstream
 *   are drained the same way. The answer goes back from a transparent socket bound to the
 *   original server's address and port, so the client sees the server it asked answer (no NAT).
 * - TCP: a transparent listener; the original destination is the accepted socket's local address.
 *
 * Each query (handle):
 * 1. not a DNS query: FORMERR when the header is readable, else dropped; never a throw;
 * 2. more than dnsMaxConcurrent in flight: SERVFAIL;
 * 3. policy (proxy/core Decider, DNS rules of the client's egress for the server's identity, and
 *    the server endpoint's ingress when it is local): denied → REFUSED (or NXDOMAIN,
 *    dnsDenyResponse); audit mode forwards and reports `audit`;
 * 4. forwarded to the original server over the same transport (proxy/dns/upstream.ts); no
 *    answer in dnsUpstreamTimeoutMs or an upstream error: SERVFAIL;
 * 5. a NOERROR answer with addresses for the query name: the addresses reach the cache and the
 *    maps before the answer is released (proxy/dns/fqdn-learner.ts);
 * 6. the answer goes to the client with its own id; one DNS flow is reported (name, answer IPs,
 *    TTL, rcode, verdict, deciding policy).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Settings } from '../../src/config.ts';
import { ProxyOrigMap, type OrigDestination } from '../../src/datapath/proxy-orig-map.ts';
import { DatagramReceiver, DatagramSender, setReceiveBuffer, setReceiveOrigDst, transparentListenFd, transparentReplyFd } from '../../src/datapath/sockets.ts';
import { normalizeDnsName } from '../../src/l7/dns.ts';
import type { IpcacheIdentities } from '../core/identities.ts';
import type { ConnContext, ProtocolDeps, RequestDecision } from '../core/types.ts';
import type { FqdnLearner } from './fqdn-learner.ts';
import { errorResponse, formatError, parseAnswer, parseQuery, setId, type DnsQuery } from './message.ts';
import { TcpFramer, tcpFrame, TcpUpstream, UdpUpstreams } from './upstream.ts';

export const PROXY_DNS_PORT = 15053;

/**
 * How long a server address's identity is reused before the ipcache is read again (also
 * forgotten at every policy update). Queries go to a handful of servers.
 */
const IDENTITY_TTL_MS = 1000;
/** Receive buffer of the UDP listener: bursts of queries wait here, not dropped (8 MiB). */
const LISTENER_RCVBUF = 8 << 20;
/** Reply sockets kept (one per server address:port; the least recently made is closed beyond). */
const MAX_REPLY_SOCKETS = 256;
/** A TCP client's unread answers beyond which it is not read from until it drains. */
const TCP_WRITE_HIGH_WATER = 1 << 20;
/** Bounds of the per-policy caches (cleared when reached). */
const MAX_CACHED = 16384;
/** Queries read in batches per event-loop turn at most (see #drain). */
const DRAIN_BUDGET = 256;

export interface DnsProxyOptions {
  bpfRoot: string;
  /** Listening address (default 127.0.0.1, where the datapath looks). */
  host?: string;
  /** Port for UDP and TCP (default 15053). */
  port?: number;
  deps: ProtocolDeps;
  identities: IpcacheIdentities;
  learner: FqdnLearner;
  settings: Pick<Settings, 'dnsDenyResponse' | 'dnsUpstreamTimeoutMs' | 'dnsMaxConcurrent' | 'proxyIdleTimeoutMs' | 'proxyMaxConnections'>;
  log: (msg: string) => void;
}

/** Forwards a query upstream (answer, or null for SERVFAIL). */
type Forward = (msg: Buffer, ctx: ConnContext) => Promise<Buffer | null>;

export class DnsProxy {
  readonly #o: DnsProxyOptions;
  readonly #udpUpstreams: UdpUpstreams;
  readonly #replySockets = new Map<string, { socket: dgram.Socket; sender: DatagramSender }>();
  readonly #conns = new Set<net.Socket>();
  #udp?: dgram.Socket;
  #udpFd = -1;
  #host = '127.0.0.1';
  #drainBudget = DRAIN_BUDGET;
  #budgetReset: NodeJS.Immediate | undefined;
  /** Batch reads for the listener and the upstream sockets (one arena: each read is copied out at once). */
  readonly #rx = new DatagramReceiver();
  #tcp?: net.Server;
  #orig: ProxyOrigMap | null = null;
  #origRetryAt = 0;
  #inflight = 0;
  /** Decisions of this policy: the same client asks the same server the same names. */
  readonly #decisions = new Map<string, RequestDecision>();
  readonly #serverIds = new Map<string, { id: number; until: number }>();
  readonly stats = { queries: 0, allowed: 0, denied: 0, audit: 0, servfail: 0, malformed: 0, noOrigDst: 0, overload: 0, batchedQueries: 0 };

  private constructor(o: DnsProxyOptions) {
    this.#o = o;
    this.#udpUpstreams = new UdpUpstreams(o.settings.dnsUpstreamTimeoutMs, this.#rx);
  }

  /** Listens on UDP and TCP. @throws when a socket cannot be made (nothing is left open) */
  static async start(o: DnsProxyOptions): Promise<DnsProxy> {
    const p = new DnsProxy(o);
    try {
      await p.#listen();
    } catch (e) {
      await p.stop();
      throw e;
    }
    return p;
  }

  /** The port both listeners use (read once: address() is a syscall). */
  get port(): number {
    if (!this.#port && this.#udp) this.#port = this.#udp.address().port;
    return this.#port;
  }

  #port = 0;

  get inflight(): number {
    return this.#inflight;
  }

  async #listen(): Promise<void> {
    const host = this.#o.host ?? '127.0.0.1';
    this.#host = host;
    const port = this.#o.port ?? PROXY_DNS_PORT;
    const udp = dgram.createSocket({ type: 'udp4' });
    this.#udp = udp;
    const fd = transparentListenFd(host, port, { type: 'udp' });
    setReceiveBuffer(fd, LISTENER_RCVBUF);
    setReceiveOrigDst(fd);
    this.#udpFd = fd;
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ fd }, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', (e) => this.#o.log(`DNS UDP listener: ${e.message}`));
    udp.on('message', (msg, rinfo) => {
      this.#onDatagram(msg, rinfo.address, rinfo.port, null);
      this.#drain();
    });
    const tcp = net.createServer({ noDelay: true }, (s) => this.#onConnection(s));
    this.#tcp = tcp;
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ fd: transparentListenFd(host, this.port) }, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
    tcp.on('error', (e) => this.#o.log(`DNS TCP listener: ${e.message}`));
  }

  /** The policy (or identities) changed: decide everything again. */
  policyChanged(): void {
    this.#decisions.clear();
    this.#serverIds.clear();
  }

  /** The identity of an address, reused for IDENTITY_TTL_MS. */
  #identityOf(ip: string): number {
    const now = performance.now();
    const c = this.#serverIds.get(ip);
    if (c && c.until > now) return c.id;
    const id = this.#o.identities.identityOf(ip);
    if (this.#serverIds.size >= MAX_CACHED) this.#serverIds.clear();
    this.#serverIds.set(ip, { id, until: now + IDENTITY_TTL_MS });
    return id;
  }

  #origMap(): ProxyOrigMap | null {
    if (this.#orig) return this.#orig;
    const now = Date.now();
    if (now < this.#origRetryAt) return null;
    try {
      this.#orig = ProxyOrigMap.open(this.#o.bpfRoot);
    } catch {
      this.#origRetryAt = now + 1000;
    }
    return this.#orig;
  }

  /**
   * Reads the queries waiting behind the one node:dgram delivered, in batches, within a budget
   * per event-loop turn (node:dgram itself delivers up to 32 per wake-up, each followed by a
   * drain): beyond it, or near dnsMaxConcurrent, queries wait in the socket's buffer while
   * answers, timers and the HTTP proxy get their turn.
   */
  #drain(): void {
    const rx = this.#rx;
    while (this.#drainBudget > 0 && this.#inflight + rx.slots <= this.#o.settings.dnsMaxConcurrent) {
      const n = rx.receive(this.#udpFd);
      if (n < 0) {
        this.#o.log(`DNS UDP listener: receive failed (errno ${-n})`);
        return;
      }
      this.#drainBudget -= n;
      this.stats.batchedQueries += n;
      for (let i = 0; i < n; i++) {
        if (rx.truncated(i)) this.stats.malformed++; // (a slot holds any IPv4 UDP payload)
        else this.#onDatagram(rx.data(i), rx.sourceIp(i), rx.sourcePort(i), rx.origDst(i));
      }
      if (n < rx.slots) break;
    }
    if (this.#drainBudget < DRAIN_BUDGET && !this.#budgetReset) {
      this.#budgetReset = setImmediate(() => {
        this.#budgetReset = undefined;
        this.#drainBudget = DRAIN_BUDGET;
      });
    }
  }

  /**
   * One query datagram from `ip:port`. The datapath recorded it in mbr_origdst_v1 when it
   * redirected it, with the sending endpoint's identity (known from its veth, not from the
   * source address a pod could forge): no entry, not redirected (e.g. sent to the listener
   * directly), dropped. The server is the one the datagram itself was sent to when it says
   * (IP_ORIGDSTADDR; exact even when the client asked another server from the same port since),
   * else the one the entry recorded.
   * @param sentTo the datagram's IP_ORIGDSTADDR, or null (node:dgram cannot read it)
   */
  #onDatagram(msg: Buffer, ip: string, port: number, sentTo: { ip: string; port: number } | null): void {
    let orig: OrigDestination | null = null;
    try {
      orig = this.#origMap()?.lookup(ip, port, 17) ?? null;
    } catch {
      this.#orig?.close();
      this.#orig = null; // pins replaced: reopen next time
    }
    if (!orig || (sentTo && sentTo.port === this.port && sentTo.ip === this.#host)) {
      // Without the original server there is nobody to forward to or answer as: drop (the
      // client retries). Happens when the map lost the entry (LRU) or is not there, or for
      // datagrams the datapath did not redirect.
      this.stats.noOrigDst++;
      return;
    }
    const server = sentTo ?? orig;
    const ctx: ConnContext = {
      client: { ip, port, identity: orig.identity || this.#identityOf(ip) },
      server: { ip: server.ip, port: server.port, identity: this.#identityOf(server.ip) },
      proxyPort: this.port,
      proto: 17,
    };
    void this.#answerUdp(msg, ctx);
  }

  /** UDP queries go upstream from a marked socket per (client identity, server). */
  readonly #forwardUdp: Forward = (q, ctx) => this.#udpUpstreams.query(ctx.client.identity, ctx.server.ip, ctx.server.port, q);

  /** Handles one datagram and sends its answer (no closures per datagram: this is the hot path). */
  async #answerUdp(msg: Buffer, ctx: ConnContext): Promise<void> {
    try {
      const resp = await this.handle(msg, ctx, this.#forwardUdp);
      if (!resp) return;
      const r = this.#replySocket(ctx.server.ip, ctx.server.port);
      // straight through libc; node:dgram when the socket is full (it queues) or for its error report
      if (r && r.sender.sendTo(resp, ctx.client.ip, ctx.client.port) !== 'sent') r.socket.send(resp, ctx.client.port, ctx.client.ip);
    } catch (e) {
      this.#o.log(`DNS query from ${ctx.client.ip}: ${(e as Error).message}`);
    }
  }

  /** The transparent socket that answers as `ip:port` (made once per server). */
  #replySocket(ip: string, port: number): { socket: dgram.Socket; sender: DatagramSender } | null {
    // never the listener's own address: a socket bound there would take its datagrams
    if (port === this.port && ip === this.#host) return null;
    const key = `${ip}:${port}`;
    let r = this.#replySockets.get(key);
    if (r) return r;
    if (this.#replySockets.size >= MAX_REPLY_SOCKETS) {
      const [oldKey, old] = this.#replySockets.entries().next().value as [string, { socket: dgram.Socket }];
      this.#replySockets.delete(oldKey);
      old.socket.close();
    }
    try {
      const fd = transparentReplyFd(ip, port);
      const s = dgram.createSocket({ type: 'udp4' });
      s.bind({ fd });
      s.on('error', (e) => {
        this.#o.log(`DNS reply socket ${key}: ${e.message}`);
        if (this.#replySockets.get(key)?.socket === s) this.#replySockets.delete(key);
        s.close();
      });
      r = { socket: s, sender: new DatagramSender(fd) };
      this.#replySockets.set(key, r);
      return r;
    } catch (e) {
      this.#o.log(`DNS reply socket ${key}: ${(e as Error).message}`);
      return null;
    }
  }

  #onConnection(sock: net.Socket): void {
    if (this.#conns.size >= this.#o.settings.proxyMaxConnections) {
      sock.resetAndDestroy();
      return;
    }
    this.#conns.add(sock);
    const clientIp = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
    const serverIp = (sock.localAddress ?? '').replace(/^::ffff:/, '');
    const ctx: ConnContext = {
      client: { ip: clientIp, port: sock.remotePort ?? 0, identity: this.#o.identities.identityOf(clientIp) },
      server: { ip: serverIp, port: sock.localPort ?? 0, identity: this.#o.identities.identityOf(serverIp) },
      proxyPort: this.port,
      proto: 6,
    };
    let upstream: TcpUpstream | null = null;
    const forward: Forward = (q) => {
      if (!upstream || upstream.closed) {
        try {
          upstream = new TcpUpstream(this.#o.deps.upstream.connect(ctx), this.#o.settings.dnsUpstreamTimeoutMs);
        } catch (e) {
          this.#o.log(`DNS upstream ${serverIp}: ${(e as Error).message}`);
          return Promise.resolve(null);
        }
      }
      return upstream.query(q);
    };
    const framer = new TcpFramer();
    sock.setTimeout(this.#o.settings.proxyIdleTimeoutMs, () => sock.destroy());
    sock.on('data', (chunk: Buffer) => {
      if (framer.buffered + chunk.length > 2 * 65537) {
        sock.destroy(); // more than one whole message pending: not DNS
        return;
      }
      for (const m of framer.push(chunk)) {
        this.handle(m, ctx, forward).then(
          (resp) => {
            if (!resp || sock.destroyed) return;
            sock.write(tcpFrame(resp));
            // a client that sends and does not read: stop reading it until it catches up
            if (sock.writableLength > TCP_WRITE_HIGH_WATER && !sock.isPaused()) {
              sock.pause();
              sock.once('drain', () => sock.resume());
            }
          },
          (e: Error) => this.#o.log(`DNS query over TCP from ${clientIp}: ${e.message}`),
        );
      }
    });
    sock.on('error', () => {});
    sock.on('end', () => sock.end());
    sock.on('close', () => {
      this.#conns.delete(sock);
      upstream?.close();
    });
  }

  /**
   * Decides, forwards and learns one query (steps 1–6 of the module comment).
   * @returns the answer for the client, or null to send nothing
   */
  async handle(msg: Buffer, ctx: ConnContext, forward: Forward): Promise<Buffer | null> {
    const started = performance.now();
    this.stats.queries++;
    const q = parseQuery(msg);
    if (!q) {
      this.stats.malformed++;
      return formatError(msg);
    }
    const qname = normalizeDnsName(q.qname || '.');
    const dkey = `${ctx.client.ip}|${ctx.client.identity}|${ctx.server.ip}|${ctx.server.identity}|${ctx.proto}|${ctx.server.port}|${qname}`;
    let decision = this.#decisions.get(dkey);
    if (!decision) {
      decision = this.#o.deps.decider.decide(ctx, { type: 'dns', qname });
      if (this.#decisions.size >= MAX_CACHED) this.#decisions.clear();
      this.#decisions.set(dkey, decision);
    }
    if (this.#inflight >= this.#o.settings.dnsMaxConcurrent) {
      this.stats.overload++;
      return this.#refuse(ctx, q, qname, decision, 'SERVFAIL', started);
    }
    if (!decision.forward) {
      this.stats.denied++;
      return this.#refuse(ctx, q, qname, decision, this.#o.settings.dnsDenyResponse, started);
    }
    if (decision.verdict === 'audit') this.stats.audit++;
    else this.stats.allowed++;
    this.#inflight++;
    try {
      let resp: Buffer | null = null;
      try {
        resp = await forward(msg, ctx);
      } catch (e) {
        this.#o.log(`DNS forward to ${ctx.server.ip}: ${(e as Error).message}`);
      }
      const a = resp ? parseAnswer(resp) : null;
      if (!resp || !a) {
        this.stats.servfail++;
        return this.#refuse(ctx, q, qname, decision, 'SERVFAIL', started);
      }
      if (a.rcode === 'NOERROR' && a.ips.length > 0 && a.qname === qname) {
        try {
          const held = this.#o.learner.learn(qname, a.ips, a.ttl);
          if (held) await held;
        } catch (e) {
          this.#o.log(`DNS answer for ${qname}: ${(e as Error).message}`);
        }
      }
      setId(resp, q.id);
      this.#o.deps.reporter.report(ctx, { type: 'dns', query: qname, qtypes: q.qtypes, rcode: a.rcode, ips: a.ips, ttl: a.ttl }, decision, performance.now() - started);
      return resp;
    } finally {
      this.#inflight--;
    }
  }

  #refuse(ctx: ConnContext, q: DnsQuery, qname: string, decision: RequestDecision, rcode: 'REFUSED' | 'NXDOMAIN' | 'SERVFAIL', started: number): Buffer {
    this.#o.deps.reporter.report(ctx, { type: 'dns', query: qname, qtypes: q.qtypes, rcode, ips: [], ttl: 0 }, decision, performance.now() - started);
    return errorResponse(q, rcode);
  }

  status(): Record<string, unknown> {
    // batchedQueries/batchedAnswers: read in batches rather than one per node:dgram callback
    return { port: this.port, inflight: this.#inflight, tcpConnections: this.#conns.size, upstreamSockets: this.#udpUpstreams.size, ...this.stats, batchedAnswers: this.#rx.received - this.stats.batchedQueries };
  }

  async stop(): Promise<void> {
    for (const c of this.#conns) c.destroy();
    this.#udpUpstreams.close();
    for (const r of this.#replySockets.values()) r.socket.close();
    this.#replySockets.clear();
    if (this.#udp) {
      try {
        this.#udp.close();
      } catch {
        /* closed */
      }
    }
    if (this.#budgetReset) clearImmediate(this.#budgetReset);
    if (this.#tcp) await new Promise<void>((r) => this.#tcp!.close(() => r()));
    this.#orig?.close();
  }
}
