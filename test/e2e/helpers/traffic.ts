// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers/traffic
 *
 * Traffic between namespaces, with no extra packages: small Node scripts (traffic/server.mjs,
 * traffic/client.mjs) run inside a namespace through `nsenter --net=…`, plus `ping` for ICMP.
 * Every client call returns a typed outcome within about its timeout (default 1 s), so a test
 * that expects a drop stays fast: `ok`, `timeout` (dropped), `refused` (RST / ICMP port
 * unreachable), `reset`, `unreachable`, `error`.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inNs, spawnInNs, type NsProcess } from './ns.ts';
import { which } from './privileges.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The server script (see its header for options). */
export const SERVER_SCRIPT = path.join(here, 'traffic', 'server.mjs');
/** The client script (see its header for options). */
export const CLIENT_SCRIPT = path.join(here, 'traffic', 'client.mjs');

/** How a request ended. */
export type Outcome = 'ok' | 'timeout' | 'refused' | 'reset' | 'unreachable' | 'error';

/** Common fields of every client result. */
export interface ClientResult {
  result: Outcome;
  /** Milliseconds from start to outcome, measured inside the namespace. */
  ms: number;
  /** Error code or message, unless ok. */
  error?: string;
}

/** Result of {@link tcpRequest}. */
export interface TcpResult extends ClientResult {
  /** Where it stopped: `connect` (no handshake) or `reply` (connected, no echo). */
  stage: 'connect' | 'reply';
  /** What came back. */
  reply: string;
  /** The client's source port, when connected. */
  localPort?: number;
}

/** Result of {@link udpRequest}. */
export interface UdpResult extends ClientResult {
  reply?: string;
}

/** Result of {@link httpRequest}. */
export interface HttpResult extends ClientResult {
  status?: number;
  headers?: Record<string, string | string[]>;
  body?: string;
}

/** Options shared by the clients. */
export interface ClientOptions {
  /** Give up after this many ms (default 1000). */
  timeoutMs?: number;
}

async function client<T extends ClientResult>(ns: string, args: string[], timeoutMs: number): Promise<T> {
  const r = await inNs(ns, process.execPath, [CLIENT_SCRIPT, ...args, '--timeout', String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`client.mjs ${args.join(' ')} in ${ns} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
}

/**
 * Connects over TCP from namespace NS, sends `send` and waits for the echo.
 * @param ns source namespace
 * @param host destination address
 * @param port destination port
 * @param opts `send` (default "ping\n"; "" = connect only), `timeoutMs`
 * @example assert.equal((await tcpRequest(podA, '10.200.1.20', 8080)).result, 'ok');
 */
export function tcpRequest(ns: string, host: string, port: number, opts: ClientOptions & { send?: string } = {}): Promise<TcpResult> {
  return client<TcpResult>(ns, ['tcp', host, String(port), '--send', opts.send ?? 'ping\n'], opts.timeoutMs ?? 1000);
}

/**
 * Sends one UDP datagram from NS and waits for one back.
 * @param ns source namespace
 * @param host destination address
 * @param port destination port
 * @param opts `send` (default "ping\n"), `timeoutMs`
 */
export function udpRequest(ns: string, host: string, port: number, opts: ClientOptions & { send?: string } = {}): Promise<UdpResult> {
  return client<UdpResult>(ns, ['udp', host, String(port), '--send', opts.send ?? 'ping\n'], opts.timeoutMs ?? 1000);
}

/**
 * One HTTP/1.1 request from NS (a fresh connection).
 * @param ns source namespace
 * @param host destination address
 * @param port destination port
 * @param opts method (GET), path (/), headers, body, timeoutMs
 * @example const r = await httpRequest(podA, ip, 80, { path: '/public' }); // r.status === 200
 */
export function httpRequest(
  ns: string,
  host: string,
  port: number,
  opts: ClientOptions & { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<HttpResult> {
  const args = ['http', host, String(port), '--method', opts.method ?? 'GET', '--path', opts.path ?? '/'];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('--header', `${k}: ${v}`);
  if (opts.body !== undefined) args.push('--body', opts.body);
  return client<HttpResult>(ns, args, opts.timeoutMs ?? 1000);
}

/** Result of {@link ping}. */
export interface PingResult {
  /** `ok` (a reply), `timeout` (no reply), `unreachable` (ICMP error or no route), `error`. */
  result: 'ok' | 'timeout' | 'unreachable' | 'error';
  /** ping's output. */
  output: string;
}

/**
 * ICMP echo from NS: `ping -c1 -W<s> -n HOST`.
 * @param ns source namespace
 * @param host destination
 * @param opts `timeoutS` (default 1)
 * @throws Error when `ping` is not installed (Debian package iputils-ping)
 */
export async function ping(ns: string, host: string, opts: { timeoutS?: number } = {}): Promise<PingResult> {
  if (!which('ping')) throw new Error('ping is not installed (Debian: apt-get install iputils-ping)');
  const r = await inNs(ns, 'ping', ['-c1', '-n', `-W${opts.timeoutS ?? 1}`, host], { timeoutMs: ((opts.timeoutS ?? 1) + 5) * 1000 });
  const output = r.stdout + r.stderr;
  if (r.code === 0) return { result: 'ok', output };
  if (/unreachable/i.test(output)) return { result: 'unreachable', output };
  if (r.code === 1) return { result: 'timeout', output };
  return { result: 'error', output };
}

/** A running traffic server (see {@link startServer}). */
export interface TrafficServer {
  /** The namespace it runs in. */
  ns: string;
  /** Listening ports, in the order asked (0 resolved to the real port). */
  tcp: number[];
  http: number[];
  udp: number[];
  /** The process (pid, output, kill). */
  proc: NsProcess;
  /** Stops it (SIGTERM, then SIGKILL). */
  stop(): Promise<void>;
}

/**
 * Starts traffic/server.mjs in NS and waits until it listens (TCP echo, HTTP, UDP echo).
 * The process is recorded for cleanup; `stop()` ends it earlier.
 * @param ns namespace
 * @param opts ports per kind (0 = any free port), `host` to bind (default 0.0.0.0)
 * @returns the server with its ports
 * @example
 * const srv = await startServer(podB, { tcp: [8080], udp: [5353], http: [80] });
 * // …
 * await srv.stop();
 */
export async function startServer(
  ns: string,
  opts: { tcp?: number[]; http?: number[]; udp?: number[]; host?: string },
): Promise<TrafficServer> {
  const args = [SERVER_SCRIPT];
  for (const p of opts.tcp ?? []) args.push('--tcp', String(p));
  for (const p of opts.http ?? []) args.push('--http', String(p));
  for (const p of opts.udp ?? []) args.push('--udp', String(p));
  if (opts.host) args.push('--host', opts.host);
  const proc = spawnInNs(ns, process.execPath, args);
  let ready: { tcp: number[]; http: number[]; udp: number[] };
  try {
    const m = await proc.waitFor(/^\{"ready":true.*\}$/m, { timeoutMs: 10_000 });
    ready = JSON.parse(m[0]) as typeof ready;
  } catch (e) {
    await proc.kill('SIGKILL');
    throw e;
  }
  return {
    ns,
    ...ready,
    proc,
    async stop() {
      await proc.kill();
    },
  };
}
