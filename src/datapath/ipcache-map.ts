// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/ipcache-map
 * mbr_ipcache_v1: IP prefix → identity (and local endpoint). Written by the agent and by the DNS proxy. Every write
 * bumps the policy revision once, after writing (datapath/policy-revision): every write to ipcache, policy or
 * endpoints must be followed by a revision bump, or established flows keep their previous verdict.
 */
import { BpfMap, MapType } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap, type MapCodec } from './typed-map.ts';
import { PolicyRevision } from './policy-revision.ts';
import { IPCACHE_ENTRY, IPCACHE_KEY, MAP_NAMES, C_CONSTANTS } from './layout.ts';
import { ipv4Bytes, ipv4Text, ipv6Bytes, ipv6Text, parseCidr } from './addr.ts';
import { MapEncodeError } from './errors.ts';

/**
 * An ipcache prefix. Must match struct ipcache_key in bpf/lib/ipcache.h: `addr` becomes `addr[16]` in network
 * order (IPv4 in the first 4 bytes), `prefixLen` (0..32 or 0..128) becomes `prefixlen = 32 + prefixLen`
 * (the family and pad bytes always match), the family is taken from `addr`.
 */
export interface IpcacheKey {
  /** IPv4 or IPv6 address text; bits beyond prefixLen must be zero. */
  addr: string;
  /** CIDR prefix length. */
  prefixLen: number;
}

/** Must match struct ipcache_entry in bpf/lib/ipcache.h. All host order. */
export interface IpcacheEntry {
  /** Security identity of the prefix. */
  identity: number;
  /** Local endpoint id (`ep_id`); 0 = not a local endpoint. */
  epId: number;
  /** The local endpoint's host-side veth ifindex (`ifindex`, key of mbr_endpoint_v1); 0 when epId is 0. */
  ifindex: number;
  /** `flags`: reserved, 0. */
  flags?: number;
}

const F = IPCACHE_KEY.fields;
const E = IPCACHE_ENTRY.fields;

/** Encodes a key. @throws MapEncodeError for a bad address or host bits set beyond the prefix */
export function encodeIpcacheKey(k: IpcacheKey): Buffer {
  const { family } = parseCidr(k.addr);
  const max = family === 4 ? 32 : 128;
  if (!Number.isInteger(k.prefixLen) || k.prefixLen < 0 || k.prefixLen > max) {
    throw new MapEncodeError(`prefix length ${k.prefixLen} out of range for ${k.addr}`, { step: 'encode', map: MAP_NAMES.ipcache });
  }
  const addr = family === 4 ? ipv4Bytes(k.addr) : ipv6Bytes(k.addr);
  for (let bit = k.prefixLen; bit < max; bit++) {
    if (addr[bit >> 3] & (0x80 >> (bit & 7))) {
      throw new MapEncodeError(`${k.addr}/${k.prefixLen} has host bits set`, { step: 'encode', map: MAP_NAMES.ipcache });
    }
  }
  const b = Buffer.alloc(IPCACHE_KEY.size);
  b.writeUInt32LE(C_CONSTANTS.IPCACHE_PREFIX_HDR + k.prefixLen, F.prefixlen);
  b.writeUInt8(family === 4 ? C_CONSTANTS.IPCACHE_FAMILY_IPV4 : C_CONSTANTS.IPCACHE_FAMILY_IPV6, F.family);
  addr.copy(b, F.addr);
  return b;
}

/** Decodes a key. */
export function decodeIpcacheKey(b: Buffer): IpcacheKey {
  const family = b.readUInt8(F.family);
  const prefixLen = b.readUInt32LE(F.prefixlen) - C_CONSTANTS.IPCACHE_PREFIX_HDR;
  return { addr: family === C_CONSTANTS.IPCACHE_FAMILY_IPV4 ? ipv4Text(b, F.addr) : ipv6Text(b, F.addr), prefixLen };
}

/** Encodes an entry. */
export function encodeIpcacheEntry(e: IpcacheEntry): Buffer {
  const b = Buffer.alloc(IPCACHE_ENTRY.size);
  b.writeUInt32LE(e.identity >>> 0, E.identity);
  b.writeUInt32LE(e.epId >>> 0, E.ep_id);
  b.writeUInt32LE(e.ifindex >>> 0, E.ifindex);
  b.writeUInt32LE((e.flags ?? 0) >>> 0, E.flags);
  return b;
}

/** Decodes an entry. */
export function decodeIpcacheEntry(b: Buffer): IpcacheEntry {
  return { identity: b.readUInt32LE(E.identity), epId: b.readUInt32LE(E.ep_id), ifindex: b.readUInt32LE(E.ifindex), flags: b.readUInt32LE(E.flags) };
}

const codec: MapCodec<IpcacheKey, IpcacheEntry> = {
  spec: { name: MAP_NAMES.ipcache, type: MapType.LPM_TRIE, keySize: IPCACHE_KEY.size, valueSize: IPCACHE_ENTRY.size },
  encodeKey: encodeIpcacheKey,
  decodeKey: decodeIpcacheKey,
  encodeValue: encodeIpcacheEntry,
  decodeValue: decodeIpcacheEntry,
};

/**
 * Typed mbr_ipcache_v1. set, setMany, setCidr, delete, deleteMany and clear each bump the policy revision once,
 * after writing: every write to ipcache, policy or endpoints must be followed by a revision bump, or
 * established flows keep their previous verdict.
 * @example
 * const ipc = IpcacheMap.open('/sys/fs/bpf/membrane');
 * ipc.set({ addr: '10.200.1.10', prefixLen: 32 }, { identity: 1234, epId: 7, ifindex: 12 });
 */
export class IpcacheMap extends TypedMap<IpcacheKey, IpcacheEntry> {
  /** Map spec (name, type, sizes). */
  static readonly spec = codec.spec;

  /**
   * Wraps a map fd (e.g. from a loaded object, which passes its own revision).
   * @param fd map fd
   * @param revision the policy revision of the same datapath, bumped after every write
   * @param ownsFd false leaves the fd to its owner
   */
  static fromFd(fd: number, revision: PolicyRevision, ownsFd = false): IpcacheMap {
    return new IpcacheMap(BpfMap.fromFd(fd, codec.spec, ownsFd), codec, revision);
  }

  /**
   * Opens the pinned map of an agent (for the CLI or the proxy), with the pinned policy revision beside it
   * (closed by close()).
   * @throws BpfMapError | MapLayoutMismatchError
   */
  static open(pinRoot: string = DEFAULT_PIN_ROOT): IpcacheMap {
    const revision = PolicyRevision.open(pinRoot);
    try {
      return new IpcacheMap(BpfMap.openPinned(TypedMap.pinPath(pinRoot, codec.spec.name), codec.spec), codec, revision, true);
    } catch (e) {
      revision.close();
      throw e;
    }
  }

  /** Sets a prefix given as CIDR text (`10.0.0.0/8`, or a bare address for a host prefix); bumps the revision. */
  setCidr(cidr: string, entry: IpcacheEntry): void {
    const { addr, prefixLen } = parseCidr(cidr);
    this.set({ addr, prefixLen }, entry);
  }
}
