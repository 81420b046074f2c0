// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/dns/cache-file
 *
 * `<state-dir>/fqdn-cache.json`, the DNS cache on disk (reference §5.6), as a journal so that
 * saving costs what changed, not the whole cache (rewriting a large cache every second stalled
 * the proxy's event loop for tens of milliseconds):
 *   line 1           {"version":2}
 *   then, per line   ["+", name, ip, expiresAt, lookupAt]   (learned, or expiry moved)
 *                    ["-", name, ip]                        (removed)
 * Replayed in order. Rewritten whole (atomically, by rename) when it holds more than twice the
 * cache's entries plus COMPACT_SLACK lines. A torn last line (crash while appending) is skipped.
 */
import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { FqdnCacheEntry } from './fqdn-cache.ts';

const COMPACT_SLACK = 10_000;

/** The entries a cache file holds (empty when missing or unreadable). */
export function readCacheFile(file: string): FqdnCacheEntry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const byKey = new Map<string, FqdnCacheEntry>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue;
    }
    if (!Array.isArray(v)) continue;
    const [op, name, ip, expiresAt, lookupAt] = v as [unknown, unknown, unknown, unknown, unknown];
    if (typeof name !== 'string' || typeof ip !== 'string') continue;
    const key = `${name}|${ip}`;
    if (op === '-') byKey.delete(key);
    else if (op === '+' && typeof expiresAt === 'number') byKey.set(key, { name, ip, expiresAt, lookupAt: typeof lookupAt === 'number' ? lookupAt : expiresAt });
  }
  return [...byKey.values()];
}

const upsertLine = (e: FqdnCacheEntry) => JSON.stringify(['+', e.name, e.ip, e.expiresAt, e.lookupAt]);

export class CacheJournal {
  readonly file: string;
  #lines = 0;

  constructor(file: string, loadedLines = 0) {
    this.file = file;
    this.#lines = loadedLines;
  }

  /** Appends changes, or rewrites the file when it has grown too long for `size` entries. */
  save(changes: { upserts: FqdnCacheEntry[]; removes: Array<{ name: string; ip: string }> }, all: () => FqdnCacheEntry[], size: number): void {
    const n = changes.upserts.length + changes.removes.length;
    if (n === 0) return;
    if (this.#lines === 0 || this.#lines + n > 2 * size + COMPACT_SLACK) {
      this.rewrite(all());
      return;
    }
    // removals first: a pair removed and learned again since the last save must replay as present
    const out = changes.removes.map((r) => JSON.stringify(['-', r.name, r.ip]));
    for (const e of changes.upserts) out.push(upsertLine(e));
    appendFileSync(this.file, out.join('\n') + '\n');
    this.#lines += n;
  }

  /** Writes the whole cache. */
  rewrite(entries: FqdnCacheEntry[]): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, ['{"version":2}', ...entries.map(upsertLine)].join('\n') + '\n');
    renameSync(tmp, this.file);
    this.#lines = entries.length + 1;
  }
}
