// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/core/upstream
 *
 * MarkedUpstreamConnector: the proxy's upstream connections (DESIGN §4). Each one is a TCP socket
 * created by src/datapath/sockets.ts with `SO_MARK = proxyMark(client identity)` set before
 * `connect()`, so the SYN and every later packet carry the mark: no program enforces or
 * redirects the connection again, and observe attributes it to the real client.
 *
 * Nagle is off (`setNoDelay`), as on undici's own connections: a request head written in two
 * pieces (head, then a small body) would otherwise wait for the server's delayed ACK (~40 ms).
 */
import net from 'node:net';
import { proxyMark } from '../../src/datapath/layout.ts';
import { markedStreamFd } from '../../src/datapath/sockets.ts';
import type { ConnContext, UpstreamConnector } from './types.ts';

export class MarkedUpstreamConnector implements UpstreamConnector {
  /**
   * Opens a marked connection to `ctx.server` (the socket emits 'connect' or 'error').
   * @throws SocketError when the socket cannot be made (e.g. no CAP_NET_ADMIN for SO_MARK)
   */
  connect(ctx: ConnContext): net.Socket {
    const fd = markedStreamFd(proxyMark(ctx.client.identity));
    const s = new net.Socket({ fd, readable: true, writable: true });
    s.setNoDelay(true);
    s.connect(ctx.server.port, ctx.server.ip);
    return s;
  }
}
