// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/metrics-map
 * mbr_metrics_v1: per-CPU packet/byte counters by (reason, direction, verdict) (bpf/lib/metrics.h).
 */
import { BpfMap, MapType, numPossibleCpus } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap } from './typed-map.ts';
import { C_CONSTANTS, MAP_NAMES, METRICS_ENTRY, METRICS_KEY } from './layout.ts';

/** One counter, summed over CPUs. Key fields must match struct metrics_key, values struct metrics_entry. */
export interface MetricsCounter {
  /** 0 for passed packets, else the drop reason as a positive number (133 = POLICY_DENIED). */
  reason: number;
  /** 'ingress' (towards an endpoint) or 'egress' (from one). */
  dir: 'ingress' | 'egress';
  /** VERDICT_* (1 forwarded, 2 dropped, 4 audit, 5 redirected) or 100 event rate-limited, 101 event lost. */
  verdict: number;
  packets: bigint;
  bytes: bigint;
}

const K = METRICS_KEY.fields;
const V = METRICS_ENTRY.fields;

const spec = { name: MAP_NAMES.metrics, type: MapType.PERCPU_HASH, keySize: METRICS_KEY.size, valueSize: METRICS_ENTRY.size };

/** Reads mbr_metrics_v1. */
export class MetricsMap {
  static readonly spec = spec;
  readonly raw: BpfMap;

  constructor(raw: BpfMap) {
    this.raw = raw;
  }

  static fromFd(fd: number, ownsFd = false): MetricsMap {
    return new MetricsMap(BpfMap.fromFd(fd, spec, ownsFd));
  }

  static open(pinRoot: string = DEFAULT_PIN_ROOT): MetricsMap {
    return new MetricsMap(BpfMap.openPinned(TypedMap.pinPath(pinRoot, spec.name), spec));
  }

  /** Every counter, summed over CPUs. */
  read(): MetricsCounter[] {
    const ncpu = numPossibleCpus();
    const stride = Math.ceil(METRICS_ENTRY.size / 8) * 8;
    return this.raw.dump().map(([k, v]) => {
      let packets = 0n;
      let bytes = 0n;
      for (let c = 0; c < ncpu; c++) {
        packets += v.readBigUInt64LE(c * stride + V.packets);
        bytes += v.readBigUInt64LE(c * stride + V.bytes);
      }
      return {
        reason: k.readUInt16LE(K.reason),
        dir: k.readUInt8(K.dir) === C_CONSTANTS.DIR_EGRESS ? 'egress' : 'ingress',
        verdict: k.readUInt8(K.verdict),
        packets,
        bytes,
      };
    });
  }

  /** Deletes every counter. */
  clear(): void {
    this.raw.clear();
  }

  close(): void {
    this.raw.close();
  }
}
