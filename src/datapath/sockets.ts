// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/sockets
 * Socket options Node cannot set itself, for the proxy (DESIGN §4): IP_TRANSPARENT on the listener that
 * bpf_sk_assign hands redirected flows to (without it the SYN-ACK from the original destination address
 * cannot be routed), and SO_MARK on upstream sockets (`proxyMark(identity)`, so no program enforces the
 * proxy's own traffic again).
 *
 * The upstream socket is created here with its mark already set (markedStreamFd), then handed to Node
 * (`new net.Socket({ fd })` followed by `connect()`), so the SYN itself carries the mark.
 *
 * UDP (the DNS proxy, datapath-trial.md §4 variant ii): the datagrams bpf_sk_assign hands over arrive on a
 * transparent socket on 127.0.0.1:<proxy port> (`transparentListenFd(host, port, { type: 'udp' })`), their
 * sender's identity (and, for those node:dgram delivers, their original destination) comes from mbr_origdst_v1
 * (ProxyOrigMap); those read in batches by {@link DatagramReceiver} carry their original destination
 * (IP_ORIGDSTADDR, {@link setReceiveOrigDst}); queries go upstream from a marked socket
 * (markedDgramFd) and answers go back from a transparent socket bound to the original server's address
 * (transparentReplyFd), so the client sees the server it asked. Every fd is adopted with
 * `dgram.createSocket('udp4').bind({ fd })`.
 */
import { addressOf, errno, libc, strerror } from './libbpf.ts';
import { ipv4Bytes, ipv4Text, writeIpv4 } from './addr.ts';
import { SocketError } from './errors.ts';

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0x800;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_MARK = 36;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const IP_RECVORIGDSTADDR = 20; // also the cmsg type of the answer, IP_ORIGDSTADDR
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const EAGAIN = 11;
const ENOBUFS = 105;

function setInt(fd: number, level: number, name: number, value: number, step: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  if (libc().setsockopt(fd, level, name, v, 4) < 0) {
    const e = errno();
    throw new SocketError(strerror(e), { step, errno: e });
  }
}

/**
 * Sets IP_TRANSPARENT on a socket (e.g. `server._handle.fd` after listen(); accepted sockets inherit it).
 * @throws SocketError (needs CAP_NET_ADMIN)
 */
export function setTransparent(fd: number): void {
  setInt(fd, SOL_IP, IP_TRANSPARENT, 1, 'setsockopt IP_TRANSPARENT');
}

/**
 * Sets a socket's receive buffer beyond net.core.rmem_max (SO_RCVBUFFORCE, needs CAP_NET_ADMIN),
 * falling back to SO_RCVBUF (capped by rmem_max) without the privilege. A UDP listener that
 * falls behind for a moment drops datagrams once its buffer is full.
 */
export function setReceiveBuffer(fd: number, bytes: number): void {
  try {
    setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes, 'setsockopt SO_RCVBUFFORCE');
  } catch {
    setInt(fd, SOL_SOCKET, SO_RCVBUF, bytes, 'setsockopt SO_RCVBUF');
  }
}

/**
 * Asks the kernel to attach each datagram's destination address (IP_ORIGDSTADDR) to what a
 * {@link DatagramReceiver} reads: on a transparent socket fed by bpf_sk_assign that is the address the
 * client sent to (datapath-trial.md §4 variant iii).
 * @throws SocketError
 */
export function setReceiveOrigDst(fd: number): void {
  setInt(fd, SOL_IP, IP_RECVORIGDSTADDR, 1, 'setsockopt IP_RECVORIGDSTADDR');
}

/** Sets SO_MARK on a socket (e.g. `proxyMark(identity)`). @throws SocketError (needs CAP_NET_ADMIN) */
export function setMark(fd: number, mark: number): void {
  setInt(fd, SOL_SOCKET, SO_MARK, mark | 0, 'setsockopt SO_MARK');
}

/** A new non-blocking, close-on-exec IPv4 socket. @throws SocketError */
function newSocket(type: number): number {
  const fd = libc().socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const e = errno();
    throw new SocketError(strerror(e), { step: 'socket', errno: e });
  }
  return fd;
}

/**
 * Creates a non-blocking transparent socket bound to `host:port` (TCP: listening), for
 * `net.Server.listen({ fd })` / `dgram.Socket.bind({ fd })` adoption. With `type: 'udp'` this is the socket
 * the DNS proxy receives redirected datagrams on (SO_REUSEADDR, IP_TRANSPARENT, bound, nothing else).
 * @param host IPv4 address, usually 127.0.0.1
 * @param port port (0 = any)
 * @param o `type` tcp (default) or udp; `backlog` for TCP
 * @returns the fd (the caller owns it)
 * @throws SocketError
 */
export function transparentListenFd(host: string, port: number, o: { type?: 'tcp' | 'udp'; backlog?: number } = {}): number {
  const c = libc();
  const udp = o.type === 'udp';
  const fd = newSocket(udp ? SOCK_DGRAM : SOCK_STREAM);
  try {
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'setsockopt SO_REUSEADDR');
    setTransparent(fd);
    const sa = Buffer.alloc(16); // struct sockaddr_in: u16 family (host order), be16 port, 4-byte addr, 8 zero
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(port, 2);
    ipv4Bytes(host).copy(sa, 4);
    if (c.bind(fd, sa, sa.length) < 0) {
      const e = errno();
      throw new SocketError(`${host}:${port}: ${strerror(e)}`, { step: 'bind', errno: e });
    }
    if (!udp && c.listen(fd, o.backlog ?? 511) < 0) {
      const e = errno();
      throw new SocketError(strerror(e), { step: 'listen', errno: e });
    }
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/**
 * Creates a non-blocking, unconnected TCP socket with SO_MARK already set, for `new net.Socket({ fd })`
 * followed by `socket.connect(port, host)`: every packet of the connection, the SYN included, carries the mark.
 * @param mark e.g. `proxyMark(identity)`
 * @returns the fd (the caller owns it; Node closes it with the socket)
 * @throws SocketError (SO_MARK needs CAP_NET_ADMIN)
 */
export function markedStreamFd(mark: number): number {
  return markedFd(SOCK_STREAM, mark);
}

/**
 * Creates a non-blocking, unbound UDP socket with SO_MARK already set, for
 * `dgram.createSocket('udp4').bind({ fd })`: the DNS proxy's upstream socket, whose queries carry
 * `proxyMark(identity)` so no program enforces or redirects them again. The kernel picks the source address
 * and port on the first send (`socket.address()` reports 0.0.0.0:0 until then). `bind({ fd })` emits
 * 'listening' before it returns: wait with its callback, not with a listener added afterwards.
 * @param mark e.g. `proxyMark(identity)`
 * @returns the fd (the caller owns it; Node closes it with the socket)
 * @throws SocketError (SO_MARK needs CAP_NET_ADMIN)
 * @example
 * const up = dgram.createSocket('udp4');
 * up.bind({ fd: markedDgramFd(proxyMark(identity)) }, () => up.send(query, 53, '10.200.0.20'));
 */
export function markedDgramFd(mark: number): number {
  return markedFd(SOCK_DGRAM, mark);
}

function markedFd(type: number, mark: number): number {
  const fd = newSocket(type);
  try {
    setMark(fd, mark);
    return fd;
  } catch (err) {
    libc().close(fd);
    throw err;
  }
}

/**
 * Creates a non-blocking transparent UDP socket bound to `ip:port`, an address that need not be local (the
 * original DNS server of a redirected query, e.g. 10.200.0.20:53), for `dgram.createSocket('udp4').bind({ fd })`.
 * Answers sent from it carry that source, so the client accepts them as the server's. SO_REUSEADDR lets
 * several such sockets (or a restarted proxy) bind the same address. Nothing is received on it: no route
 * delivers that address locally.
 * @param ip IPv4 address to send from (need not be configured on the node)
 * @param port source port, e.g. 53
 * @returns the fd (the caller owns it; Node closes it with the socket)
 * @throws SocketError (IP_TRANSPARENT needs CAP_NET_ADMIN)
 * @example
 * const reply = dgram.createSocket('udp4');
 * reply.bind({ fd: transparentReplyFd(dst.ip, dst.port) }, () => reply.send(answer, rinfo.port, rinfo.address));
 */
export function transparentReplyFd(ip: string, port: number): number {
  return transparentListenFd(ip, port, { type: 'udp' });
}

/**
 * Sends datagrams on a UDP socket's fd straight through libc (one call, nothing allocated), for the
 * DNS proxy's two sends per query; node:dgram's send costs a request object, an address lookup
 * and a tick each. The socket stays owned by its node:dgram Socket (which receives, and sends
 * what this cannot).
 */
export class DatagramSender {
  readonly fd: number;
  readonly #addr = Buffer.alloc(16);
  readonly #c = libc();

  constructor(fd: number) {
    this.fd = fd;
    this.#addr.writeUInt16LE(AF_INET, 0);
  }

  /**
   * Sends on a connected socket.
   * @returns 'sent'; 'busy' when the socket buffer is full (send it through node:dgram, which
   *   queues it); or the errno of another failure (e.g. ECONNREFUSED after an ICMP error)
   */
  send(buf: Buffer): 'sent' | 'busy' | number {
    return this.#result(this.#c.send(this.fd, buf, buf.length, MSG_DONTWAIT), buf.length);
  }

  /** Sends to `ip:port` (IPv4); results as {@link send}, 'busy' also for an address that is not IPv4. */
  sendTo(buf: Buffer, ip: string, port: number): 'sent' | 'busy' | number {
    if (!writeIpv4(ip, this.#addr, 4)) return 'busy';
    this.#addr.writeUInt16BE(port, 2);
    return this.#result(this.#c.sendto(this.fd, buf, buf.length, MSG_DONTWAIT, this.#addr, 16), buf.length);
  }

  #result(rc: number, len: number): 'sent' | 'busy' | number {
    if (rc === len) return 'sent';
    if (rc >= 0) return 'busy'; // a datagram is sent whole or not at all
    const e = errno();
    return e === EAGAIN || e === ENOBUFS ? 'busy' : e;
  }
}

/**
 * Reads the datagrams waiting on a UDP socket's fd in one call (`recvmmsg` with MSG_DONTWAIT), into
 * buffers made once, for the DNS proxy: node:dgram hands over one datagram per callback (an
 * ArrayBuffer, an address object and a callback scope each) and cannot return control messages.
 * A receiver is an arena, not a socket: it reads whichever fd it is given, and what it read is valid
 * until the next {@link receive} (copy with {@link data}). Node keeps owning and polling the socket;
 * the caller drains it with this after Node delivered a datagram.
 *
 * Layouts (x86_64): `struct mmsghdr` 64 bytes = `struct msghdr` (`void *msg_name @0; socklen_t
 * msg_namelen @8; struct iovec *msg_iov @16; size_t msg_iovlen @24; void *msg_control @32; size_t
 * msg_controllen @40; int msg_flags @48`) + `unsigned msg_len @56`; `struct iovec` 16 (`base @0, len @8`);
 * the name a `struct sockaddr_in` (16); control room for one IP_ORIGDSTADDR message, CMSG_SPACE(16) = 32
 * (`size_t cmsg_len @0; int cmsg_level @8; int cmsg_type @12; struct sockaddr_in @16`).
 */
export class DatagramReceiver {
  readonly slots: number;
  readonly #slotBytes: number;
  readonly #vec: Buffer;
  readonly #iov: Buffer;
  readonly #names: Buffer;
  readonly #ctrl: Buffer;
  readonly #data: Buffer;
  readonly #c = libc();
  readonly #texts = new Map<number, string>();
  #count = 0;
  /** Datagrams read so far. */
  received = 0;

  /**
   * @param slots datagrams read per call at most
   * @param slotBytes room per datagram; 65536 holds any IPv4 UDP payload (a longer one is reported truncated)
   */
  constructor(slots = 32, slotBytes = 65536) {
    this.slots = slots;
    this.#slotBytes = slotBytes;
    this.#vec = Buffer.alloc(slots * 64);
    this.#iov = Buffer.alloc(slots * 16);
    this.#names = Buffer.alloc(slots * 16);
    this.#ctrl = Buffer.alloc(slots * 32);
    this.#data = Buffer.alloc(slots * slotBytes);
    const iov = addressOf(this.#iov);
    const names = addressOf(this.#names);
    const ctrl = addressOf(this.#ctrl);
    const data = addressOf(this.#data);
    for (let i = 0; i < slots; i++) {
      const m = i * 64;
      this.#vec.writeBigUInt64LE(names + BigInt(i * 16), m);
      this.#vec.writeBigUInt64LE(iov + BigInt(i * 16), m + 16);
      this.#vec.writeBigUInt64LE(1n, m + 24);
      this.#vec.writeBigUInt64LE(ctrl + BigInt(i * 32), m + 32);
      this.#iov.writeBigUInt64LE(data + BigInt(i * slotBytes), i * 16);
      this.#iov.writeBigUInt64LE(BigInt(slotBytes), i * 16 + 8);
      this.#reset(i);
    }
  }

  /** The kernel writes back the lengths of name and control data: give each slot its room again. */
  #reset(i: number): void {
    const m = i * 64;
    this.#vec.writeUInt32LE(16, m + 8);
    this.#vec.writeUInt32LE(32, m + 40);
    this.#vec.writeUInt32LE(0, m + 44);
    this.#vec.writeInt32LE(0, m + 48);
  }

  /**
   * Reads up to {@link slots} datagrams waiting on `fd`, without blocking.
   * @returns how many were read (0: none waiting), or a negative errno (e.g. -ECONNREFUSED on a
   *   connected socket after an ICMP error)
   */
  receive(fd: number): number {
    for (let i = 0; i < this.#count; i++) this.#reset(i);
    this.#count = 0;
    const n = this.#c.recvmmsg(fd, this.#vec, this.slots, MSG_DONTWAIT, null);
    if (n < 0) {
      const e = errno();
      return e === EAGAIN ? 0 : -e;
    }
    this.#count = n;
    this.received += n;
    return n;
  }

  /** Datagram `i` of the last {@link receive}: a copy of its bytes. */
  data(i: number): Buffer {
    const len = Math.min(this.#vec.readUInt32LE(i * 64 + 56), this.#slotBytes);
    const out = Buffer.allocUnsafe(len);
    this.#data.copy(out, 0, i * this.#slotBytes, i * this.#slotBytes + len);
    return out;
  }

  /** Whether datagram `i` was longer than the room for it (its bytes are cut short). */
  truncated(i: number): boolean {
    return (this.#vec.readInt32LE(i * 64 + 48) & MSG_TRUNC) !== 0;
  }

  /** Source address of datagram `i` (IPv4 text). */
  sourceIp(i: number): string {
    return this.#text(this.#names, i * 16 + 4);
  }

  /** Source port of datagram `i`. */
  sourcePort(i: number): number {
    return this.#names.readUInt16BE(i * 16 + 2);
  }

  /**
   * The address datagram `i` was sent to, from its IP_ORIGDSTADDR message ({@link setReceiveOrigDst}).
   * @returns null when the datagram carries none
   */
  origDst(i: number): { ip: string; port: number } | null {
    const m = i * 64;
    const c = i * 32;
    if (this.#vec.readUInt32LE(m + 40) < 32) return null;
    if (this.#ctrl.readInt32LE(c + 8) !== SOL_IP || this.#ctrl.readInt32LE(c + 12) !== IP_RECVORIGDSTADDR) return null;
    if (this.#ctrl.readUInt16LE(c + 16) !== AF_INET) return null;
    return { ip: this.#text(this.#ctrl, c + 20), port: this.#ctrl.readUInt16BE(c + 18) };
  }

  /** Dotted text of the 4 bytes at `off`, made once per address (a few thousand kept). */
  #text(buf: Buffer, off: number): string {
    const key = buf.readUInt32BE(off);
    let t = this.#texts.get(key);
    if (t === undefined) {
      if (this.#texts.size >= 4096) this.#texts.clear();
      t = ipv4Text(buf, off);
      this.#texts.set(key, t);
    }
    return t;
  }
}
