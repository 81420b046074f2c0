// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/sched
 * The scheduler's time slice for the calling thread (Linux ≥ 6.12, EEVDF): a thread with a short
 * slice gets a near deadline when it wakes, so it runs before a thread that is part-way through a
 * longer slice instead of waiting for it to end (default slice here 1.4 ms). The proxy's main
 * thread takes a short one: it handles each pod request or DNS query in tens of microseconds and
 * shares a CPU with the agent, whose bookkeeping can wait. Threads the thread starts afterwards
 * (workers, libuv's pool when it grows) inherit the slice; those already running keep theirs.
 *
 * `struct sched_attr` (56 bytes, SCHED_ATTR_SIZE_VER1): `u32 size @0; u32 sched_policy @4; u64
 * sched_flags @8; s32 sched_nice @16; u32 sched_priority @20; u64 sched_runtime @24 (the slice, for
 * SCHED_NORMAL); u64 sched_deadline @32; u64 sched_period @40; u32 util_min @48; u32 util_max @52`.
 */
import os from 'node:os';
import { errno, libc, strerror } from './libbpf.ts';
import { DatapathError } from './errors.ts';

const SYS_SCHED_SETATTR = 314; // x86_64
const SYS_SCHED_GETATTR = 315;
const SCHED_FLAG_KEEP_POLICY = 0x08;
const ATTR_SIZE = 56;

/**
 * Gives the calling thread a time slice of `ns` nanoseconds (0: the kernel's default), keeping its
 * policy (e.g. SCHED_BATCH set by an operator) and its nice value. Kernels before 6.12 accept the
 * call and keep their own slice.
 * @param ns 100 µs … 100 ms, or 0
 * @throws DatapathError (step `sched_setattr`) when the kernel refuses
 */
export function setThreadSlice(ns: number): void {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(ATTR_SIZE, 0);
  attr.writeBigUInt64LE(BigInt(SCHED_FLAG_KEEP_POLICY), 8);
  attr.writeInt32LE(os.getPriority(), 16); // this thread's nice value (sched_setattr sets it too)
  attr.writeBigUInt64LE(BigInt(ns), 24);
  if (libc().syscall(SYS_SCHED_SETATTR, 'int', 0, 'void *', attr, 'unsigned int', 0) < 0) {
    const e = errno();
    throw new DatapathError(strerror(e), { step: 'sched_setattr', errno: e });
  }
}

/**
 * The calling thread's slice in nanoseconds as the kernel reports it: from 6.12 its default when
 * none was set; before 6.12, 0.
 */
export function threadSlice(): number {
  const attr = Buffer.alloc(ATTR_SIZE);
  if (libc().syscall(SYS_SCHED_GETATTR, 'int', 0, 'void *', attr, 'unsigned int', ATTR_SIZE, 'unsigned int', 0) < 0) {
    const e = errno();
    throw new DatapathError(strerror(e), { step: 'sched_getattr', errno: e });
  }
  return Number(attr.readBigUInt64LE(24));
}
