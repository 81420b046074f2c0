// SPDX-License-Identifier: Apache-2.0
/* global process, console */
/**
 * The "floor" of bench/http.ts: the two components issue 4 prescribes for the proxy, node:http
 * for the inbound side and one undici Pool (keep-alive) for the upstream side, joined the way
 * proxy/http/http1.ts joins them (`Pool.dispatch` with a handler that relays the response with
 * backpressure), and nothing else: no transparent socket, no policy, no flow records, no agent.
 * What it reaches is what any proxy built on these components can reach on this machine; the
 * difference to ours is the cost of enforcement and reporting.
 *
 *   node bench/lib/http-floor.mjs LISTEN_HOST LISTEN_PORT UPSTREAM_URL
 *       prints {"ready":"HOST:PORT"} once listening.
 */
import http from 'node:http';
import { Pool } from 'undici';

const [host, port, upstream] = process.argv.slice(2);
if (!host || !port || !upstream) {
  console.error('usage: http-floor.mjs LISTEN_HOST LISTEN_PORT UPSTREAM_URL');
  process.exit(2);
}
// hop-by-hop headers (RFC 9110 §7.6.1) and host, which undici sets from the origin
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);
const pool = new Pool(upstream, { keepAliveTimeout: 4_000 });

class Relay {
  constructor(res) {
    this.res = res;
    this.controller = null;
    res.on('drain', () => this.controller?.resume());
  }
  onRequestStart(controller) {
    this.controller = controller;
  }
  onResponseStart(_controller, statusCode, headers) {
    if (statusCode < 200) return;
    const flat = [];
    for (const k in headers) {
      if (HOP.has(k)) continue;
      const v = headers[k];
      if (Array.isArray(v)) for (const one of v) flat.push(k, one);
      else flat.push(k, v);
    }
    this.res.writeHead(statusCode, flat);
  }
  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) controller.pause();
  }
  onResponseEnd() {
    this.res.end();
  }
  onResponseError(_controller, _err) {
    if (!this.res.headersSent) this.res.writeHead(502, { 'content-length': 0 });
    this.res.end();
  }
}

const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (!HOP.has(req.rawHeaders[i].toLowerCase())) headers.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const bodyless = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
  pool.dispatch({ path: req.url, method: req.method, headers, body: bodyless ? null : req }, new Relay(res));
});
server.listen(Number(port), host, () => console.log(JSON.stringify({ ready: `${host}:${port}` })));
process.on('SIGTERM', () => {
  server.close();
  void pool.destroy();
  process.exit(0);
});
