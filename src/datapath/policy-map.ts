// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/policy-map
 * mbr_policy_v1: the policy of every local endpoint in one LPM trie (bpf/lib/policy.h). The policy engine
 * describes entries purely ({@link PolicyEntryDesc}); only this module knows how they become keys and values.
 * Every write bumps the policy revision once, after writing (datapath/policy-revision): every write to ipcache, policy or
 * endpoints must be followed by a revision bump, or established flows keep their previous verdict.
 */
import { BpfMap, MapType } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap, type MapCodec } from './typed-map.ts';
import { PolicyRevision } from './policy-revision.ts';
import { C_CONSTANTS, MAP_NAMES, POLICY_ENTRY, POLICY_KEY } from './layout.ts';
import { MapEncodeError } from './errors.ts';

/**
 * The key part of a policy entry. Must match struct policy_key in bpf/lib/policy.h:
 * `epId` → `ep_id`, `identity` → `sec_label` (0 = any peer), `egress` → `egress` (1/0), `proto` → `protocol`,
 * `port` → `dport` (written in NETWORK order), and `prefixlen = 72 + (proto ? 8 + portPrefixLen : 0)`.
 */
export interface PolicyKeyDesc {
  /** Local endpoint id. */
  epId: number;
  /** Peer identity; 0 = any peer (an L4-only entry). */
  identity: number;
  /** true: the endpoint's egress (peer = destination); false: its ingress (peer = source). */
  egress: boolean;
  /** IP protocol number; 0 = any protocol (then port and portPrefixLen must be 0). */
  proto: number;
  /** Destination port (ICMP/ICMPv6: the type), host order; bits beyond portPrefixLen must be 0. */
  port: number;
  /** How many leading bits of `port` match: 0 = any port, 16 = exactly `port`, between = an aligned range. */
  portPrefixLen: number;
}

/** The value part. Must match struct policy_entry in bpf/lib/policy.h (`lpm_prefix_len` is derived). */
export interface PolicyValueDesc {
  /** A deny entry: wins over allows (reference §2.5). */
  deny: boolean;
  /** Redirect to the proxy on 127.0.0.1:proxyPort; 0 = none (host order here, `proxy_port` is network order). */
  proxyPort: number;
  /** Opaque number the agent maps to the policies that produced the entry (shown in verdict events). */
  cookie: number;
}

/** One policy map entry as the policy engine describes it. */
export type PolicyEntryDesc = PolicyKeyDesc & PolicyValueDesc;

const K = POLICY_KEY.fields;
const V = POLICY_ENTRY.fields;
const EXACT = C_CONSTANTS.POLICY_PREFIX_EXACT_FIELDS;

function fail(msg: string): never {
  throw new MapEncodeError(msg, { step: 'encode', map: MAP_NAMES.policy });
}

/** prefixlen - 72 of a key: 0 (any proto), 8 (proto, any port) … 24 (exact port). */
export function policyLpmPrefixLen(k: PolicyKeyDesc): number {
  return k.proto === 0 ? 0 : 8 + k.portPrefixLen;
}

/** Checks a key description. @throws MapEncodeError */
function validateKey(k: PolicyKeyDesc): void {
  const u32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
  if (!u32(k.epId) || k.epId === 0) fail(`epId ${k.epId} must be a non-zero u32`);
  if (!u32(k.identity)) fail(`identity ${k.identity} must be a u32`);
  if (!Number.isInteger(k.proto) || k.proto < 0 || k.proto > 255) fail(`proto ${k.proto} out of range`);
  if (!Number.isInteger(k.portPrefixLen) || k.portPrefixLen < 0 || k.portPrefixLen > 16) fail(`portPrefixLen ${k.portPrefixLen} out of range 0..16`);
  if (!Number.isInteger(k.port) || k.port < 0 || k.port > 0xffff) fail(`port ${k.port} out of range`);
  if (k.proto === 0 && (k.port !== 0 || k.portPrefixLen !== 0)) fail('an any-protocol entry cannot have a port');
  const mask = k.portPrefixLen === 0 ? 0 : (0xffff << (16 - k.portPrefixLen)) & 0xffff;
  if ((k.port & ~mask) !== 0) fail(`port ${k.port} has bits beyond its prefix /${k.portPrefixLen}`);
}

/** Encodes the key of a description. @throws MapEncodeError */
export function encodePolicyKey(k: PolicyKeyDesc): Buffer {
  validateKey(k);
  const b = Buffer.alloc(POLICY_KEY.size);
  b.writeUInt32LE(EXACT + policyLpmPrefixLen(k), K.prefixlen);
  b.writeUInt32LE(k.epId, K.ep_id);
  b.writeUInt32LE(k.identity, K.sec_label);
  b.writeUInt8(k.egress ? 1 : 0, K.egress);
  b.writeUInt8(k.proto, K.protocol);
  b.writeUInt16BE(k.port, K.dport);
  return b;
}

/** Decodes a key. */
export function decodePolicyKey(b: Buffer): PolicyKeyDesc {
  const lpm = b.readUInt32LE(K.prefixlen) - EXACT;
  return {
    epId: b.readUInt32LE(K.ep_id),
    identity: b.readUInt32LE(K.sec_label),
    egress: b.readUInt8(K.egress) !== 0,
    proto: b.readUInt8(K.protocol),
    port: b.readUInt16BE(K.dport),
    portPrefixLen: lpm <= 8 ? 0 : lpm - 8,
  };
}

/** Encodes the value of a description (needs the key for `lpm_prefix_len`). */
export function encodePolicyValue(v: PolicyValueDesc, k: PolicyKeyDesc): Buffer {
  if (!Number.isInteger(v.proxyPort) || v.proxyPort < 0 || v.proxyPort > 0xffff) fail(`proxyPort ${v.proxyPort} out of range`);
  if (v.deny && v.proxyPort) fail('a deny entry cannot redirect');
  const b = Buffer.alloc(POLICY_ENTRY.size);
  b.writeUInt16BE(v.proxyPort, V.proxy_port);
  b.writeUInt8(v.deny ? 1 : 0, V.deny);
  b.writeUInt8(policyLpmPrefixLen(k), V.lpm_prefix_len);
  b.writeUInt32LE(v.cookie >>> 0, V.cookie);
  return b;
}

/** Decodes a value. */
export function decodePolicyValue(b: Buffer): PolicyValueDesc & { lpmPrefixLen: number } {
  return {
    proxyPort: b.readUInt16BE(V.proxy_port),
    deny: b.readUInt8(V.deny) !== 0,
    lpmPrefixLen: b.readUInt8(V.lpm_prefix_len),
    cookie: b.readUInt32LE(V.cookie),
  };
}

// The value codec alone cannot derive lpm_prefix_len, so PolicyMap stores full descriptions.
const codec: MapCodec<PolicyKeyDesc, PolicyValueDesc> = {
  spec: { name: MAP_NAMES.policy, type: MapType.LPM_TRIE, keySize: POLICY_KEY.size, valueSize: POLICY_ENTRY.size },
  encodeKey: encodePolicyKey,
  decodeKey: decodePolicyKey,
  encodeValue: () => fail('use PolicyMap.upsert (the value depends on the key)'),
  decodeValue: decodePolicyValue,
};

function keyOf(d: PolicyEntryDesc): PolicyKeyDesc {
  return { epId: d.epId, identity: d.identity, egress: d.egress, proto: d.proto, port: d.port, portPrefixLen: d.portPrefixLen };
}

function encodeEntries(entries: Iterable<PolicyEntryDesc>): { keys: Buffer[]; values: Buffer[] } {
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (const d of entries) {
    const k = keyOf(d);
    keys.push(encodePolicyKey(k));
    values.push(encodePolicyValue(d, k));
  }
  return { keys, values };
}

/**
 * Typed mbr_policy_v1. Each write call (set, upsert, setMany, upsertMany, apply, delete, deleteMany,
 * deleteEndpoint, clear) bumps the policy revision once, after writing: every write to ipcache, policy or
 * endpoints must be followed by a revision bump, or established flows keep their previous verdict.
 * @example
 * const pm = PolicyMap.open();
 * // endpoint 7 may reach identity 1234 on TCP 8080-8083 (one prefix /14)
 * pm.upsert({ epId: 7, identity: 1234, egress: true, proto: 6, port: 8080, portPrefixLen: 14, deny: false, proxyPort: 0, cookie: 42 });
 */
export class PolicyMap extends TypedMap<PolicyKeyDesc, PolicyValueDesc> {
  static readonly spec = codec.spec;

  /**
   * Wraps a map fd (e.g. from a loaded object, which passes its own revision).
   * @param fd map fd
   * @param revision the policy revision of the same datapath, bumped after every write
   * @param ownsFd false leaves the fd to its owner
   */
  static fromFd(fd: number, revision: PolicyRevision, ownsFd = false): PolicyMap {
    return new PolicyMap(BpfMap.fromFd(fd, codec.spec, ownsFd), codec, revision);
  }

  /**
   * Opens the pinned map of an agent (for the CLI or the proxy), with the pinned policy revision beside it
   * (closed by close()).
   * @throws BpfMapError | MapLayoutMismatchError
   */
  static open(pinRoot: string = DEFAULT_PIN_ROOT): PolicyMap {
    const revision = PolicyRevision.open(pinRoot);
    try {
      return new PolicyMap(BpfMap.openPinned(TypedMap.pinPath(pinRoot, codec.spec.name), codec.spec), codec, revision, true);
    } catch (e) {
      revision.close();
      throw e;
    }
  }

  /** Inserts or replaces one entry. */
  upsert(d: PolicyEntryDesc): void {
    const k = keyOf(d);
    const key = encodePolicyKey(k);
    const value = encodePolicyValue(d, k);
    this.written(() => this.raw.update(key, value));
  }

  /** Same as {@link upsert} (value derived from the key). */
  override set(key: PolicyKeyDesc, value: PolicyValueDesc): void {
    this.upsert({ ...key, ...value });
  }

  /** Inserts or replaces many entries with bpf_map_update_batch. */
  upsertMany(entries: Iterable<PolicyEntryDesc>): void {
    const { keys, values } = encodeEntries(entries);
    this.written(() => this.raw.updateBatch(keys, values));
  }

  override setMany(entries: Iterable<readonly [PolicyKeyDesc, PolicyValueDesc]>): void {
    this.upsertMany([...entries].map(([k, v]) => ({ ...k, ...v })));
  }

  /**
   * Applies an incremental change set (the shape of the policy engine's MapChanges): deletes first, then adds,
   * so a key that is deleted and re-added ends up present. Everything is encoded before anything is written
   * (a bad entry throws with the map untouched), and the revision is bumped once, after both.
   */
  apply(changes: { adds: Iterable<PolicyEntryDesc>; deletes: Iterable<PolicyKeyDesc> }): void {
    const deletes = [...changes.deletes].map((k) => encodePolicyKey(k));
    const { keys, values } = encodeEntries(changes.adds);
    this.written(() => {
      this.raw.deleteBatch(deletes);
      this.raw.updateBatch(keys, values);
    });
  }

  /** Every entry as a description. */
  list(epId?: number): PolicyEntryDesc[] {
    return this.entries()
      .filter(([k]) => epId === undefined || k.epId === epId)
      .map(([k, v]) => ({ ...k, deny: v.deny, proxyPort: v.proxyPort, cookie: v.cookie }));
  }

  /** Removes every entry of one endpoint (when it goes away). @returns how many */
  deleteEndpoint(epId: number): number {
    return this.deleteMany(this.list(epId).map(keyOf));
  }
}
