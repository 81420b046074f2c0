// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/test-run
 * `testRun`: runs a tc program on a crafted packet with BPF_PROG_TEST_RUN (scenario tests, benchmarks).
 *
 * What the kernel (6.x) accepts in `ctx_in` for a tc (SCHED_CLS) program, a `struct __sk_buff` of 192 bytes:
 * only `mark`, `priority`, `ingress_ifindex`, `ifindex`, `cb[]`, `tstamp`, `wire_len`, `gso_segs`,
 * `gso_size` and `hwtstamp` may be non-zero (others → EINVAL). `ifindex` must name an existing device of the
 * caller's network namespace (it becomes skb->dev; 0 or 1 = loopback), while `ingress_ifindex` (skb_iif) may
 * be any number — so tests key source endpoints (looked up by ingress_ifindex in from_container) by arbitrary
 * numbers, and destination endpoints of to_container (looked up by ifindex) by 1 (lo). `ctx_out` returns
 * `mark` (and cb, priority…) as the program left them. The packet is not at tc ingress (skb_at_tc_ingress is
 * false), so bpf_sk_assign fails with EOPNOTSUPP: a redirect that finds a proxy socket drops with
 * SOCKET_ASSIGN_FAILED (179) under test-run, and one that finds none with SOCKET_LOOKUP_FAILED (178).
 * Socket lookups run in the caller's network namespace.
 */
import { libbpf, readTestRunOpts, strerror, testRunOpts } from './libbpf.ts';
import { BpfTestRunError } from './errors.ts';

/** sizeof(struct __sk_buff) in linux/bpf.h (6.x) and the offsets used here. */
export const SK_BUFF = { size: 192, mark: 8, priority: 32, ingress_ifindex: 36, ifindex: 40, cb: 48 } as const;

/** Input of {@link testRun}. */
export interface TestRunInput {
  /** Ethernet frame. */
  packet: Buffer;
  /** skb->ifindex: an existing device (default 1, lo). */
  ifindex?: number;
  /** skb->ingress_ifindex (any value). */
  ingressIfindex?: number;
  /** skb->mark on entry. */
  mark?: number;
  /** Run this many times (the kernel reports the mean duration). Default 1. */
  repeat?: number;
}

/** Result of {@link testRun}. */
export interface TestRunResult {
  /** The program's return value (TC_ACT_OK 0, TC_ACT_SHOT 2, …). */
  retval: number;
  /** Mean ns per run as measured by the kernel. */
  durationNs: number;
  /** skb->mark after the program. */
  mark: number;
  /** The packet after the program. */
  packetOut: Buffer;
}

/** tc return codes. */
export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;

/**
 * Runs `progFd` once (or `repeat` times) on `input.packet`.
 * @throws BpfTestRunError
 * @example const r = testRun(lxc.program('mbr_from_container'), { packet, ingressIfindex: 100 }); r.retval === TC_ACT_OK
 */
export function testRun(progFd: number, input: TestRunInput): TestRunResult {
  const ctxIn = Buffer.alloc(SK_BUFF.size);
  ctxIn.writeUInt32LE((input.mark ?? 0) >>> 0, SK_BUFF.mark);
  ctxIn.writeUInt32LE((input.ingressIfindex ?? 0) >>> 0, SK_BUFF.ingress_ifindex);
  ctxIn.writeUInt32LE((input.ifindex ?? 1) >>> 0, SK_BUFF.ifindex);
  const ctxOut = Buffer.alloc(SK_BUFF.size);
  const dataOut = Buffer.alloc(Math.max(input.packet.length + 256, 1514));
  const { opts, keep } = testRunOpts({ dataIn: input.packet, dataOut, ctxIn, ctxOut, repeat: input.repeat ?? 1 });
  const rc = libbpf().bpf_prog_test_run_opts(progFd, opts);
  void keep;
  if (rc < 0) throw new BpfTestRunError(strerror(rc), { step: 'bpf_prog_test_run_opts', errno: -rc });
  const out = readTestRunOpts(opts);
  return {
    retval: out.retval,
    durationNs: out.duration,
    mark: ctxOut.readUInt32LE(SK_BUFF.mark),
    packetOut: Buffer.from(dataOut.subarray(0, out.dataSizeOut)),
  };
}
