// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/typed-map
 * `TypedMap<K, V>`: a {@link BpfMap} plus a key/value codec. The `*-map.ts` modules subclass it, one per map,
 * and own their codecs; callers never see bytes.
 *
 * Maps whose contents the datapath's decisions depend on (ipcache, policy, endpoints, config) are built with a
 * {@link RevisionBumper}: every write call below (set, delete, setMany, deleteMany, clear) bumps the policy
 * revision once, after writing, whether or not the write succeeded (bpf/lib/polrev.h; without the bump
 * established flows keep their previous verdict). Subclasses that write through `raw` wrap the write in
 * {@link TypedMap.written}.
 */
import path from 'node:path';
import { BpfMap, BPF_ANY, type MapSpec } from './bpf-map.ts';
import type { RevisionBumper } from './policy-revision.ts';

/** Default bpf root of an agent (`membrane agent --bpf-root`), where maps are pinned by name. */
export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/membrane';

/** Encoding of one map's keys and values. */
export interface MapCodec<K, V> {
  readonly spec: MapSpec;
  encodeKey(k: K): Buffer;
  decodeKey(b: Buffer): K;
  encodeValue(v: V): Buffer;
  decodeValue(b: Buffer): V;
}

/** Typed CRUD and batch access to one map. */
export class TypedMap<K, V> {
  /** The underlying raw map (fd, sizes). */
  readonly raw: BpfMap;
  protected readonly codec: MapCodec<K, V>;
  /** Bumped after every write; undefined for maps no decision depends on (conntrack). */
  protected readonly revision: (RevisionBumper & { close?(): void }) | undefined;
  private readonly ownsRevision: boolean;

  /**
   * @param raw the map
   * @param codec its key/value encoding
   * @param revision bumped after every write (required for ipcache, policy, endpoints, config)
   * @param ownsRevision whether close() closes `revision` (it was opened for this map alone)
   */
  constructor(raw: BpfMap, codec: MapCodec<K, V>, revision?: RevisionBumper & { close?(): void }, ownsRevision = false) {
    this.raw = raw;
    this.codec = codec;
    this.revision = revision;
    this.ownsRevision = ownsRevision;
  }

  /**
   * Runs `write` (map writes through `raw`), then bumps the revision once, also when `write` throws (part of
   * a batch may be written). Encode before calling it, so a bad entry throws before anything is written.
   */
  protected written<T>(write: () => T): T {
    try {
      return write();
    } finally {
      this.revision?.bump();
    }
  }

  /** The pin path of a map under a pin root. */
  static pinPath(pinRoot: string, name: string): string {
    return path.join(pinRoot, name);
  }

  /** @returns the entry, or undefined when absent */
  get(key: K): V | undefined {
    const v = this.raw.lookup(this.codec.encodeKey(key));
    return v ? this.codec.decodeValue(v) : undefined;
  }

  /** Inserts or replaces one entry. */
  set(key: K, value: V): void {
    const k = this.codec.encodeKey(key);
    const v = this.codec.encodeValue(value);
    this.written(() => this.raw.update(k, v, BPF_ANY));
  }

  /** @returns whether the key existed */
  delete(key: K): boolean {
    const k = this.codec.encodeKey(key);
    return this.written(() => this.raw.delete(k));
  }

  /** Inserts or replaces many entries (bpf_map_update_batch, 4096 per call). */
  setMany(entries: Iterable<readonly [K, V]>): void {
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (const [k, v] of entries) {
      keys.push(this.codec.encodeKey(k));
      values.push(this.codec.encodeValue(v));
    }
    this.written(() => this.raw.updateBatch(keys, values));
  }

  /** Deletes many keys; absent keys are ignored. @returns how many existed */
  deleteMany(keys: Iterable<K>): number {
    const encoded = [...keys].map((k) => this.codec.encodeKey(k));
    return this.written(() => this.raw.deleteBatch(encoded));
  }

  /** Every entry (a snapshot as good as the kernel gives while others write). */
  entries(): Array<[K, V]> {
    return this.raw.dump().map(([k, v]) => [this.codec.decodeKey(k), this.codec.decodeValue(v)]);
  }

  /** Deletes every entry. @returns how many */
  clear(): number {
    return this.written(() => this.raw.clear());
  }

  /** Closes the fd if this object opened it (and the revision, if it was opened for this map). */
  close(): void {
    this.raw.close();
    if (this.ownsRevision) this.revision?.close?.();
  }
}
