// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/bpf-map
 * `BpfMap`: raw, byte-level access to one BPF map by fd (lookup, update, delete, iterate, batch). The typed
 * `*-map.ts` modules wrap it with their key/entry codecs; nothing else should need it directly.
 */
import { readFileSync } from 'node:fs';
import { libbpf, libc, mapBatchOpts, mapInfo, strerror } from './libbpf.ts';
import { BpfMapError, MapLayoutMismatchError } from './errors.ts';

/** `bpf_map_update_elem` flags. */
export const BPF_ANY = 0n;
export const BPF_NOEXIST = 1n;
export const BPF_EXIST = 2n;

const ENOENT = 2;
const EINVAL = 22;
const ENOTSUPP = 524;
const EOPNOTSUPP = 95;

/** Kernel map types used here (`enum bpf_map_type`). */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LPM_TRIE: 11,
  RINGBUF: 27,
} as const;

let possibleCpus: number | undefined;

/** Number of possible CPUs (the per-CPU value count of PERCPU maps), from /sys/devices/system/cpu/possible. */
export function numPossibleCpus(): number {
  if (possibleCpus !== undefined) return possibleCpus;
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    n += b === undefined ? 1 : b - a + 1;
  }
  possibleCpus = n;
  return n;
}

/** What a map is expected to look like; checked when a pinned map is opened. */
export interface MapSpec {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
}

/** Raw access to one map. Keys and values are Buffers of exactly keySize / valueSize (per-CPU: see valueBufSize). */
export class BpfMap {
  readonly fd: number;
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  /** Size of one value as declared (per CPU for per-CPU maps). */
  readonly valueSize: number;
  /** Size of the buffer lookups fill: valueSize, or roundup(valueSize, 8) × possible CPUs for per-CPU maps. */
  readonly valueBufSize: number;
  /** When false, close() leaves the fd open (it belongs to a loaded object). */
  private readonly ownsFd: boolean;
  private closed = false;
  private batchSupported: boolean | undefined;

  /**
   * @param fd map fd
   * @param spec expected name/type/sizes
   * @param ownsFd whether close() closes the fd
   */
  constructor(fd: number, spec: MapSpec, ownsFd: boolean) {
    this.fd = fd;
    this.name = spec.name;
    this.type = spec.type;
    this.keySize = spec.keySize;
    this.valueSize = spec.valueSize;
    const percpu = spec.type === MapType.PERCPU_ARRAY || spec.type === MapType.PERCPU_HASH;
    this.valueBufSize = percpu ? Math.ceil(spec.valueSize / 8) * 8 * numPossibleCpus() : spec.valueSize;
    this.ownsFd = ownsFd;
  }

  /**
   * Opens a pinned map (another process's, e.g. the agent's, from the CLI or the proxy) and checks that its
   * type and key/value sizes are the ones this build expects.
   * @param path the pin, e.g. `/sys/fs/bpf/membrane/mbr_policy_v1`
   * @param spec expected layout
   * @throws BpfMapError when the pin cannot be opened; MapLayoutMismatchError when the layout differs
   */
  static openPinned(path: string, spec: MapSpec): BpfMap {
    const fd = libbpf().bpf_obj_get(path);
    if (fd < 0) throw new BpfMapError(`cannot open pinned map ${path}: ${strerror(fd)}`, { step: 'bpf_obj_get', errno: -fd, map: spec.name });
    return BpfMap.fromFd(fd, spec, true);
  }

  /** Wraps an fd after checking its layout (see {@link openPinned}). */
  static fromFd(fd: number, spec: MapSpec, ownsFd: boolean): BpfMap {
    const info = mapInfo(fd);
    if ('err' in info) {
      if (ownsFd) libc().close(fd);
      throw new BpfMapError(`cannot read map info: ${strerror(info.err)}`, { step: 'bpf_obj_get_info_by_fd', errno: -info.err, map: spec.name });
    }
    if (info.type !== spec.type || info.keySize !== spec.keySize || info.valueSize !== spec.valueSize) {
      if (ownsFd) libc().close(fd);
      throw new MapLayoutMismatchError(
        `expected type ${spec.type} key ${spec.keySize} B value ${spec.valueSize} B, found type ${info.type} key ${info.keySize} B value ${info.valueSize} B (a layout change needs a new map version)`,
        { step: 'open', map: spec.name },
      );
    }
    return new BpfMap(fd, spec, ownsFd);
  }

  private fail(step: string, rc: number): never {
    throw new BpfMapError(strerror(rc), { step, errno: -rc, map: this.name });
  }

  private check(key: Buffer, value?: Buffer): void {
    if (this.closed) throw new BpfMapError('map is closed', { step: 'use', map: this.name });
    if (key.length !== this.keySize) throw new BpfMapError(`key is ${key.length} B, expected ${this.keySize}`, { step: 'encode', map: this.name });
    if (value && value.length !== this.valueBufSize) {
      throw new BpfMapError(`value is ${value.length} B, expected ${this.valueBufSize}`, { step: 'encode', map: this.name });
    }
  }

  /** @returns the value, or undefined when the key is absent */
  lookup(key: Buffer): Buffer | undefined {
    this.check(key);
    const value = Buffer.alloc(this.valueBufSize);
    const rc = libbpf().bpf_map_lookup_elem(this.fd, key, value);
    if (rc === -ENOENT) return undefined;
    if (rc < 0) this.fail('bpf_map_lookup_elem', rc);
    return value;
  }

  /**
   * Looks a key up into a buffer the caller owns (no allocation: for lookups per packet).
   * @returns false when the key is absent
   */
  lookupInto(key: Buffer, value: Buffer): boolean {
    this.check(key, value);
    const rc = libbpf().bpf_map_lookup_elem(this.fd, key, value);
    if (rc === -ENOENT) return false;
    if (rc < 0) this.fail('bpf_map_lookup_elem', rc);
    return true;
  }

  /** Inserts or replaces (flags: BPF_ANY, BPF_NOEXIST, BPF_EXIST). */
  update(key: Buffer, value: Buffer, flags: bigint = BPF_ANY): void {
    this.check(key, value);
    const rc = libbpf().bpf_map_update_elem(this.fd, key, value, flags);
    if (rc < 0) this.fail('bpf_map_update_elem', rc);
  }

  /** @returns whether the key existed */
  delete(key: Buffer): boolean {
    this.check(key);
    const rc = libbpf().bpf_map_delete_elem(this.fd, key);
    if (rc === -ENOENT) return false;
    if (rc < 0) this.fail('bpf_map_delete_elem', rc);
    return true;
  }

  /** Iterates keys with bpf_map_get_next_key (a snapshot is not guaranteed while others write). */
  *keys(): Generator<Buffer> {
    if (this.closed) throw new BpfMapError('map is closed', { step: 'use', map: this.name });
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const rc = libbpf().bpf_map_get_next_key(this.fd, prev, next);
      if (rc === -ENOENT) return;
      if (rc < 0) this.fail('bpf_map_get_next_key', rc);
      yield next;
      prev = next;
    }
  }

  /** Iterates [key, value] pairs; entries deleted meanwhile are skipped. */
  *entries(): Generator<[Buffer, Buffer]> {
    for (const k of [...this.keys()]) {
      const v = this.lookup(k);
      if (v) yield [k, v];
    }
  }

  private batchOk(rc: number): boolean {
    // Map types without batch support answer EINVAL/ENOTSUPP before touching anything: fall back once, remember.
    if (rc === -EINVAL || rc === -ENOTSUPP || rc === -EOPNOTSUPP) {
      if (this.batchSupported === undefined) {
        this.batchSupported = false;
        return false;
      }
    }
    return true;
  }

  /**
   * Inserts or replaces many entries, 4096 per `bpf_map_update_batch` call (falls back to single updates where
   * the map type has no batch support).
   */
  updateBatch(keys: readonly Buffer[], values: readonly Buffer[], elemFlags: bigint = BPF_ANY): void {
    if (keys.length !== values.length) throw new BpfMapError('keys and values differ in length', { step: 'bpf_map_update_batch', map: this.name });
    const CHUNK = 4096;
    for (let i = 0; i < keys.length; i += CHUNK) {
      const ks = keys.slice(i, i + CHUNK);
      const vs = values.slice(i, i + CHUNK);
      ks.forEach((k, j) => this.check(k, vs[j]));
      if (this.batchSupported !== false) {
        const count = Buffer.alloc(4);
        count.writeUInt32LE(ks.length);
        const rc = libbpf().bpf_map_update_batch(this.fd, Buffer.concat(ks), Buffer.concat(vs), count, mapBatchOpts(elemFlags));
        if (rc >= 0) {
          this.batchSupported = true;
          continue;
        }
        if (this.batchOk(rc)) this.fail('bpf_map_update_batch', rc);
      }
      ks.forEach((k, j) => this.update(k, vs[j], elemFlags));
    }
  }

  /** Deletes many keys; absent keys are ignored. @returns how many were deleted */
  deleteBatch(keys: readonly Buffer[]): number {
    let deleted = 0;
    // bpf_map_delete_batch stops at the first absent key (ENOENT), so single deletes keep "absent is fine"
    // semantics exact; batch first, then finish one by one from where the kernel stopped.
    const CHUNK = 4096;
    for (let i = 0; i < keys.length; i += CHUNK) {
      const ks = keys.slice(i, i + CHUNK);
      ks.forEach((k) => this.check(k));
      let done = 0;
      if (this.batchSupported !== false) {
        const count = Buffer.alloc(4);
        count.writeUInt32LE(ks.length);
        const rc = libbpf().bpf_map_delete_batch(this.fd, Buffer.concat(ks), count, mapBatchOpts());
        done = count.readUInt32LE();
        if (rc >= 0) {
          this.batchSupported = true;
          deleted += ks.length;
          continue;
        }
        if (rc !== -ENOENT && this.batchOk(rc)) this.fail('bpf_map_delete_batch', rc);
        if (rc !== -ENOENT) done = 0;
        deleted += done;
      }
      for (const k of ks.slice(done)) if (this.delete(k)) deleted++;
    }
    return deleted;
  }

  /** Reads the whole map (`bpf_map_lookup_batch` where supported, else key iteration). */
  dump(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    if (this.batchSupported !== false && this.type !== MapType.LPM_TRIE) {
      const CHUNK = 1024;
      const tokenSize = Math.max(this.keySize, 8);
      let inBatch: Buffer | null = null;
      for (;;) {
        const outBatch = Buffer.alloc(tokenSize);
        const keys = Buffer.alloc(this.keySize * CHUNK);
        const values = Buffer.alloc(this.valueBufSize * CHUNK);
        const count = Buffer.alloc(4);
        count.writeUInt32LE(CHUNK);
        const rc = libbpf().bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, values, count, mapBatchOpts());
        const n = count.readUInt32LE();
        if (rc < 0 && rc !== -ENOENT) {
          if (!this.batchOk(rc)) break;
          this.fail('bpf_map_lookup_batch', rc);
        }
        for (let j = 0; j < n; j++) {
          out.push([
            Buffer.from(keys.subarray(j * this.keySize, (j + 1) * this.keySize)),
            Buffer.from(values.subarray(j * this.valueBufSize, (j + 1) * this.valueBufSize)),
          ]);
        }
        if (rc === -ENOENT) return out;
        inBatch = outBatch;
      }
    }
    return [...this.entries()];
  }

  /** Deletes every entry. @returns how many were deleted */
  clear(): number {
    return this.deleteBatch([...this.keys()]);
  }

  /** Closes the fd if this object owns it. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsFd) libc().close(this.fd);
  }
}
