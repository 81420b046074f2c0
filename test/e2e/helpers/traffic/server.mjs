// SPDX-License-Identifier: Apache-2.0
/**
 * Test traffic server, run inside a namespace: `nsenter --net=/run/netns/NS node server.mjs …`.
 * Plain Node, no packages, so it starts in ~40 ms.
 *
 *   --tcp PORT    TCP echo (writes back every byte it reads)          (repeatable)
 *   --http PORT   HTTP/1.1: 200 with a JSON body {method, url, headers, remote, local};
 *                 `/status/NNN` answers with status NNN               (repeatable)
 *   --udp PORT    UDP echo (sends each datagram back to its sender)   (repeatable)
 *   --host ADDR   address to bind (default 0.0.0.0)
 *
 * PORT 0 picks a free port. Once every socket listens it prints one line:
 *   {"ready":true,"tcp":[P...],"http":[P...],"udp":[P...]}
 * and runs until SIGTERM/SIGINT.
 */
import net from 'node:net';
import http from 'node:http';
import dgram from 'node:dgram';
import process from 'node:process';
import { Buffer } from 'node:buffer';

const opts = { tcp: [], http: [], udp: [], host: '0.0.0.0' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const v = argv[++i];
  if (v === undefined) fail(`${a} needs a value`);
  if (a === '--host') opts.host = v;
  else if (a === '--tcp' || a === '--http' || a === '--udp') opts[a.slice(2)].push(Number(v));
  else fail(`unknown option ${a}`);
}

function fail(msg) {
  process.stderr.write(`server.mjs: ${msg}\n`);
  process.exit(2);
}

const closers = [];
const listening = { tcp: [], http: [], udp: [] };

function listenTcp(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, opts.host, () => resolve(server.address().port));
  });
}

for (const port of opts.tcp) {
  const sockets = new Set();
  const s = net.createServer((c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.on('error', () => undefined);
    c.pipe(c);
  });
  listening.tcp.push(await listenTcp(s, port));
  closers.push(() => {
    for (const c of sockets) c.destroy();
    s.close();
  });
}

for (const port of opts.http) {
  const s = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const m = /^\/status\/(\d{3})\b/.exec(req.url ?? '');
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
        local: `${req.socket.localAddress}:${req.socket.localPort}`,
        bodyLength: Buffer.concat(chunks).length,
      });
      res.writeHead(m ? Number(m[1]) : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  s.keepAliveTimeout = 60_000;
  listening.http.push(await listenTcp(s, port));
  closers.push(() => {
    s.closeAllConnections?.();
    s.close();
  });
}

for (const port of opts.udp) {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
  s.on('error', () => undefined);
  await new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, opts.host, resolve);
  });
  listening.udp.push(s.address().port);
  closers.push(() => s.close());
}

process.stdout.write(JSON.stringify({ ready: true, ...listening }) + '\n');

function stop() {
  for (const c of closers) c();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
