// SPDX-License-Identifier: Apache-2.0
/**
 * @module endpoint/state-store
 *
 * What the agent persists in its state directory so that a restart keeps the numbers already
 * written into the pinned maps: identities (label set → number), endpoint ids (endpoint →
 * ep_id) and policy cookies (policies → cookie). Written atomically (temp file + rename).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface PersistedState {
  version: 1;
  identities: Record<string, number>;
  endpointIds: Record<string, number>;
  cookies: Record<string, number>;
}

const EMPTY: PersistedState = { version: 1, identities: {}, endpointIds: {}, cookies: {} };

export class StateStore {
  readonly file: string;

  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true });
    this.file = path.join(stateDir, 'agent-state.json');
  }

  /** The persisted state, or an empty one when missing or unreadable (then numbers are reassigned). */
  read(): PersistedState {
    try {
      const s = JSON.parse(readFileSync(this.file, 'utf8')) as PersistedState;
      if (s.version !== 1) return structuredClone(EMPTY);
      return { ...structuredClone(EMPTY), ...s };
    } catch {
      return structuredClone(EMPTY);
    }
  }

  write(state: PersistedState): void {
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(state));
    renameSync(tmp, this.file);
  }
}

/** Small stable number allocator (ep ids, cookies): the same key keeps its number. */
export class NumberTable {
  readonly #byKey = new Map<string, number>();
  readonly #used = new Set<number>();
  #next: number;

  constructor(initial: Record<string, number> = {}, first = 1) {
    this.#next = first;
    for (const [k, v] of Object.entries(initial)) {
      this.#byKey.set(k, v);
      this.#used.add(v);
    }
  }

  get(key: string): number {
    let n = this.#byKey.get(key);
    if (n === undefined) {
      while (this.#used.has(this.#next)) this.#next++;
      n = this.#next++;
      this.#byKey.set(key, n);
      this.#used.add(n);
    }
    return n;
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /** Reverse lookup. */
  keyOf(n: number): string | undefined {
    for (const [k, v] of this.#byKey) if (v === n) return k;
    return undefined;
  }

  release(key: string): void {
    const n = this.#byKey.get(key);
    if (n === undefined) return;
    this.#byKey.delete(key);
    this.#used.delete(n);
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.#byKey);
  }
}
