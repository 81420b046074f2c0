// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/policy-revision
 * mbr_polrev_v1: the global policy revision (bpf/lib/polrev.h). Conntrack caches each established flow's
 * decision together with the revision it was made at, and reuses it while the revision is unchanged.
 *
 * Contract: every write to ipcache, policy or endpoints (and the runtime config) must be followed by a revision
 * bump, or established flows keep their previous verdict. The {@link IpcacheMap}, {@link PolicyMap},
 * {@link EndpointsMap} and {@link ConfigMap} wrappers do it themselves: each write call (one entry or a whole
 * batch) bumps once, after the write, even when the write fails half-way. Whoever writes those maps without
 * the wrappers (bpftool, raw {@link BpfMap} access) must call {@link PolicyRevision.bump} afterwards.
 *
 * Ordering (polrev.h): write first, bump second; the bump is an atomic add on the mmapped value
 * (`Atomics.add`, BPF_F_MMAPABLE), so writers in several processes (the agent, the DNS proxy) never lose each
 * other's bumps.
 *
 * @example
 * const rev = PolicyRevision.open('/sys/fs/bpf/membrane');
 * rawPolicyMap.delete(key); // a write outside the wrappers…
 * rev.bump();               // …must be followed by a bump
 */
import { BpfMap, MapType, type MapSpec } from './bpf-map.ts';
import { errno, libc, strerror, viewOf, type Ptr } from './libbpf.ts';
import { BpfMapError } from './errors.ts';
import { MAP_NAMES, POLREV_ENTRY } from './layout.ts';
import { DEFAULT_PIN_ROOT } from './typed-map.ts';
import path from 'node:path';

const PAGE_SIZE = 4096;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn;

/** Something that can be told "a decision input was written" (a {@link PolicyRevision}). */
export interface RevisionBumper {
  /** Increments the revision. @returns the new revision */
  bump(): bigint;
}

/** The mmapped revision counter of one datapath (one per pin root). */
export class PolicyRevision implements RevisionBumper {
  /** Map spec (name, type, sizes): ARRAY of one `struct polrev_entry`. */
  static readonly spec: MapSpec = { name: MAP_NAMES.polrev, type: MapType.ARRAY, keySize: 4, valueSize: POLREV_ENTRY.size };

  private readonly map: BpfMap;
  private ptr: Ptr;
  private readonly value: BigUint64Array;
  private closed = false;

  private constructor(map: BpfMap) {
    this.map = map;
    const c = libc();
    this.ptr = c.mmap(null, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, map.fd, 0);
    if (this.ptr === MAP_FAILED || !this.ptr) {
      const e = errno();
      map.close();
      throw new BpfMapError(`cannot mmap the revision (was the map created with BPF_F_MMAPABLE?): ${strerror(e)}`, { step: 'mmap', errno: e, map: MAP_NAMES.polrev });
    }
    this.value = new BigUint64Array(viewOf(this.ptr, PAGE_SIZE), POLREV_ENTRY.fields.revision, 1);
  }

  /**
   * Maps the revision of a loaded object.
   * @param fd mbr_polrev_v1 fd (e.g. `loaded.mapFd('mbr_polrev_v1')`)
   * @param ownsFd whether close() closes the fd
   * @throws BpfMapError | MapLayoutMismatchError
   */
  static fromFd(fd: number, ownsFd = false): PolicyRevision {
    return new PolicyRevision(BpfMap.fromFd(fd, PolicyRevision.spec, ownsFd));
  }

  /** Opens the pinned revision of an agent (for the CLI or the proxy). @throws BpfMapError */
  static open(pinRoot: string = DEFAULT_PIN_ROOT): PolicyRevision {
    return new PolicyRevision(BpfMap.openPinned(path.join(pinRoot, MAP_NAMES.polrev), PolicyRevision.spec));
  }

  private use(): BigUint64Array {
    if (this.closed) throw new BpfMapError('policy revision is closed', { step: 'use', map: MAP_NAMES.polrev });
    return this.value;
  }

  /** @returns the current revision */
  current(): bigint {
    return Atomics.load(this.use(), 0);
  }

  /**
   * Increments the revision atomically. Call it AFTER the map writes it covers.
   * @returns the new revision
   */
  bump(): bigint {
    return Atomics.add(this.use(), 0, 1n) + 1n;
  }

  /** Unmaps the value and closes the fd if this object opened it. Idempotent; later calls throw. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc().munmap(this.ptr, PAGE_SIZE);
    this.map.close();
  }
}
