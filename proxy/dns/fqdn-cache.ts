// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/dns/fqdn-cache
 *
 * The node-global DNS cache (reference §5.4, §5.5): for each name, the IPs allowed answers gave
 * it and when each expires. Times are milliseconds since the epoch (they survive restarts in the
 * state file).
 *
 * - learn: TTL = max(answer TTL, fqdnMinTtl); per (name, IP) the latest expiry wins; a new answer
 *   containing an IP brings it back to life.
 * - due(now): the (name, IP) pairs garbage collection must decide on: expired ones, and for a
 *   name holding more than fqdnMaxIpsPerName IPs, the earliest-expiring extras (Cilium moves both
 *   to its zombie list the same way). The caller keeps the ones conntrack still uses (extend) and
 *   removes the rest.
 * - Changes since the last `drain()` (new pairs, expiries moved by more than saveSlack,
 *   removals) are what the learner appends to the state file; `entries()` is the whole cache.
 * - Pure data: no timers, no I/O.
 */

export interface FqdnCacheEntry {
  /** Normalised name: lower case, trailing dot. */
  name: string;
  ip: string;
  /** ms since the epoch */
  expiresAt: number;
  /** ms since the epoch of the answer that last gave this IP */
  lookupAt: number;
}

/**
 * An expiry that moved by less than this is not worth a state-file line: a tenth of the pair's
 * TTL, within 1–10 s. Names asked all the time would otherwise rewrite their line every
 * second (a thousand busy names cost the event loop milliseconds per save); after a crash of
 * the proxy a restored pair expires at most that much early (and GC still keeps it while a
 * connection uses it).
 */
const SAVE_SLACK_MS = 1000;
const SAVE_SLACK_TTL_FRACTION = 0.1;
/** At most this much (a long TTL must not make a restored pair expire hours early). */
const SAVE_SLACK_MAX_MS = 10_000;
const saveSlack = (e: Entry): number => Math.min(SAVE_SLACK_MAX_MS, Math.max(SAVE_SLACK_MS, (e.expiresAt - e.lookupAt) * SAVE_SLACK_TTL_FRACTION));

interface Entry {
  expiresAt: number;
  lookupAt: number;
  /** expiresAt as last drained (0: never) */
  saved: number;
}

export class FqdnCache {
  readonly #byName = new Map<string, Map<string, Entry>>();
  readonly #dirty = new Map<string, { name: string; ip: string }>();
  #removed: Array<{ name: string; ip: string }> = [];
  readonly #byIp = new Map<string, Set<string>>();
  /** (name, IP) pairs cached: kept as they change (the journal asks at every save) */
  #pairs = 0;
  readonly minTtl: number;
  readonly maxIpsPerName: number;

  /** @param o minTtl seconds; maxIpsPerName ≥ 1 */
  constructor(o: { minTtl: number; maxIpsPerName: number }) {
    this.minTtl = o.minTtl;
    this.maxIpsPerName = Math.max(1, o.maxIpsPerName);
  }

  /** (name, IP) pairs cached. */
  get size(): number {
    return this.#pairs;
  }

  /**
   * Records an allowed answer.
   * @param name normalised name
   * @param ttl seconds (the minimum of the answer's chain)
   * @returns the IPs that were not cached for this name before
   */
  learn(name: string, ips: readonly string[], ttl: number, now: number): string[] {
    const expiresAt = now + Math.max(ttl, this.minTtl) * 1000;
    let m = this.#byName.get(name);
    if (!m) this.#byName.set(name, (m = new Map()));
    const added: string[] = [];
    for (const ip of ips) {
      const cur = m.get(ip);
      if (!cur) {
        m.set(ip, { expiresAt, lookupAt: now, saved: 0 });
        this.#pairs++;
        this.#dirty.set(`${name}|${ip}`, { name, ip });
        added.push(ip);
        let names = this.#byIp.get(ip);
        if (!names) this.#byIp.set(ip, (names = new Set()));
        names.add(name);
      } else {
        cur.lookupAt = now;
        if (expiresAt > cur.expiresAt) cur.expiresAt = expiresAt;
        if (cur.expiresAt > cur.saved + saveSlack(cur)) this.#dirty.set(`${name}|${ip}`, { name, ip });
      }
    }
    return added;
  }

  /** Every cached IP. */
  ips(): string[] {
    return [...this.#byIp.keys()];
  }

  /** Names an IP is cached for. */
  namesOf(ip: string): string[] {
    return [...(this.#byIp.get(ip) ?? [])];
  }

  has(name: string, ip: string): boolean {
    return this.#byName.get(name)?.has(ip) ?? false;
  }

  /** Pairs that are expired or over the per-name limit at `now`. */
  due(now: number): Array<{ name: string; ip: string }> {
    const out: Array<{ name: string; ip: string }> = [];
    for (const [name, m] of this.#byName) {
      let liveCount = 0;
      for (const [ip, e] of m) {
        if (e.expiresAt <= now) out.push({ name, ip });
        else liveCount++;
      }
      // (nothing allocated for names within the limit: a pass walks the whole cache)
      if (liveCount > this.maxIpsPerName) {
        const live: Array<[string, number]> = [];
        for (const [ip, e] of m) if (e.expiresAt > now) live.push([ip, e.expiresAt]);
        live.sort((a, b) => a[1] - b[1]);
        for (const [ip] of live.slice(0, live.length - this.maxIpsPerName)) out.push({ name, ip });
      }
    }
    return out;
  }

  /** Keeps a pair until `until` (an expired IP conntrack still uses). */
  extend(name: string, ip: string, until: number): void {
    const e = this.#byName.get(name)?.get(ip);
    if (e && e.expiresAt < until) {
      e.expiresAt = until;
      this.#dirty.set(`${name}|${ip}`, { name, ip });
    }
  }

  /**
   * Forgets a pair.
   * @returns whether the IP is now cached for no name at all
   */
  remove(name: string, ip: string): boolean {
    const m = this.#byName.get(name);
    if (m?.delete(ip)) {
      this.#pairs--;
      this.#removed.push({ name, ip });
      this.#dirty.delete(`${name}|${ip}`);
      if (m.size === 0) this.#byName.delete(name);
    }
    const names = this.#byIp.get(ip);
    names?.delete(name);
    if (names && names.size > 0) return false;
    this.#byIp.delete(ip);
    return true;
  }

  /** Changes since the last drain (then marked saved). */
  drain(): { upserts: FqdnCacheEntry[]; removes: Array<{ name: string; ip: string }> } {
    const upserts: FqdnCacheEntry[] = [];
    for (const { name, ip } of this.#dirty.values()) {
      const e = this.#byName.get(name)?.get(ip);
      if (!e) continue;
      e.saved = e.expiresAt;
      upserts.push({ name, ip, expiresAt: e.expiresAt, lookupAt: e.lookupAt });
    }
    this.#dirty.clear();
    const removes = this.#removed;
    this.#removed = [];
    return { upserts, removes };
  }

  /** Marks everything saved (after the whole cache was written). */
  markSaved(): void {
    for (const m of this.#byName.values()) for (const e of m.values()) e.saved = e.expiresAt;
    this.#dirty.clear();
    this.#removed = [];
  }

  entries(): FqdnCacheEntry[] {
    return [...this.iterate()];
  }

  /** The entries one at a time (changes made while iterating may or may not be seen). */
  *iterate(): Generator<FqdnCacheEntry> {
    for (const [name, m] of this.#byName) for (const [ip, e] of m) yield { name, ip, expiresAt: e.expiresAt, lookupAt: e.lookupAt };
  }

  /** name → IPs (what the agent's engine mirrors). */
  names(): Array<{ name: string; ips: string[] }> {
    return [...this.#byName].map(([name, m]) => ({ name, ips: [...m.keys()] }));
  }

  /** Adds entries read back from the state file (well-formed ones only). */
  load(entries: readonly FqdnCacheEntry[]): number {
    let n = 0;
    for (const e of entries) {
      if (!e || typeof e.name !== 'string' || typeof e.ip !== 'string' || !Number.isFinite(e.expiresAt)) continue;
      let m = this.#byName.get(e.name);
      if (!m) this.#byName.set(e.name, (m = new Map()));
      if (!m.has(e.ip)) this.#pairs++;
      m.set(e.ip, { expiresAt: e.expiresAt, lookupAt: Number.isFinite(e.lookupAt) ? e.lookupAt : e.expiresAt, saved: e.expiresAt });
      let names = this.#byIp.get(e.ip);
      if (!names) this.#byIp.set(e.ip, (names = new Set()));
      names.add(e.name);
      n++;
    }
    return n;
  }
}
