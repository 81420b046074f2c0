// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/dns/agent-link
 *
 * Tells the agent what the DNS cache learned and forgot (`POST /v1/fqdn` on the agent's API
 * socket), so its policy engine mirrors the cache: it allocates identities for selector sets the
 * proxy has no identity for, and keeps the ipcache entries on its own reconciliations.
 *
 * Updates are coalesced: at most one request is in flight; what arrives meanwhile goes in the
 * next one. An urgent update (an answer waits for an identity the agent must allocate) is sent
 * at once; others within LAZY_MS, so a burst of answers for names whose identities exist costs
 * the agent one request per interval instead of one per answer. `send` resolves with the
 * agent's answer (its FQDN identity table after applying) or null when the agent cannot be
 * reached. Updates the agent did not take are kept, in order, and sent again every RETRY_MS until
 * it answers (bounded by MAX_BACKLOG names): the agent reads the whole cache when it starts, but
 * what is learned meanwhile, or while it reconciles, must still reach it.
 */
import http from 'node:http';
import type { FqdnIdentityTable } from '../../src/l7/fqdn.ts';

export interface FqdnUpdate {
  learn: Array<{ name: string; ips: string[] }>;
  forget: Array<{ name: string; ips: string[] }>;
}

type Waiter = (t: FqdnIdentityTable | null) => void;

/** The agent answered 4xx: sending the same update again cannot succeed. */
class RefusedError extends Error {
  constructor(status: number) {
    super(`agent refused the update (${status})`);
  }
}

/** Pending pair operations as an update (names grouped). */
function toUpdate(ops: Iterable<{ name: string; ip: string; learn: boolean }>): FqdnUpdate {
  const learn = new Map<string, string[]>();
  const forget = new Map<string, string[]>();
  for (const o of ops) {
    const m = o.learn ? learn : forget;
    let l = m.get(o.name);
    if (!l) m.set(o.name, (l = []));
    l.push(o.ip);
  }
  return { learn: [...learn].map(([name, ips]) => ({ name, ips })), forget: [...forget].map(([name, ips]) => ({ name, ips })) };
}

/** Longest a non-urgent update waits to be sent. */
export const LAZY_MS = 250;
const RETRY_MS = 500;
/** Names kept for an unreachable agent; beyond, the oldest batches are dropped (counted). */
const MAX_BACKLOG = 200_000;

export class AgentFqdnLink {
  readonly #socket: () => string;
  readonly #timeoutMs: number;
  /** Pending changes by `name|ip`: the latest operation on a pair wins (a forget then a learn of
   * the same pair within one batch must not reach the agent as learn-then-forget). */
  #next = new Map<string, { name: string; ip: string; learn: boolean }>();
  /** Batches the agent did not take, oldest first. */
  #backlog: FqdnUpdate[] = [];
  #backlogNames = 0;
  #retry?: NodeJS.Timeout;
  /** Names dropped from the backlog (the agent was away too long). */
  droppedNames = 0;
  #waiters: Waiter[] = [];
  #busy = false;
  #scheduled = false;
  #lazy?: NodeJS.Timeout;
  #closed = false;
  sent = 0;
  failed = 0;

  /** @param socket the agent's API socket (read at each request: the agent may tell a new one) */
  constructor(socket: () => string, timeoutMs = 2000) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
  }

  /** @param urgent send now (someone waits for the answer), else within LAZY_MS */
  send(update: FqdnUpdate, urgent = false): Promise<FqdnIdentityTable | null> {
    if (this.#closed) return Promise.resolve(null);
    for (const [list, learn] of [
      [update.forget, false],
      [update.learn, true],
    ] as const) {
      for (const { name, ips } of list) for (const ip of ips) this.#next.set(`${name}|${ip}`, { name, ip, learn });
    }
    const p = new Promise<FqdnIdentityTable | null>((resolve) => this.#waiters.push(resolve));
    if (urgent) this.#urgent = true;
    this.#schedule();
    return p;
  }

  #urgent = false;

  #schedule(): void {
    if (this.#busy || this.#scheduled) return;
    if (!this.#urgent) {
      this.#lazy ??= setTimeout(() => {
        this.#lazy = undefined;
        this.#urgent = true;
        this.#schedule();
      }, LAZY_MS).unref();
      return;
    }
    if (this.#lazy) clearTimeout(this.#lazy);
    this.#lazy = undefined;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    // first what the agent did not take before, in order
    while (this.#backlog.length) {
      const u = this.#backlog[0]!;
      try {
        await this.#post(JSON.stringify(u));
        this.#backlog.shift();
        this.#backlogNames -= u.learn.length + u.forget.length;
        this.sent++;
      } catch (e) {
        if (e instanceof RefusedError) {
          // the agent will never take it: drop it rather than block everything behind it
          this.#backlog.shift();
          this.#backlogNames -= u.learn.length + u.forget.length;
          this.droppedNames += u.learn.length + u.forget.length;
          continue;
        }
        this.failed++;
        this.#busy = false;
        for (const w of this.#waiters.splice(0)) w(null);
        this.#retryLater();
        return;
      }
    }
    if (this.#next.size === 0) {
      this.#busy = false;
      return;
    }
    const update = toUpdate(this.#next.values());
    const waiters = this.#waiters;
    this.#urgent = false;
    this.#next = new Map();
    this.#waiters = [];
    let table: FqdnIdentityTable | null = null;
    try {
      table = await this.#post(JSON.stringify(update));
      this.sent++;
    } catch (e) {
      this.failed++;
      if (e instanceof RefusedError) this.droppedNames += update.learn.length + update.forget.length;
      else this.#keep(update);
    }
    this.#busy = false;
    for (const w of waiters) w(table);
    if (this.#next.size) this.#schedule();
  }

  /** Keeps an update the agent did not take, and tries again later. */
  #keep(u: FqdnUpdate): void {
    this.#backlog.push(u);
    this.#backlogNames += u.learn.length + u.forget.length;
    while (this.#backlogNames > MAX_BACKLOG && this.#backlog.length > 1) {
      const old = this.#backlog.shift()!;
      const n = old.learn.length + old.forget.length;
      this.#backlogNames -= n;
      this.droppedNames += n;
    }
    this.#retryLater();
  }

  #retryLater(): void {
    if (this.#retry || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#urgent = true;
      this.#schedule();
    }, RETRY_MS).unref();
  }

  /** Updates waiting for the agent. */
  get backlog(): number {
    return this.#backlogNames;
  }

  #post(body: string): Promise<FqdnIdentityTable | null> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.#socket(), path: '/v1/fqdn', method: 'POST', headers: { 'content-type': 'application/json' }, timeout: this.#timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(res.statusCode && res.statusCode < 500 ? new RefusedError(res.statusCode) : new Error(`agent answered ${res.statusCode}`));
          try {
            resolve((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { fqdn?: FqdnIdentityTable }).fqdn ?? null);
          } catch (e) {
            reject(e as Error);
          }
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('agent timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#lazy) clearTimeout(this.#lazy);
    if (this.#retry) clearTimeout(this.#retry);
    for (const w of this.#waiters) w(null);
    this.#waiters = [];
  }
}
