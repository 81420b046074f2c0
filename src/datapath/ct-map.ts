// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/ct-map
 * mbr_ct_v2: conntrack (bpf/lib/conntrack.h). The datapath creates and refreshes entries; userspace reads them
 * (observe, debugging), deletes flows (e.g. after an endpoint goes away) and may garbage-collect stale ones.
 * Writes here do not bump the policy revision: deleting a flow makes its next packet a new flow, fully
 * checked; an entry written from userspace should carry no cached decision (`decision: null`).
 */
import { unlinkSync } from 'node:fs';
import { BpfMap, BPF_NOEXIST, MapType } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap, type MapCodec } from './typed-map.ts';
import { C_CONSTANTS, CT_ENTRY, CT_KEY, MAP_NAMES } from './layout.ts';
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

/**
 * The forward decision an entry cached (struct ct_entry.decision, one u64: bits 0..39 revision, 40..55 proxy
 * port, 56..63 CT_DEC_F_*).
 */
export interface CtDecision {
  /** Low 40 bits of the policy revision the decision was made at. */
  revision: bigint;
  /** Proxy port (host order) the flow is redirected to, 0 = none. */
  proxyPort: number;
  /** OBS_* point of the program that decided (1 from_container, 2 to_container, 3 from_netdev). */
  obsPoint: number;
  /** The verdict was AUDIT (audit mode let a would-be drop pass). */
  audit: boolean;
  /** to_container: the node itself sent the packets. */
  nodeOrigin: boolean;
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
  /** `decision`: the cached forward decision; null (0) = none, the next forward packet is fully checked. */
  decision?: CtDecision | null;
  /** `dec_ifindex`: the ifindex the cached decision belongs to (source veth, destination veth, or 0). */
  decIfindex?: number;
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

const C = C_CONSTANTS;
const REV_MASK = (1n << BigInt(C.CT_DEC_REV_BITS)) - 1n;

/** Encodes a cached decision into the `decision` word (null → 0). */
export function encodeCtDecision(d: CtDecision | null | undefined): bigint {
  if (!d) return 0n;
  const flags = (d.obsPoint & C.CT_DEC_F_OBS_MASK) | (d.audit ? C.CT_DEC_F_AUDIT : 0) | (d.nodeOrigin ? C.CT_DEC_F_NODE : 0);
  return (d.revision & REV_MASK) | (BigInt(d.proxyPort & 0xffff) << BigInt(C.CT_DEC_PORT_SHIFT)) | (BigInt(flags) << BigInt(C.CT_DEC_FLAGS_SHIFT));
}

/** Decodes the `decision` word (0 → null). */
export function decodeCtDecision(w: bigint): CtDecision | null {
  if (w === 0n) return null;
  const flags = Number(w >> BigInt(C.CT_DEC_FLAGS_SHIFT)) & 0xff;
  return {
    revision: w & REV_MASK,
    proxyPort: Number((w >> BigInt(C.CT_DEC_PORT_SHIFT)) & 0xffffn),
    obsPoint: flags & C.CT_DEC_F_OBS_MASK,
    audit: (flags & C.CT_DEC_F_AUDIT) !== 0,
    nodeOrigin: (flags & C.CT_DEC_F_NODE) !== 0,
  };
}

export function encodeCtEntry(e: CtEntry): Buffer {
  const b = Buffer.alloc(CT_ENTRY.size);
  b.writeBigUInt64LE(e.lastSeenNs, E.last_seen_ns);
  b.writeUInt32LE(e.srcIdentity >>> 0, E.src_identity);
  b.writeUInt16BE(e.proxyPort, E.proxy_port);
  b.writeUInt8(e.flags, E.flags);
  b.writeBigUInt64LE(encodeCtDecision(e.decision), E.decision);
  b.writeUInt32LE((e.decIfindex ?? 0) >>> 0, E.dec_ifindex);
  return b;
}

export function decodeCtEntry(b: Buffer): CtEntry {
  return {
    lastSeenNs: b.readBigUInt64LE(E.last_seen_ns),
    srcIdentity: b.readUInt32LE(E.src_identity),
    proxyPort: b.readUInt16BE(E.proxy_port),
    flags: b.readUInt8(E.flags),
    decision: decodeCtDecision(b.readBigUInt64LE(E.decision)),
    decIfindex: b.readUInt32LE(E.dec_ifindex),
  };
}

const codec: MapCodec<CtKey, CtEntry> = {
  spec: { name: MAP_NAMES.ct, type: MapType.LRU_HASH, keySize: CT_KEY.size, valueSize: CT_ENTRY.size },
  encodeKey: encodeCtKey,
  decodeKey: decodeCtKey,
  encodeValue: encodeCtEntry,
  decodeValue: decodeCtEntry,
};

/** Entry lifetimes of bpf/lib/conntrack.h (CT_LIFETIME_*_NS): past it an entry counts as absent. */
const CT_LIFETIME_TCP_NS = 21600n * 1_000_000_000n;
const CT_LIFETIME_CLOSING_NS = 10n * 1_000_000_000n;
const CT_LIFETIME_OTHER_NS = 60n * 1_000_000_000n;

/**
 * Whether an entry still stands for a live flow at `nowNs` (CLOCK_MONOTONIC, `process.hrtime.bigint()`),
 * as ct_lifetime() in bpf/lib/conntrack.h decides: 6 h for TCP, 10 s once FIN/RST was seen, 60 s otherwise.
 */
export function ctEntryLive(k: CtKey, e: CtEntry, nowNs: bigint): boolean {
  const lifetime = e.flags & C_CONSTANTS.CT_F_CLOSING ? CT_LIFETIME_CLOSING_NS : k.proto === 6 ? CT_LIFETIME_TCP_NS : CT_LIFETIME_OTHER_NS;
  return nowNs - e.lastSeenNs <= lifetime;
}

/** Typed mbr_ct_v2. */
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

/** Name and layout of the previous conntrack map (struct ct_entry of 16 bytes: v2's first 16 bytes). */
const CT_V1 = { name: 'mbr_ct_v1', type: MapType.LRU_HASH, keySize: CT_KEY.size, valueSize: 16 } as const;

/**
 * Migrates conntrack from mbr_ct_v1 (pinned by a previous version) into mbr_ct_v2, so an upgrade keeps
 * established flows: without it their replies would be checked as new flows until the next forward packet.
 * Entries are copied with no cached decision (their next forward packet is fully checked) and without
 * replacing entries v2 already has; then the v1 pin is removed (programs still attached to it keep it alive
 * until they are replaced). Flows the old programs create after the copy are not migrated.
 * @param pinRoot where both are pinned
 * @param v2 the new map
 * @returns how many entries were copied, or 0 when there is no v1 pin
 */
export function migrateCtV1(pinRoot: string, v2: CtMap): number {
  const pin = TypedMap.pinPath(pinRoot, CT_V1.name);
  let v1: BpfMap;
  try {
    v1 = BpfMap.openPinned(pin, CT_V1);
  } catch {
    return 0;
  }
  try {
    const rows = v1.dump();
    const keys = rows.map(([k]) => k);
    const values = rows.map(([, v]) => Buffer.concat([v, Buffer.alloc(CT_ENTRY.size - v.length)]));
    try {
      v2.raw.updateBatch(keys, values, BPF_NOEXIST);
    } catch {
      // Some keys exist already (BPF_NOEXIST): copy one by one, skipping those.
      for (let i = 0; i < keys.length; i++) {
        try {
          v2.raw.update(keys[i], values[i], BPF_NOEXIST);
        } catch {
          /* kept the newer entry */
        }
      }
    }
    unlinkSync(pin);
    return rows.length;
  } finally {
    v1.close();
  }
}
