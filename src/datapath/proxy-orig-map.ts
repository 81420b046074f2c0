// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/proxy-orig-map
 * mbr_origdst_v1: the original destination of every UDP datagram the datapath redirects to the proxy, and the
 * identity of the endpoint that sent it, keyed by the client's address and port (bpf/lib/proxy.h;
 * datapath-trial.md §4 variant ii). The DNS proxy looks each datagram up here: the entry says the datapath
 * redirected it and which endpoint sent it (from its veth, not from a source address a pod could forge), and,
 * for the datagrams node:dgram delivers (it cannot read `IP_ORIGDSTADDR`), where it was sent.
 *
 * The datapath writes the entry for each datagram before handing it to the proxy socket, so a lookup made when
 * the datagram is received finds it (or a later datagram's entry from the same client address and port). The
 * datapath never reads the map: userspace writes here (tests) decide nothing, and do not bump the policy revision.
 */
import { BpfMap, MapType } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap, type MapCodec } from './typed-map.ts';
import { MAP_NAMES, PROXY_ORIG_ENTRY, PROXY_ORIG_KEY } from './layout.ts';
import { ipv4Bytes, ipv4Text, writeIpv4 } from './addr.ts';
import { MapEncodeError } from './errors.ts';

/**
 * Must match struct proxy_orig_key in bpf/lib/proxy.h: the client as the proxy sees it (the datagram's source).
 * Address and port are NETWORK order in the map, text / host-order numbers here.
 */
export interface ProxyOrigKey {
  /** `saddr`: client IPv4 address. */
  saddr: string;
  /** `sport`: client port. */
  sport: number;
  /** `proto`: IP protocol (17, UDP, is the only one the datapath writes). */
  proto: number;
}

/** Must match struct proxy_orig_entry in bpf/lib/proxy.h. */
export interface ProxyOrigEntry {
  /** `daddr` (network order in the map): the address the client sent to. */
  daddr: string;
  /** `dport` (network order in the map): the port the client sent to. */
  dport: number;
  /** `identity` (host order): security identity of the client. */
  identity: number;
}

/** The original destination of a redirected datagram, as {@link ProxyOrigMap.lookup} returns it. */
export interface OrigDestination {
  /** Original destination address. */
  ip: string;
  /** Original destination port. */
  port: number;
  /** Security identity of the client that sent it. */
  identity: number;
}

const K = PROXY_ORIG_KEY.fields;
const E = PROXY_ORIG_ENTRY.fields;

/** Encodes a key. @throws MapEncodeError for a bad address */
export function encodeProxyOrigKey(k: ProxyOrigKey): Buffer {
  const b = Buffer.alloc(PROXY_ORIG_KEY.size);
  ipv4Bytes(k.saddr).copy(b, K.saddr);
  b.writeUInt16BE(k.sport, K.sport);
  b.writeUInt8(k.proto, K.proto);
  return b;
}

/** Decodes a key. */
export function decodeProxyOrigKey(b: Buffer): ProxyOrigKey {
  return { saddr: ipv4Text(b, K.saddr), sport: b.readUInt16BE(K.sport), proto: b.readUInt8(K.proto) };
}

/** Encodes an entry. @throws MapEncodeError for a bad address */
export function encodeProxyOrigEntry(e: ProxyOrigEntry): Buffer {
  const b = Buffer.alloc(PROXY_ORIG_ENTRY.size);
  ipv4Bytes(e.daddr).copy(b, E.daddr);
  b.writeUInt16BE(e.dport, E.dport);
  b.writeUInt32LE(e.identity >>> 0, E.identity);
  return b;
}

/** Decodes an entry. */
export function decodeProxyOrigEntry(b: Buffer): ProxyOrigEntry {
  return { daddr: ipv4Text(b, E.daddr), dport: b.readUInt16BE(E.dport), identity: b.readUInt32LE(E.identity) };
}

const codec: MapCodec<ProxyOrigKey, ProxyOrigEntry> = {
  spec: { name: MAP_NAMES.proxyOrig, type: MapType.LRU_HASH, keySize: PROXY_ORIG_KEY.size, valueSize: PROXY_ORIG_ENTRY.size },
  encodeKey: encodeProxyOrigKey,
  decodeKey: decodeProxyOrigKey,
  encodeValue: encodeProxyOrigEntry,
  decodeValue: decodeProxyOrigEntry,
};

/**
 * Typed mbr_origdst_v1, for the DNS proxy (read) and tests.
 * @example
 * const orig = ProxyOrigMap.open('/sys/fs/bpf/membrane');
 * sock.on('message', (msg, rinfo) => {
 *   const dst = orig.lookup(rinfo.address, rinfo.port, 17); // { ip: '10.200.0.20', port: 53, identity: 1001 }
 * });
 */
export class ProxyOrigMap extends TypedMap<ProxyOrigKey, ProxyOrigEntry> {
  /** Map spec (name, type, sizes). */
  static readonly spec = codec.spec;

  /**
   * Wraps a map fd (e.g. from a loaded object).
   * @param fd map fd
   * @param ownsFd false leaves the fd to its owner
   */
  static fromFd(fd: number, ownsFd = false): ProxyOrigMap {
    return new ProxyOrigMap(BpfMap.fromFd(fd, codec.spec, ownsFd), codec);
  }

  /**
   * Opens the pinned map of an agent.
   * @param bpfRoot the agent's bpf root (`--bpf-root`), where the maps are pinned
   * @throws BpfMapError (not pinned: no datapath with this map loaded) | MapLayoutMismatchError
   */
  static open(bpfRoot: string = DEFAULT_PIN_ROOT): ProxyOrigMap {
    return new ProxyOrigMap(BpfMap.openPinned(TypedMap.pinPath(bpfRoot, codec.spec.name), codec.spec), codec);
  }

  /**
   * The original destination of the latest datagram the datapath redirected from a client.
   * @param clientIp the datagram's source address (dgram `rinfo.address`)
   * @param clientPort its source port (`rinfo.port`)
   * @param proto IP protocol, 17 for UDP
   * @returns the destination and the client's identity, or undefined when the map has no entry (not
   *   redirected by this datapath, or evicted)
   * @throws MapEncodeError for an address that is not IPv4 | BpfMapError
   */
  lookup(clientIp: string, clientPort: number, proto: number): OrigDestination | undefined {
    // once per datagram: key and value buffers reused, nothing allocated but the result
    const k = this.#key;
    k.fill(0);
    if (!writeIpv4(clientIp, k, K.saddr)) throw new MapEncodeError(`not an IPv4 address: ${JSON.stringify(clientIp)}`, { step: 'encode' });
    k.writeUInt16BE(clientPort, K.sport);
    k.writeUInt8(proto, K.proto);
    const v = this.#value;
    if (!this.raw.lookupInto(k, v)) return undefined;
    return { ip: ipv4Text(v, E.daddr), port: v.readUInt16BE(E.dport), identity: v.readUInt32LE(E.identity) };
  }

  readonly #key = Buffer.alloc(PROXY_ORIG_KEY.size);
  readonly #value = Buffer.alloc(PROXY_ORIG_ENTRY.size);
}
