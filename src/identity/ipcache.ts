// SPDX-License-Identifier: Apache-2.0
/**
 * @module identity/ipcache
 *
 * Userspace ipcache: prefix → identity with longest-prefix lookup, mirroring what the datapath's
 * LPM map answers (reference §7.1). An address in no prefix is world (identity 2).
 */
import { formatPrefix, parseIp, parsePrefix, prefixContainsIp, type Prefix } from '../labels/cidr.ts';
import { ID_WORLD } from './reserved.ts';

export interface IpCacheEntry {
  prefix: Prefix;
  identity: number;
}

export class IpCache {
  /** prefix text → entry */
  readonly #entries = new Map<string, IpCacheEntry>();
  #sorted: IpCacheEntry[] | null = null;

  /** Sets the identity of a prefix (or a bare address, a host prefix). */
  upsert(prefixText: string, identity: number): void {
    const prefix = parsePrefix(prefixText);
    if (!prefix) throw new Error(`invalid prefix '${prefixText}'`);
    this.#entries.set(formatPrefix(prefix), { prefix, identity });
    this.#sorted = null;
  }

  delete(prefixText: string): boolean {
    const prefix = parsePrefix(prefixText);
    if (!prefix) return false;
    this.#sorted = null;
    return this.#entries.delete(formatPrefix(prefix));
  }

  /**
   * Longest-prefix lookup.
   * @returns the matching entry, or undefined (the caller treats that as world)
   */
  lookupEntry(ip: string): IpCacheEntry | undefined {
    const addr = parseIp(ip);
    if (!addr) return undefined;
    if (!this.#sorted) this.#sorted = [...this.#entries.values()].sort((a, b) => b.prefix.len - a.prefix.len);
    return this.#sorted.find((e) => prefixContainsIp(e.prefix, addr));
  }

  /** Identity of an address: its longest prefix's, else world. */
  lookup(ip: string): number {
    return this.lookupEntry(ip)?.identity ?? ID_WORLD;
  }

  entries(): IterableIterator<IpCacheEntry> {
    return this.#entries.values();
  }
}
