// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/dns/fqdn-learner
 *
 * What happens to the IPs of an allowed DNS answer before the answer is released (reference
 * §5.3 step 8, §5.4, §5.5; DESIGN §4 "Who writes FQDN state"):
 * 1. they enter the node-global cache (proxy/dns/fqdn-cache.ts);
 * 2. each IPv4 address gets the ipcache entry `ip/32 → FQDN identity` of its selector set and
 *    base (src/l7/fqdn.ts), written here into the pinned ipcache when the agent has allocated
 *    that identity (its policy entries are then already in the endpoints' maps), so this works
 *    while the agent is down; an address owned by a cluster identity is never overwritten
 *    (§2.10); an address no selector matches gets no entry;
 * 3. the agent is told (it mirrors the cache in its engine); when an identity is missing, the
 *    answer waits for the agent to allocate and program it, at most dnsResponseMaxDelayMs, then
 *    is released anyway (counted in `heldTimeouts`).
 * Garbage collection every dnsGcInterval seconds: a (name, IP) pair that expired (or is over
 * the per-name limit) stays while conntrack has a live flow to or from the IP (checked again at
 * the next pass), otherwise it is removed; an IP left with no name loses its ipcache entry.
 * The cache is persisted in `<state-dir>/fqdn-cache.json` (within PERSIST_MS of a change, and
 * at stop) and loaded at start, so names and connections survive restarts of either process.
 * IPv6 addresses are cached and reported to the agent but not written: the datapath is
 * IPv4-only (DESIGN §2).
 */
import { isIPv4 } from 'node:net';
import path from 'node:path';
import type { Settings } from '../../src/config.ts';
import { writeIpv4 } from '../../src/datapath/addr.ts';
import { CtMap, ctEntryLive } from '../../src/datapath/ct-map.ts';
import { FqdnResolver, type FqdnIdentityTable } from '../../src/l7/fqdn.ts';
import type { IpcacheIdentities } from '../core/identities.ts';
import type { AgentFqdnLink } from './agent-link.ts';
import { CacheJournal, readCacheFile, removeStaleTemporaries } from './cache-file.ts';
import { FqdnCache } from './fqdn-cache.ts';

/**
 * Longest the state file lags the cache (short, so that each save is small: the changes of a
 * quarter second). It matters only when the proxy itself dies (the agent
 * asks a running proxy for the cache); a larger cache costs more to write.
 */
const PERSIST_MS = 250;

/** IPs realigned per event-loop turn after a policy change. */
const REALIGN_CHUNK = 1000;

/** Identities below this are cluster or reserved ones (reference §2.9): never replaced. */
const LOCAL_SCOPE = 0x01000000;

const scratch = Buffer.alloc(4);
/** isIPv4 without its regular expression (once per address of every answer). */
const isV4 = (ip: string): boolean => writeIpv4(ip, scratch, 0);
const IDENTITY_WORLD = 2;

export interface FqdnLearnerOptions {
  stateDir: string;
  bpfRoot: string;
  identities: IpcacheIdentities;
  agent: AgentFqdnLink;
  settings: Pick<Settings, 'fqdnMinTtl' | 'fqdnMaxIpsPerName' | 'dnsGcInterval' | 'dnsResponseMaxDelayMs'>;
  log: (msg: string) => void;
}

type WriteResult = 'written' | 'unchanged' | 'none' | 'missing' | 'cluster' | 'no-map';

export class FqdnLearner {
  readonly cache: FqdnCache;
  readonly #o: FqdnLearnerOptions;
  #resolver: FqdnResolver | null = null;
  #fqdnIds = new Set<number>();
  /** ip → identity last written (or found) for the current table */
  #written = new Map<string, number>();
  #gcTimer?: NodeJS.Timeout;
  #journal?: CacheJournal;
  #persistTimer?: NodeJS.Timeout;
  readonly stats = { answers: 0, written: 0, held: 0, heldTimeouts: 0, gcKept: 0, gcRemoved: 0 };

  constructor(o: FqdnLearnerOptions) {
    this.#o = o;
    this.cache = new FqdnCache({ minTtl: o.settings.fqdnMinTtl, maxIpsPerName: o.settings.fqdnMaxIpsPerName });
  }

  get file(): string {
    return path.join(this.#o.stateDir, 'fqdn-cache.json');
  }

  /** Loads the persisted cache and starts garbage collection. */
  start(): void {
    removeStaleTemporaries(this.file);
    const n = this.cache.load(readCacheFile(this.file));
    if (n) this.#o.log(`loaded ${n} DNS cache entries from ${this.file}`);
    this.#journal = this.#newJournal();
    const every = Math.max(0.1, this.#o.settings.dnsGcInterval) * 1000;
    this.#gcTimer = setInterval(() => {
      try {
        this.gc();
      } catch (e) {
        this.#o.log(`DNS cache GC: ${(e as Error).message}`);
      }
    }, every);
    this.#gcTimer.unref();
  }

  /** Takes the FQDN identity table of a new policy snapshot. */
  setTable(t: FqdnIdentityTable | undefined): void {
    if (!t) return;
    const prev = this.#resolver?.table;
    const prevIds = this.#fqdnIds;
    this.#resolver = new FqdnResolver(t);
    this.#fqdnIds = new Set(t.identities.map((i) => i.id));
    this.#written.clear(); // the next answer for each IP writes what this table says
    // New selectors or CIDR bases change which identity cached IPs have. The agent rewrites the
    // entries it knows of; the ones written here that it has not been told of yet are brought
    // in line here, so none keeps an identity the policy no longer has.
    if (prev && (JSON.stringify(prev.selectors) !== JSON.stringify(t.selectors) || JSON.stringify(prev.cidrs) !== JSON.stringify(t.cidrs))) {
      this.#realign(this.cache.ips(), new Set([...prevIds, ...this.#fqdnIds]));
    }
  }

  /** Rewrites (or removes) the entries of cached IPs, REALIGN_CHUNK at a time between turns. */
  #realign(ips: string[], fqdnIds: Set<number>): void {
    const chunk = ips.splice(0, REALIGN_CHUNK);
    for (const ip of chunk) {
      if (!isIPv4(ip)) continue;
      const r = this.#writeIp(ip);
      // no selector matches its names any more, or its new identity does not exist yet (the
      // agent writes it once told): fail closed rather than keep the old identity
      if (r === 'none' || r === 'missing') this.#dropEntry(ip, fqdnIds);
    }
    if (ips.length) setImmediate(() => this.#realign(ips, fqdnIds));
  }

  /**
   * Records an allowed answer's addresses and makes them usable (steps 1–3 of the module
   * comment); resolves when the answer may be released.
   * @param name normalised query name
   * @param ttl seconds
   */
  learn(name: string, ips: readonly string[], ttl: number): Promise<void> | undefined {
    this.stats.answers++;
    const added = this.cache.learn(name, ips, ttl, Date.now());
    this.#schedulePersist();
    const missing: string[] = [];
    for (const ip of ips) {
      if (!isV4(ip)) continue;
      if (this.#written.has(ip) && !added.includes(ip)) continue;
      if (this.#writeIp(ip) === 'missing') missing.push(ip);
    }
    if (missing.length === 0) {
      if (added.length) void this.#o.agent.send({ learn: [{ name, ips: added }], forget: [] });
      return undefined; // released at once (no promise: this is every answer of a known name)
    }
    return this.#hold(name, added, missing);
  }

  /** Holds an answer until the agent has allocated the identities `missing` IPs need (bounded). */
  async #hold(name: string, added: string[], missing: string[]): Promise<void> {
    this.stats.held++;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.#o.settings.dnsResponseMaxDelayMs)));
    const table = await Promise.race([this.#o.agent.send({ learn: [{ name, ips: added.length ? added : missing }], forget: [] }, true), timeout]);
    clearTimeout(timer);
    if (table === 'timeout' || table === null) {
      this.stats.heldTimeouts++;
      return;
    }
    this.setTable(table);
    for (const ip of missing) this.#writeIp(ip);
  }

  /** Writes the ipcache entry an IP should have now. */
  #writeIp(ip: string): WriteResult {
    if (!this.#resolver) return 'missing';
    const res = this.#resolver.identityOf(ip, this.cache.namesOf(ip));
    if ('none' in res) return 'none';
    if ('missing' in res) return 'missing';
    const map = this.#o.identities.map();
    if (!map) return 'no-map';
    const key = { addr: ip, prefixLen: 32 };
    try {
      const cur = map.get(key);
      if (cur && cur.identity !== IDENTITY_WORLD && cur.identity < LOCAL_SCOPE) {
        this.#written.set(ip, cur.identity);
        return 'cluster'; // toFQDNs never selects cluster IPs (§2.10)
      }
      this.#written.set(ip, res.id);
      if (cur?.identity === res.id) return 'unchanged';
      map.set(key, { identity: res.id, epId: 0, ifindex: 0, flags: 0 });
      this.stats.written++;
      return 'written';
    } catch (e) {
      this.#o.log(`ipcache write ${ip}: ${(e as Error).message}`);
      return 'no-map';
    }
  }

  /** Removes an IP's /32 entry when it holds one of `fqdnIds`. */
  #dropEntry(ip: string, fqdnIds: Set<number>): void {
    this.#written.delete(ip);
    const map = this.#o.identities.map();
    const key = { addr: ip, prefixLen: 32 };
    try {
      const cur = map?.get(key);
      if (cur && fqdnIds.has(cur.identity)) map!.delete(key);
    } catch (e) {
      this.#o.log(`ipcache ${ip}: ${(e as Error).message}`);
    }
  }

  /** Removes the ipcache entry of an IP no name holds any more (only an FQDN identity's). */
  #removeIp(ip: string): void {
    this.#written.delete(ip);
    if (!isIPv4(ip)) return;
    const map = this.#o.identities.map();
    if (!map) return;
    const key = { addr: ip, prefixLen: 32 };
    try {
      const cur = map.get(key);
      if (cur && this.#fqdnIds.has(cur.identity)) map.delete(key);
    } catch (e) {
      this.#o.log(`ipcache delete ${ip}: ${(e as Error).message}`);
    }
  }

  /** IPs that have a live conntrack entry (either end). */
  #liveIps(): Set<string> {
    const out = new Set<string>();
    let ct: CtMap | undefined;
    try {
      ct = CtMap.open(this.#o.bpfRoot);
      const now = process.hrtime.bigint();
      for (const [k, e] of ct.entries()) {
        if (!ctEntryLive(k, e, now)) continue;
        out.add(k.saddr);
        out.add(k.daddr);
      }
    } catch (e) {
      // Without conntrack nothing can be proven unused: keep everything this pass.
      throw new Error(`conntrack unreadable, nothing collected: ${(e as Error).message}`);
    } finally {
      ct?.close();
    }
    return out;
  }

  /**
   * One garbage-collection pass (module comment).
   * @returns how many pairs were kept for live connections and how many removed
   */
  gc(now = Date.now()): { kept: number; removed: number } {
    const due = this.cache.due(now);
    if (due.length === 0) return { kept: 0, removed: 0 };
    const live = this.#liveIps();
    const forget = new Map<string, string[]>();
    const recheck = new Set<string>();
    let kept = 0;
    for (const { name, ip } of due) {
      if (live.has(ip)) {
        this.cache.extend(name, ip, now + Math.max(0.1, this.#o.settings.dnsGcInterval) * 1000);
        kept++;
        continue;
      }
      if (this.cache.remove(name, ip)) {
        this.#removeIp(ip);
        recheck.delete(ip);
      } else recheck.add(ip);
      let l = forget.get(name);
      if (!l) forget.set(name, (l = []));
      l.push(ip);
    }
    // an IP still held by other names may have a smaller selector set now
    for (const ip of recheck) if (isIPv4(ip) && this.#writeIp(ip) === 'none') this.#dropEntry(ip, this.#fqdnIds);
    const removed = due.length - kept;
    this.stats.gcKept += kept;
    this.stats.gcRemoved += removed;
    if (forget.size) void this.#o.agent.send({ learn: [], forget: [...forget].map(([name, ips]) => ({ name, ips })) });
    if (removed || kept) this.#schedulePersist();
    return { kept, removed };
  }

  #schedulePersist(): void {
    if (this.#persistTimer) return;
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = undefined;
      this.persist();
    }, PERSIST_MS);
    this.#persistTimer.unref();
  }

  #newJournal(): CacheJournal {
    return new CacheJournal(this.file, 0, (e) => this.#o.log(`cannot compact the DNS cache file: ${e.message}`));
  }

  /** Saves what changed to the state file (proxy/dns/cache-file.ts). */
  persist(): void {
    try {
      this.#journal ??= this.#newJournal();
      this.#journal.save(this.cache.drain(), () => this.cache.iterate(), this.cache.size);
    } catch (e) {
      this.#o.log(`cannot persist the DNS cache: ${(e as Error).message}`);
    }
  }

  stop(): void {
    if (this.#gcTimer) clearInterval(this.#gcTimer);
    if (this.#persistTimer) clearTimeout(this.#persistTimer);
    this.#persistTimer = undefined;
    this.persist();
  }
}
