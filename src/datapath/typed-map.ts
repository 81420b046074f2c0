// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/typed-map
 * `TypedMap<K, V>`: a {@link BpfMap} plus a key/value codec. The `*-map.ts` modules subclass it, one per map,
 * and own their codecs; callers never see bytes.
 */
import path from 'node:path';
import { BpfMap, BPF_ANY, type MapSpec } from './bpf-map.ts';

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

  constructor(raw: BpfMap, codec: MapCodec<K, V>) {
    this.raw = raw;
    this.codec = codec;
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
    this.raw.update(this.codec.encodeKey(key), this.codec.encodeValue(value), BPF_ANY);
  }

  /** @returns whether the key existed */
  delete(key: K): boolean {
    return this.raw.delete(this.codec.encodeKey(key));
  }

  /** Inserts or replaces many entries (bpf_map_update_batch, 4096 per call). */
  setMany(entries: Iterable<readonly [K, V]>): void {
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (const [k, v] of entries) {
      keys.push(this.codec.encodeKey(k));
      values.push(this.codec.encodeValue(v));
    }
    this.raw.updateBatch(keys, values);
  }

  /** Deletes many keys; absent keys are ignored. @returns how many existed */
  deleteMany(keys: Iterable<K>): number {
    return this.raw.deleteBatch([...keys].map((k) => this.codec.encodeKey(k)));
  }

  /** Every entry (a snapshot as good as the kernel gives while others write). */
  entries(): Array<[K, V]> {
    return this.raw.dump().map(([k, v]) => [this.codec.decodeKey(k), this.codec.decodeValue(v)]);
  }

  /** Deletes every entry. @returns how many */
  clear(): number {
    return this.raw.clear();
  }

  /** Closes the fd if this object opened it. */
  close(): void {
    this.raw.close();
  }
}
