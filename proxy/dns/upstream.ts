// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/dns/upstream
 *
 * Forwarding allowed queries to the original server over the client's transport (reference
 * §5.3 step 6), from the node, marked with the client's identity (SO_MARK) so the datapath
 * neither enforces nor redirects them again and attributes them to the client (DESIGN §4).
 *
 * - Queries are forwarded byte for byte except the 16-bit id, which is replaced by one unique
 *   among the connection's queries in flight (clients choose ids independently); the answer
 *   gets the client's id back from the caller.
 * - UDP: one connected socket per (client identity, server): the kernel drops datagrams from
 *   anyone else, and an ICMP error fails the queries at once (SERVFAIL) instead of at the timeout.
 * - TCP: one connection per client connection (proxy/dns/dns-proxy.ts), length-prefixed (RFC 1035
 *   §4.2.2); answers may come in any order (RFC 7766), matched by id.
 * - No answer within the timeout, a socket error, or a closed connection: null (the caller
 *   answers SERVFAIL).
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { proxyMark } from '../../src/datapath/layout.ts';
import { DatagramSender, markedDgramFd, setReceiveBuffer, type DatagramReceiver } from '../../src/datapath/sockets.ts';
import { messageId, setId } from './message.ts';

/**
 * Batches of answers read per answer node:dgram delivers (the answers waiting are never more
 * than the queries in flight, which dnsMaxConcurrent bounds).
 */
const DRAIN_BATCHES = 4;

interface Pending {
  resolve: (resp: Buffer | null) => void;
  /** performance.now() after which the query has failed */
  deadline: number;
}

/**
 * Queries in flight on one upstream socket, by the id they were sent with. Timeouts are swept
 * by one timer per instance (queries expire in the order they were sent), not one per query.
 */
export class PendingQueries {
  readonly #pending = new Map<number, Pending>();
  readonly #timeoutMs: number;
  #next = (Math.random() * 0x10000) | 0;
  #sweeper?: NodeJS.Timeout;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  get size(): number {
    return this.#pending.size;
  }

  /**
   * Gives `msg` a free id, in place (the caller keeps the query's own id and puts it on the
   * answer), and waits for its answer.
   * @returns the message to send (`msg`) and the answer (null: timeout, failure, or no free id)
   */
  add(msg: Buffer): { wire: Buffer; answer: Promise<Buffer | null> } | null {
    if (this.#pending.size >= 0x10000) return null;
    let id = this.#next;
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    this.#next = (id + 1 + ((Math.random() * 64) | 0)) & 0xffff;
    const wire = msg;
    setId(wire, id);
    const answer = new Promise<Buffer | null>((resolve) => this.#pending.set(id, { resolve, deadline: performance.now() + this.#timeoutMs }));
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.min(250, this.#timeoutMs)).unref();
    return { wire, answer };
  }

  #sweep(): void {
    const now = performance.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline > now) break; // later ones were sent later
      this.#pending.delete(id);
      p.resolve(null);
    }
    if (this.#pending.size === 0) this.#stop();
  }

  #stop(): void {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /** Hands an answer to its query. @returns false when no query waits for its id */
  answer(resp: Buffer): boolean {
    const id = messageId(resp);
    const p = this.#pending.get(id);
    if (!p) return false;
    this.#pending.delete(id);
    p.resolve(resp);
    return true;
  }

  /** Fails every query in flight (null answers). */
  failAll(): void {
    for (const p of this.#pending.values()) p.resolve(null);
    this.#pending.clear();
    this.#stop();
  }
}

/** One connected, marked UDP socket to a server for one client identity. */
class UdpUpstream {
  readonly socket: dgram.Socket;
  readonly pending: PendingQueries;
  readonly #ready: Promise<void>;
  #isReady = false;
  dead = false;

  constructor(identity: number, ip: string, port: number, timeoutMs: number, onDead: () => void, rx?: DatagramReceiver) {
    this.pending = new PendingQueries(timeoutMs);
    this.socket = dgram.createSocket({ type: 'udp4' });
    const fd = markedDgramFd(proxyMark(identity));
    this.#fd = fd;
    this.#rx = rx;
    setReceiveBuffer(fd, 4 << 20);
    this.#ready = new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind({ fd }, () => {
        this.socket.connect(port, ip, () => {
          this.socket.off('error', reject);
          this.#isReady = true;
          resolve();
        });
      });
    });
    this.#sender = new DatagramSender(fd);
    this.#onDead = onDead;
    this.socket.on('message', (resp) => {
      this.pending.answer(resp);
      this.#drain();
    });
    this.socket.on('error', () => this.#fail());
  }

  readonly #sender: DatagramSender;
  readonly #fd: number;
  readonly #rx: DatagramReceiver | undefined;
  readonly #onDead: () => void;

  /** Reads the answers waiting behind the one node:dgram delivered, in batches. */
  #drain(): void {
    const rx = this.#rx;
    if (!rx) return;
    for (let b = 0; b < DRAIN_BATCHES; b++) {
      if (this.dead) return;
      const n = rx.receive(this.#fd);
      if (n < 0) {
        this.#fail(); // e.g. ECONNREFUSED: an ICMP error node:dgram would have reported
        return;
      }
      for (let i = 0; i < n; i++) this.pending.answer(rx.data(i));
      if (n < rx.slots) return;
    }
  }
  /** node:dgram reports a failed send only to its callback (one shared callback, not one per datagram). */
  readonly #onSendError = (err: Error | null): void => {
    if (err) this.#fail();
  };

  /** ICMP unreachable (ECONNREFUSED) or a send error: fail what waits, make a new socket next time. */
  #fail(): void {
    if (this.dead) return;
    this.dead = true;
    this.pending.failAll();
    this.#onDead();
    this.socket.close();
  }

  query(msg: Buffer): Promise<Buffer | null> {
    const q = this.pending.add(msg);
    if (!q) return Promise.resolve(null);
    if (this.#isReady) this.#send(q.wire);
    else this.#ready.then(() => this.#send(q.wire), () => this.pending.failAll());
    return q.answer;
  }

  #send(wire: Buffer): void {
    if (this.dead) {
      this.pending.failAll();
      return;
    }
    const r = this.#sender.send(wire);
    if (r === 'sent') return;
    if (r !== 'busy') {
      this.#fail();
      return;
    }
    try {
      this.socket.send(wire, this.#onSendError); // queued by node:dgram until the socket drains
    } catch {
      this.pending.failAll(); // closed meanwhile
    }
  }

  close(): void {
    this.pending.failAll();
    if (!this.dead) {
      this.dead = true;
      try {
        this.socket.close();
      } catch {
        /* closed */
      }
    }
  }
}

/** Upstream sockets kept (per client identity and server); the least recently made is closed beyond. */
const MAX_UPSTREAM_SOCKETS = 1024;

export class UdpUpstreams {
  readonly #sockets = new Map<string, UdpUpstream>();
  readonly #timeoutMs: number;
  readonly #rx: DatagramReceiver | undefined;

  /** @param rx batch reads of answers (without: node:dgram delivers each) */
  constructor(timeoutMs: number, rx?: DatagramReceiver) {
    this.#timeoutMs = timeoutMs;
    this.#rx = rx;
  }

  get size(): number {
    return this.#sockets.size;
  }

  /** Forwards a query (answer or null). @throws SocketError when no marked socket can be made */
  query(identity: number, ip: string, port: number, msg: Buffer): Promise<Buffer | null> {
    const key = `${identity}|${ip}|${port}`;
    let u = this.#sockets.get(key);
    if (!u || u.dead) {
      if (this.#sockets.size >= MAX_UPSTREAM_SOCKETS) {
        const [oldKey, old] = this.#sockets.entries().next().value as [string, UdpUpstream];
        this.#sockets.delete(oldKey);
        old.close(); // its queries in flight get SERVFAIL
      }
      const made: UdpUpstream = new UdpUpstream(identity, ip, port, this.#timeoutMs, () => {
        if (this.#sockets.get(key) === made) this.#sockets.delete(key);
      }, this.#rx);
      u = made;
      this.#sockets.set(key, u);
    }
    return u.query(msg);
  }

  close(): void {
    for (const u of this.#sockets.values()) u.close();
    this.#sockets.clear();
  }
}

/** Splits a TCP byte stream into DNS messages (2-byte length prefix). */
export class TcpFramer {
  #buf: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns the complete messages. */
  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.#buf.length >= 2) {
      const len = this.#buf.readUInt16BE(0);
      if (this.#buf.length < 2 + len) break;
      out.push(this.#buf.subarray(2, 2 + len));
      this.#buf = this.#buf.subarray(2 + len);
    }
    return out;
  }

  /** Bytes of an incomplete message. */
  get buffered(): number {
    return this.#buf.length;
  }
}

/** `msg` with its 2-byte length prefix. */
export function tcpFrame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}

/** The upstream side of one client TCP connection. */
export class TcpUpstream {
  readonly #conn: Duplex;
  readonly pending: PendingQueries;
  readonly #framer = new TcpFramer();
  #closed = false;

  /** @param conn a marked connection to the original server (UpstreamConnector) */
  constructor(conn: Duplex, timeoutMs: number) {
    this.#conn = conn;
    this.pending = new PendingQueries(timeoutMs);
    conn.on('data', (c: Buffer) => {
      for (const m of this.#framer.push(c)) this.pending.answer(m);
    });
    const end = () => {
      this.#closed = true;
      this.pending.failAll();
    };
    conn.on('close', end);
    conn.on('end', end);
    conn.on('error', end);
  }

  get closed(): boolean {
    return this.#closed;
  }

  query(msg: Buffer): Promise<Buffer | null> {
    if (this.#closed) return Promise.resolve(null);
    const q = this.pending.add(msg);
    if (!q) return Promise.resolve(null);
    this.#conn.write(tcpFrame(q.wire));
    return q.answer;
  }

  close(): void {
    this.#closed = true;
    this.pending.failAll();
    this.#conn.destroy();
  }
}
