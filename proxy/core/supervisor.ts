// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/core/supervisor
 *
 * ProxySupervisor: the agent's side of `membrane proxy` in standalone mode (DESIGN §3.4, §4).
 * - `ensureRouting()` puts the redirect routing in the agent's (node) namespace, idempotently:
 *   `ip rule add fwmark 0x200/0xf00 lookup 2004` and `ip route replace local 0.0.0.0/0 dev lo
 *   table 2004`; it records in `<state-dir>/proxy-routing.json` that it did, so `membrane
 *   cleanup` removes exactly these.
 * - `ensureRunning()` starts the proxy detached (its own session, output to
 *   `<state-dir>/proxy.log`) when `<state-dir>/proxy.pid` does not name a live proxy; it outlives
 *   the agent.
 * - `push(snapshot)` sends the L7 policy to the proxy's control socket; the newest snapshot wins
 *   and is retried until the proxy answers. If the proxy stays unreachable and is not running,
 *   it is started again.
 * Nothing here ever throws into the agent: failures are logged and retried.
 */
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { L7PolicySnapshot } from '../../src/l7/policy.ts';
import { readCacheFile } from '../dns/cache-file.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MEMBRANE_BIN = path.join(root, 'bin', 'membrane');

/** The redirect routing (DESIGN §4), by exact value. */
export const PROXY_RULE = ['fwmark', '0x200/0xf00', 'lookup', '2004'] as const;
export const PROXY_ROUTE = ['local', '0.0.0.0/0', 'dev', 'lo', 'table', '2004'] as const;
export const ROUTING_FILE = 'proxy-routing.json';
/** Scheduling priority of the proxy (nice value; the agent keeps the default 0). */
export const PROXY_PRIORITY = -5;

export interface ProxySupervisorOptions {
  stateDir: string;
  bpfRoot: string;
  agentSocket: string;
  config?: string;
  log: (msg: string) => void;
}

/** The pid in `<state-dir>/proxy.pid` if it names a live `membrane proxy` of this state dir. */
export function liveProxyPid(stateDir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(stateDir, 'proxy.pid'), 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 1) return null;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = argv.indexOf('proxy');
    const sd = argv.indexOf('--state-dir');
    if (i < 0 || sd < 0 || path.resolve(argv[sd + 1] ?? '') !== path.resolve(stateDir)) return null;
    return pid;
  } catch {
    return null;
  }
}

function ip(args: readonly string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    return { ok: false, out: String((e as { stderr?: string }).stderr ?? (e as Error).message) };
  }
}

/** Whether the node namespace has the proxy's ip rule. */
export function hasProxyRule(): boolean {
  const r = ip(['-j', 'rule', 'show']);
  if (!r.ok) return false;
  try {
    return (JSON.parse(r.out) as Array<Record<string, unknown>>).some((x) => x.fwmark === '0x200' && x.fwmask === '0xf00' && String(x.table) === '2004');
  } catch {
    return false;
  }
}

/** Removes the rule and route by exact value (for `membrane cleanup`). @returns what was removed */
export function removeProxyRouting(): string[] {
  const done: string[] = [];
  while (hasProxyRule() && ip(['rule', 'del', ...PROXY_RULE]).ok) done.push(`ip rule ${PROXY_RULE.join(' ')}`);
  if (ip(['route', 'del', ...PROXY_ROUTE]).ok) done.push(`ip route ${PROXY_ROUTE.join(' ')}`);
  return done;
}

export class ProxySupervisor {
  readonly #o: ProxySupervisorOptions;
  #pending: L7PolicySnapshot | null = null;
  #sending = false;
  #timer: NodeJS.Timeout | null = null;
  #failingSince = 0;
  #closed = false;

  constructor(o: ProxySupervisorOptions) {
    this.#o = o;
  }

  get controlSocket(): string {
    return path.join(this.#o.stateDir, 'proxy.sock');
  }

  /** Adds the ip rule and local route when missing. @returns false (logged) when it could not */
  ensureRouting(): boolean {
    let ok = true;
    if (!hasProxyRule()) {
      const r = ip(['rule', 'add', ...PROXY_RULE]);
      if (!r.ok) {
        this.#o.log(`proxy routing: ip rule add ${PROXY_RULE.join(' ')}: ${r.out.trim()}`);
        ok = false;
      }
    }
    const r = ip(['route', 'replace', ...PROXY_ROUTE]);
    if (!r.ok) {
      this.#o.log(`proxy routing: ip route replace ${PROXY_ROUTE.join(' ')}: ${r.out.trim()}`);
      ok = false;
    }
    if (ok) writeFileSync(path.join(this.#o.stateDir, ROUTING_FILE), JSON.stringify({ rule: PROXY_RULE, route: PROXY_ROUTE }));
    return ok;
  }

  /** Starts `membrane proxy` detached unless one is running for this state dir. @returns its pid */
  ensureRunning(): number | null {
    const live = liveProxyPid(this.#o.stateDir);
    if (live) return live;
    const log = openSync(path.join(this.#o.stateDir, 'proxy.log'), 'a');
    try {
      // MEMBRANE_PROXY_NODE_ARGS: extra Node.js flags for the proxy (e.g. `--cpu-prof`), for profiling
      const nodeArgs = (process.env.MEMBRANE_PROXY_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
      const args = [...nodeArgs, MEMBRANE_BIN, 'proxy', '--state-dir', this.#o.stateDir, '--bpf-root', this.#o.bpfRoot, '--agent-socket', this.#o.agentSocket];
      if (this.#o.config) args.push('--config', this.#o.config);
      const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
      child.on('error', (e) => this.#o.log(`proxy: cannot start: ${e.message}`));
      child.unref();
      if (!child.pid) return null;
      // The proxy holds pods' requests and DNS answers; the agent's bookkeeping can wait: when both
      // want the same CPU, the proxy goes first (nice -5 relative to the default; needs root).
      try {
        os.setPriority(child.pid, PROXY_PRIORITY);
      } catch (e) {
        this.#o.log(`proxy: priority ${PROXY_PRIORITY} not set: ${(e as Error).message}`);
      }
      // the proxy writes it too once it listens; written here so a quick agent restart does not start a second one
      writeFileSync(path.join(this.#o.stateDir, 'proxy.pid'), `${child.pid}\n`);
      this.#o.log(`proxy started (pid ${child.pid}, log ${path.join(this.#o.stateDir, 'proxy.log')})`);
      return child.pid;
    } finally {
      closeSync(log);
    }
  }

  /** Sends `snapshot` to the proxy (replacing any not yet delivered), retrying until it answers. */
  push(snapshot: L7PolicySnapshot): void {
    this.#pending = snapshot;
    this.#kick(0);
  }

  /**
   * The DNS cache the agent's engine mirrors (reference §5.6): asked from the running proxy, or
   * read from the file it persists (`<state-dir>/fqdn-cache.json`) when it does not answer.
   * Never throws: nothing known is an empty list.
   */
  async fqdnNames(): Promise<Array<{ name: string; ips: string[] }>> {
    const live = await new Promise<Array<{ name: string; ips: string[] }> | null>((resolve) => {
      if (!existsSync(this.controlSocket)) return resolve(null);
      const req = http.request({ socketPath: this.controlSocket, agent: false, method: 'GET', path: '/v1/fqdn', timeout: 1000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            const doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { names?: Array<{ name: string; ips: string[] }> };
            resolve(res.statusCode === 200 && Array.isArray(doc.names) ? doc.names : null);
          } catch {
            resolve(null);
          }
        });
        res.on('error', () => resolve(null));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(null));
      req.end();
    });
    if (live) return live;
    const byName = new Map<string, string[]>();
    for (const e of readCacheFile(path.join(this.#o.stateDir, 'fqdn-cache.json'))) {
      let l = byName.get(e.name);
      if (!l) byName.set(e.name, (l = []));
      l.push(e.ip);
    }
    return [...byName].map(([name, ips]) => ({ name, ips }));
  }

  /** Stops retrying (the proxy keeps running). */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #kick(ms: number): void {
    if (this.#closed || this.#sending || this.#timer || !this.#pending) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#send();
    }, ms);
  }

  async #send(): Promise<void> {
    const snap = this.#pending;
    if (!snap || this.#sending) return;
    this.#sending = true;
    const ok = await this.#put(snap);
    this.#sending = false;
    if (ok) {
      if (this.#pending === snap) this.#pending = null;
      this.#failingSince = 0;
      this.#kick(0);
      return;
    }
    const now = Date.now();
    if (!this.#failingSince) this.#failingSince = now;
    else if (now - this.#failingSince > 5000 && existsSync(this.#o.stateDir) && !liveProxyPid(this.#o.stateDir)) {
      this.#o.log('proxy not running: starting it again');
      this.ensureRunning();
      this.#failingSince = now;
    }
    this.#kick(200);
  }

  #put(snap: L7PolicySnapshot): Promise<boolean> {
    const body = JSON.stringify(snap);
    return new Promise((resolve) => {
      const req = http.request(
        {
          socketPath: this.controlSocket,
          agent: false,
          method: 'PUT',
          path: '/v1/policy',
          timeout: 5000,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-membrane-agent-socket': this.#o.agentSocket },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200));
          res.on('error', () => resolve(false));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(false));
      req.end(body);
    });
  }
}
