// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/endpoints-map
 * mbr_endpoint_v1: host-side veth ifindex → local endpoint (id, identity, enforcement flags). Every write
 * bumps the policy revision once, after writing (datapath/policy-revision): every write to ipcache, policy or
 * endpoints must be followed by a revision bump, or established flows keep their previous verdict.
 */
import { BpfMap, MapType } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap, type MapCodec } from './typed-map.ts';
import { PolicyRevision } from './policy-revision.ts';
import { ENDPOINT_INFO, EndpointFlags, MAP_NAMES } from './layout.ts';

/** Key of mbr_endpoint_v1: the host-side veth's ifindex (`__u32`, host order). */
export type EndpointKey = number;

/** Must match struct endpoint_info in bpf/lib/endpoints.h. All host order. */
export interface EndpointInfo {
  /** `ep_id`: endpoint id, never 0; policy keys carry it. */
  epId: number;
  /** The endpoint's security identity. */
  identity: number;
  /** `flags`: EndpointFlags bits (AUDIT, INGRESS_ENFORCED, EGRESS_ENFORCED). */
  flags: number;
}

const E = ENDPOINT_INFO.fields;

/** Encodes the key. */
export function encodeEndpointKey(ifindex: EndpointKey): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(ifindex >>> 0);
  return b;
}

/** Encodes an entry. */
export function encodeEndpointInfo(e: EndpointInfo): Buffer {
  const b = Buffer.alloc(ENDPOINT_INFO.size);
  b.writeUInt32LE(e.epId >>> 0, E.ep_id);
  b.writeUInt32LE(e.identity >>> 0, E.identity);
  b.writeUInt32LE(e.flags >>> 0, E.flags);
  return b;
}

/** Decodes an entry. */
export function decodeEndpointInfo(b: Buffer): EndpointInfo {
  return { epId: b.readUInt32LE(E.ep_id), identity: b.readUInt32LE(E.identity), flags: b.readUInt32LE(E.flags) };
}

/**
 * Builds endpoint flags.
 * @param o which directions are enforced, and per-endpoint audit
 */
export function endpointFlags(o: { ingress: boolean; egress: boolean; audit?: boolean }): number {
  return (o.ingress ? EndpointFlags.INGRESS_ENFORCED : 0) | (o.egress ? EndpointFlags.EGRESS_ENFORCED : 0) | (o.audit ? EndpointFlags.AUDIT : 0);
}

const codec: MapCodec<EndpointKey, EndpointInfo> = {
  spec: { name: MAP_NAMES.endpoints, type: MapType.HASH, keySize: 4, valueSize: ENDPOINT_INFO.size },
  encodeKey: encodeEndpointKey,
  decodeKey: (b) => b.readUInt32LE(0),
  encodeValue: encodeEndpointInfo,
  decodeValue: decodeEndpointInfo,
};

/**
 * Typed mbr_endpoint_v1. set, setMany, delete, deleteMany and clear each bump the policy revision once, after
 * writing: every write to ipcache, policy or endpoints must be followed by a revision bump, or established
 * flows keep their previous verdict.
 * @example
 * eps.set(if_nametoindex('lxc1'), { epId: 7, identity: 1234, flags: endpointFlags({ ingress: true, egress: true }) });
 */
export class EndpointsMap extends TypedMap<EndpointKey, EndpointInfo> {
  static readonly spec = codec.spec;

  /**
   * Wraps a map fd (e.g. from a loaded object, which passes its own revision).
   * @param fd map fd
   * @param revision the policy revision of the same datapath, bumped after every write
   * @param ownsFd false leaves the fd to its owner
   */
  static fromFd(fd: number, revision: PolicyRevision, ownsFd = false): EndpointsMap {
    return new EndpointsMap(BpfMap.fromFd(fd, codec.spec, ownsFd), codec, revision);
  }

  /**
   * Opens the pinned map of an agent (for the CLI or the proxy), with the pinned policy revision beside it
   * (closed by close()).
   * @throws BpfMapError | MapLayoutMismatchError
   */
  static open(pinRoot: string = DEFAULT_PIN_ROOT): EndpointsMap {
    const revision = PolicyRevision.open(pinRoot);
    try {
      return new EndpointsMap(BpfMap.openPinned(TypedMap.pinPath(pinRoot, codec.spec.name), codec.spec), codec, revision, true);
    } catch (e) {
      revision.close();
      throw e;
    }
  }
}
