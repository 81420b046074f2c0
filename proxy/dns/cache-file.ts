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
 * cache's entries plus COMPACT_SLACK lines: in the background, COMPACT_CHUNK entries per
 * event-loop turn (a large cache written in one go stalled the proxy for tens of milliseconds);
 * what is appended meanwhile goes to the old file and, at the end, to the new one too, so either
 * file replays to the cache. A torn last line (crash while appending) is skipped.
 */
import { appendFileSync, closeSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { FqdnCacheEntry } from './fqdn-cache.ts';

const COMPACT_SLACK = 10_000;
const COMPACT_CHUNK = 2000;
/** Makes each temporary file's name unique within the process. */
let tmpSeq = 0;
const tmpName = (file: string) => `${file}.${process.pid}.${++tmpSeq}.tmp`;

/** Removes temporary files an earlier process left (killed while writing one). */
export function removeStaleTemporaries(file: string): void {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith(prefix) && n.endsWith('.tmp')) rmSync(path.join(dir, n), { force: true });
}

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

/** A name or address written as a JSON string (quoted as is when nothing needs escaping). */
const PLAIN = /^[\w.:*-]*$/;
const str = (x: string): string => (PLAIN.test(x) ? `"${x}"` : JSON.stringify(x));
const upsertLine = (e: FqdnCacheEntry) => `["+",${str(e.name)},${str(e.ip)},${JSON.stringify(e.expiresAt)},${JSON.stringify(e.lookupAt)}]`;

interface Compaction {
  fd: number;
  tmp: string;
  entries: Iterator<FqdnCacheEntry>;
  lines: number;
  /** What was appended to the old file since the compaction began. */
  appended: string[];
  appendedLines: number;
}

export class CacheJournal {
  readonly file: string;
  #lines = 0;
  #compaction: Compaction | null = null;
  readonly #onError: (e: Error) => void;

  constructor(file: string, loadedLines = 0, onError: (e: Error) => void = () => {}) {
    this.file = file;
    this.#lines = loadedLines;
    this.#onError = onError;
  }

  /**
   * Appends changes; starts a background compaction when the file has grown too long for `size`
   * entries (`all` is iterated across event-loop turns).
   */
  save(changes: { upserts: FqdnCacheEntry[]; removes: Array<{ name: string; ip: string }> }, all: () => Iterable<FqdnCacheEntry>, size: number): void {
    const n = changes.upserts.length + changes.removes.length;
    if (n === 0) return;
    if (this.#lines === 0) {
      this.rewrite(all());
      return;
    }
    // removals first: a pair removed and learned again since the last save must replay as present
    const out = changes.removes.map((r) => `["-",${str(r.name)},${str(r.ip)}]`);
    for (const e of changes.upserts) out.push(upsertLine(e));
    const text = out.join('\n') + '\n';
    appendFileSync(this.file, text);
    this.#lines += n;
    if (this.#compaction) {
      this.#compaction.appended.push(text);
      this.#compaction.appendedLines += n;
    } else if (this.#lines > 2 * size + COMPACT_SLACK) this.#compact(all());
  }

  /** Whether a background compaction is under way. */
  get compacting(): boolean {
    return this.#compaction !== null;
  }

  #compact(entries: Iterable<FqdnCacheEntry>): void {
    const tmp = tmpName(this.file);
    try {
      const fd = openSync(tmp, 'w');
      writeSync(fd, '{"version":2}\n');
      this.#compaction = { fd, tmp, entries: entries[Symbol.iterator](), lines: 1, appended: [], appendedLines: 0 };
    } catch (e) {
      this.#onError(e as Error);
      return;
    }
    setImmediate(() => this.#compactStep());
  }

  #compactStep(): void {
    const c = this.#compaction!;
    try {
      const out: string[] = [];
      let done = false;
      for (let i = 0; i < COMPACT_CHUNK; i++) {
        const r = c.entries.next();
        if (r.done) {
          done = true;
          break;
        }
        out.push(upsertLine(r.value));
      }
      if (out.length) writeSync(c.fd, out.join('\n') + '\n');
      c.lines += out.length;
      if (!done) {
        setImmediate(() => this.#compactStep());
        return;
      }
      for (const text of c.appended) writeSync(c.fd, text);
      closeSync(c.fd);
      renameSync(c.tmp, this.file);
      this.#lines = c.lines + c.appendedLines;
    } catch (e) {
      this.#onError(e as Error);
      try {
        closeSync(c.fd);
      } catch {
        /* closed */
      }
      rmSync(c.tmp, { force: true });
    }
    this.#compaction = null;
  }

  /** Writes the whole cache at once. */
  rewrite(entries: Iterable<FqdnCacheEntry>): void {
    const tmp = tmpName(this.file);
    const lines = ['{"version":2}'];
    for (const e of entries) lines.push(upsertLine(e));
    writeFileSync(tmp, lines.join('\n') + '\n');
    renameSync(tmp, this.file);
    this.#lines = lines.length;
  }
}
