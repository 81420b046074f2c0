// SPDX-License-Identifier: Apache-2.0
/* global process, console */
/**
 * The "floor" of bench/dns.ts: the least a DNS forwarder on node:dgram does, and nothing more.
 * Queries arrive on one socket, leave with a fresh id on one connected upstream socket, and the
 * answer goes back with the query's id: no redirect, no original-destination lookup, no policy,
 * no learning, no map writes, no flow records. What it costs per query, and the tail it shows at
 * a fixed rate, is what any DNS proxy in Node.js pays on this machine before doing its work.
 *
 *   node bench/lib/dns-floor.mjs LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
 *       prints {"ready":"HOST:PORT"} once bound.
 */
import dgram from 'node:dgram';

const [host, port, upHost, upPort] = process.argv.slice(2);
if (!host || !port || !upHost || !upPort) {
  console.error('usage: dns-floor.mjs LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT');
  process.exit(2);
}
const listener = dgram.createSocket('udp4');
const upstream = dgram.createSocket('udp4');
/** by upstream id: where the answer goes and the query's own id */
const waiting = new Array(65536);
let nextId = 0;

listener.on('message', (msg, rinfo) => {
  if (msg.length < 12) return;
  const id = nextId;
  nextId = (nextId + 1) & 0xffff;
  waiting[id] = { address: rinfo.address, port: rinfo.port, id: msg.readUInt16BE(0) };
  msg.writeUInt16BE(id, 0);
  upstream.send(msg);
});
upstream.on('message', (msg) => {
  if (msg.length < 12) return;
  const q = waiting[msg.readUInt16BE(0)];
  if (!q) return;
  waiting[msg.readUInt16BE(0)] = undefined;
  msg.writeUInt16BE(q.id, 0);
  listener.send(msg, q.port, q.address);
});
upstream.connect(Number(upPort), upHost, () => listener.bind(Number(port), host, () => console.log(JSON.stringify({ ready: `${host}:${port}` }))));
process.on('SIGTERM', () => process.exit(0));
