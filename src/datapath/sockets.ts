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
 */
import { errno, libc, strerror } from './libbpf.ts';
import { ipv4Bytes } from './addr.ts';
import { SocketError } from './errors.ts';

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0x800;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_MARK = 36;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;

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

/** Sets SO_MARK on a socket (e.g. `proxyMark(identity)`). @throws SocketError (needs CAP_NET_ADMIN) */
export function setMark(fd: number, mark: number): void {
  setInt(fd, SOL_SOCKET, SO_MARK, mark | 0, 'setsockopt SO_MARK');
}

/**
 * Creates a non-blocking transparent socket bound to `host:port` (TCP: listening), for
 * `net.Server.listen({ fd })` / `dgram` adoption.
 * @param host IPv4 address, usually 127.0.0.1
 * @param port port (0 = any)
 * @param o `type` tcp (default) or udp; `backlog` for TCP
 * @returns the fd (the caller owns it)
 * @throws SocketError
 */
export function transparentListenFd(host: string, port: number, o: { type?: 'tcp' | 'udp'; backlog?: number } = {}): number {
  const c = libc();
  const udp = o.type === 'udp';
  const fd = c.socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const e = errno();
    throw new SocketError(strerror(e), { step: 'socket', errno: e });
  }
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
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const e = errno();
    throw new SocketError(strerror(e), { step: 'socket', errno: e });
  }
  try {
    setMark(fd, mark);
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}
