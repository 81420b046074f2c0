// SPDX-License-Identifier: Apache-2.0
/**
 * Test traffic loop, run inside a namespace: `nsenter --net=/run/netns/NS node loop.mjs …`.
 * Plain Node, no packages. Opens TCP connections one after another (per worker) until SIGTERM
 * or SIGINT, and prints one JSON line per attempt, so a test can tell exactly when each one
 * started and ended (wall clock, ms) and how it went:
 *
 *   loop.mjs HOST PORT [--timeout MS] [--interval MS] [--concurrency N] [--send TEXT]
 *
 *   {"t": START_MS, "e": END_MS, "r": "ok"|"timeout"|"refused"|"reset"|"unreachable"|"error",
 *    "c": true|false (the handshake completed), "err": CODE?}
 *
 * `ok` means TEXT (default "ping\n") came back; `c` alone means the SYN got through. Each
 * connection is closed by the client after the echo (the client keeps TIME_WAIT, so a 4-tuple
 * is never reused during a test). Prints {"done":true} after the last attempt, then exits 0.
 */
import net from 'node:net';
import process from 'node:process';
import { Buffer } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import { setTimeout, clearTimeout } from 'node:timers';

const [host, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);
const opt = { timeout: 1000, interval: 0, concurrency: 1, send: 'ping\n' };
for (let i = 0; i < rest.length; i += 2) {
  const a = rest[i];
  const v = rest[i + 1];
  if (v === undefined) usage(`${a} needs a value`);
  if (a === '--timeout') opt.timeout = Number(v);
  else if (a === '--interval') opt.interval = Number(v);
  else if (a === '--concurrency') opt.concurrency = Number(v);
  else if (a === '--send') opt.send = v;
  else usage(`unknown option ${a}`);
}
if (!host || !Number.isInteger(port)) usage('expected HOST PORT');

function usage(msg) {
  process.stderr.write(`loop.mjs: ${msg}\n`);
  process.exit(2);
}

function classify(err) {
  const code = err?.code ?? '';
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'unreachable';
  if (code === 'ETIMEDOUT') return 'timeout';
  return 'error';
}

function attempt() {
  return new Promise((resolve) => {
    const t = Date.now();
    let connected = false;
    let reply = Buffer.alloc(0);
    const want = Buffer.byteLength(opt.send);
    let finished = false;
    const sock = net.connect({ host, port });
    const finish = (r, err) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ t, e: Date.now(), r, c: connected, ...(err ? { err } : {}) });
    };
    const timer = setTimeout(() => finish('timeout'), opt.timeout);
    sock.on('connect', () => {
      connected = true;
      sock.write(opt.send);
    });
    sock.on('data', (d) => {
      reply = Buffer.concat([reply, d]);
      if (reply.length >= want) finish('ok');
    });
    sock.on('error', (e) => finish(classify(e), e.code ?? e.message));
    sock.on('close', () => finish(connected ? 'reset' : 'error', 'closed'));
  });
}

let stopping = false;
process.on('SIGTERM', () => (stopping = true));
process.on('SIGINT', () => (stopping = true));

async function worker() {
  while (!stopping) {
    const r = await attempt();
    process.stdout.write(JSON.stringify(r) + '\n');
    if (opt.interval > 0 && !stopping) await sleep(opt.interval);
  }
}

process.stdout.write(JSON.stringify({ started: Date.now() }) + '\n');
await Promise.all(Array.from({ length: opt.concurrency }, () => worker()));
process.stdout.write(JSON.stringify({ done: true }) + '\n');
