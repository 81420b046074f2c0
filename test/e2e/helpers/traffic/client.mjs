// SPDX-License-Identifier: Apache-2.0
/**
 * Test traffic client, run inside a namespace: `nsenter --net=/run/netns/NS node client.mjs …`.
 * Plain Node, no packages. Prints exactly one JSON line and exits 0 (the outcome is in the JSON).
 *
 *   client.mjs tcp  HOST PORT [--send TEXT] [--timeout MS]
 *       connect, send TEXT (default "ping\n"), wait until it is echoed back
 *   client.mjs udp  HOST PORT [--send TEXT] [--timeout MS]
 *       send one datagram, wait for one back
 *   client.mjs http HOST PORT [--path P] [--method M] [--header 'Name: value']... [--body TEXT] [--timeout MS]
 *
 * Output: {"result": "ok"|"timeout"|"refused"|"reset"|"unreachable"|"error", "ms": N, ...}
 *   tcp:  "stage": "connect"|"reply" (where a timeout happened), "reply", "localPort"
 *   udp:  "reply"
 *   http: "status", "headers", "body"
 *   all:  "error" (the error code or message) unless ok
 * Default timeout 1000 ms: drops show up as "timeout" quickly.
 */
import net from 'node:net';
import http from 'node:http';
import dgram from 'node:dgram';
import process from 'node:process';
import { Buffer } from 'node:buffer';
import { setTimeout, clearTimeout } from 'node:timers';

const [mode, host, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);
const opt = { send: 'ping\n', timeout: 1000, path: '/', method: 'GET', headers: {}, body: undefined };
for (let i = 0; i < rest.length; i++) {
  const a = rest[i];
  const v = rest[++i];
  if (v === undefined) usage(`${a} needs a value`);
  if (a === '--send') opt.send = v;
  else if (a === '--timeout') opt.timeout = Number(v);
  else if (a === '--path') opt.path = v;
  else if (a === '--method') opt.method = v;
  else if (a === '--body') opt.body = v;
  else if (a === '--header') {
    const idx = v.indexOf(':');
    if (idx < 1) usage(`bad header '${v}'`);
    opt.headers[v.slice(0, idx).trim()] = v.slice(idx + 1).trim();
  } else usage(`unknown option ${a}`);
}
if (!['tcp', 'udp', 'http'].includes(mode) || !host || !Number.isInteger(port)) usage('expected tcp|udp|http HOST PORT');

function usage(msg) {
  process.stderr.write(`client.mjs: ${msg}\n`);
  process.exit(2);
}

const start = process.hrtime.bigint();
let printed = false;
function done(obj) {
  if (printed) return;
  printed = true;
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  process.stdout.write(JSON.stringify({ ...obj, ms: Math.round(ms * 1000) / 1000 }) + '\n');
  process.exit(0);
}

function classify(err) {
  const code = err?.code ?? '';
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'unreachable';
  if (code === 'ETIMEDOUT') return 'timeout';
  return 'error';
}

if (mode === 'tcp') {
  let stage = 'connect';
  let reply = Buffer.alloc(0);
  const want = Buffer.byteLength(opt.send);
  const sock = net.connect({ host, port });
  const timer = setTimeout(() => {
    sock.destroy();
    done({ result: 'timeout', stage, reply: reply.toString() });
  }, opt.timeout);
  sock.on('connect', () => {
    stage = 'reply';
    if (want === 0) {
      clearTimeout(timer);
      sock.end();
      done({ result: 'ok', stage, reply: '', localPort: sock.localPort });
    }
    sock.write(opt.send);
  });
  sock.on('data', (d) => {
    reply = Buffer.concat([reply, d]);
    if (reply.length >= want) {
      clearTimeout(timer);
      const localPort = sock.localPort;
      sock.destroy();
      done({ result: 'ok', stage, reply: reply.toString(), localPort });
    }
  });
  sock.on('end', () => {
    clearTimeout(timer);
    done({ result: reply.length >= want ? 'ok' : 'reset', stage, reply: reply.toString(), error: 'closed by peer' });
  });
  sock.on('error', (e) => {
    clearTimeout(timer);
    done({ result: classify(e), stage, reply: reply.toString(), error: e.code ?? e.message });
  });
} else if (mode === 'udp') {
  const s = dgram.createSocket('udp4');
  const timer = setTimeout(() => {
    s.close();
    done({ result: 'timeout' });
  }, opt.timeout);
  s.on('message', (msg) => {
    clearTimeout(timer);
    s.close();
    done({ result: 'ok', reply: msg.toString() });
  });
  s.on('error', (e) => {
    clearTimeout(timer);
    done({ result: classify(e), error: e.code ?? e.message });
  });
  s.connect(port, host, () => s.send(opt.send));
} else {
  const req = http.request({ host, port, method: opt.method, path: opt.path, headers: opt.headers, agent: false });
  const timer = setTimeout(() => {
    req.destroy();
    done({ result: 'timeout' });
  }, opt.timeout);
  req.on('response', (res) => {
    const chunks = [];
    res.on('data', (d) => chunks.push(d));
    res.on('end', () => {
      clearTimeout(timer);
      done({ result: 'ok', status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() });
    });
    res.on('error', (e) => {
      clearTimeout(timer);
      done({ result: classify(e), status: res.statusCode, error: e.code ?? e.message });
    });
  });
  req.on('error', (e) => {
    clearTimeout(timer);
    done({ result: classify(e), error: e.code ?? e.message });
  });
  req.end(opt.body);
}
