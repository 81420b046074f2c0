// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/ct-map
 * mbr_ct_v1: conntrack (bpf/lib/conntrack.h). The datapath creates and refreshes entries; userspace reads them
 * (observe, debugging), deletes flows (e.g. after an endpoint goes away) and may garbage-collect stale ones.
 */
import { BpfMap, MapType } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap, type MapCodec } from './typed-map.ts';
import { CT_ENTRY, CT_KEY, MAP_NAMES } from './layout.ts';
import { ipv4Bytes, ipv4Text } from './addr.ts';

/**
 * Must match struct ct_key in bpf/lib/conntrack.h: the tuple of the packet that opened the flow. Addresses
 * and ports are NETWORK order in the map, host-order numbers/text here. ICMP echo: `sport` is the echo id and
 * `dport` 0.
 */
export interface CtKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

/** Must match struct ct_entry in bpf/lib/conntrack.h. */
export interface CtEntry {
  /** `last_seen_ns`: bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last refresh, host order. */
  lastSeenNs: bigint;
  /** `src_identity`: identity of the flow's source. */
  srcIdentity: number;
  /** `proxy_port` (network order in the map): 0 = not redirected. */
  proxyPort: number;
  /** `flags`: CtFlags bits. */
  flags: number;
}

const K = CT_KEY.fields;
const E = CT_ENTRY.fields;

export function encodeCtKey(k: CtKey): Buffer {
  const b = Buffer.alloc(CT_KEY.size);
  ipv4Bytes(k.saddr).copy(b, K.saddr);
  ipv4Bytes(k.daddr).copy(b, K.daddr);
  b.writeUInt16BE(k.sport, K.sport);
  b.writeUInt16BE(k.dport, K.dport);
  b.writeUInt8(k.proto, K.proto);
  return b;
}

export function decodeCtKey(b: Buffer): CtKey {
  return { saddr: ipv4Text(b, K.saddr), daddr: ipv4Text(b, K.daddr), sport: b.readUInt16BE(K.sport), dport: b.readUInt16BE(K.dport), proto: b.readUInt8(K.proto) };
}

export function encodeCtEntry(e: CtEntry): Buffer {
  const b = Buffer.alloc(CT_ENTRY.size);
  b.writeBigUInt64LE(e.lastSeenNs, E.last_seen_ns);
  b.writeUInt32LE(e.srcIdentity >>> 0, E.src_identity);
  b.writeUInt16BE(e.proxyPort, E.proxy_port);
  b.writeUInt8(e.flags, E.flags);
  return b;
}

export function decodeCtEntry(b: Buffer): CtEntry {
  return { lastSeenNs: b.readBigUInt64LE(E.last_seen_ns), srcIdentity: b.readUInt32LE(E.src_identity), proxyPort: b.readUInt16BE(E.proxy_port), flags: b.readUInt8(E.flags) };
}

const codec: MapCodec<CtKey, CtEntry> = {
  spec: { name: MAP_NAMES.ct, type: MapType.LRU_HASH, keySize: CT_KEY.size, valueSize: CT_ENTRY.size },
  encodeKey: encodeCtKey,
  decodeKey: decodeCtKey,
  encodeValue: encodeCtEntry,
  decodeValue: decodeCtEntry,
};

/** Typed mbr_ct_v1. */
export class CtMap extends TypedMap<CtKey, CtEntry> {
  static readonly spec = codec.spec;

  static fromFd(fd: number, ownsFd = false): CtMap {
    return new CtMap(BpfMap.fromFd(fd, codec.spec, ownsFd), codec);
  }

  static open(pinRoot: string = DEFAULT_PIN_ROOT): CtMap {
    return new CtMap(BpfMap.openPinned(TypedMap.pinPath(pinRoot, codec.spec.name), codec.spec), codec);
  }

  /**
   * Deletes entries not refreshed since `olderThanNs` (CLOCK_MONOTONIC, as bpf_ktime_get_ns; in Node
   * `process.hrtime.bigint()` reads the same clock). @returns how many were deleted
   */
  gc(olderThanNs: bigint): number {
    return this.deleteMany(this.entries().filter(([, e]) => e.lastSeenNs < olderThanNs).map(([k]) => k));
  }
}
