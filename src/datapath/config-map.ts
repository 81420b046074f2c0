// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/config-map
 * mbr_config_v1: the datapath's runtime settings (bpf/lib/config.h), read by the programs on every packet.
 * Audit mode is an input of every decision, so every write bumps the policy revision once, after writing
 * (datapath/policy-revision), as writes to ipcache, policy and endpoints do.
 */
import { BpfMap, MapType } from './bpf-map.ts';
import { DEFAULT_PIN_ROOT, TypedMap, type MapCodec } from './typed-map.ts';
import { PolicyRevision } from './policy-revision.ts';
import { CONFIG_ENTRY, ConfigFlags, MAP_NAMES } from './layout.ts';
import { MapEncodeError } from './errors.ts';

/** Must match struct config_entry in bpf/lib/config.h. All host order. */
export interface DatapathConfig {
  /** `flags`: ConfigFlags bits (AUDIT: global audit mode; NO_FLOW_EVENTS: events for drops only). */
  flags: number;
  /** `events_per_sec`: verdict events per second per CPU (token bucket); 0 = unlimited. At most 1e8. */
  eventsPerSec: number;
  /** `events_burst`: bucket size; 0 = eventsPerSec. */
  eventsBurst: number;
  /** `host_identity`: identity of node-originated packets whose source is not in ipcache; 0 = 1 (host). */
  hostIdentity: number;
}

const F = CONFIG_ENTRY.fields;
const MAX_RATE = 100_000_000;

export function encodeConfig(c: DatapathConfig): Buffer {
  if (c.eventsPerSec < 0 || c.eventsPerSec > MAX_RATE) throw new MapEncodeError(`eventsPerSec ${c.eventsPerSec} out of range 0..1e8`, { step: 'encode', map: MAP_NAMES.config });
  const b = Buffer.alloc(CONFIG_ENTRY.size);
  b.writeUInt32LE(c.flags >>> 0, F.flags);
  b.writeUInt32LE(c.eventsPerSec >>> 0, F.events_per_sec);
  b.writeUInt32LE(c.eventsBurst >>> 0, F.events_burst);
  b.writeUInt32LE(c.hostIdentity >>> 0, F.host_identity);
  return b;
}

export function decodeConfig(b: Buffer): DatapathConfig {
  return { flags: b.readUInt32LE(F.flags), eventsPerSec: b.readUInt32LE(F.events_per_sec), eventsBurst: b.readUInt32LE(F.events_burst), hostIdentity: b.readUInt32LE(F.host_identity) };
}

const codec: MapCodec<number, DatapathConfig> = {
  spec: { name: MAP_NAMES.config, type: MapType.ARRAY, keySize: 4, valueSize: CONFIG_ENTRY.size },
  encodeKey: (i) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(i);
    return b;
  },
  decodeKey: (b) => b.readUInt32LE(0),
  encodeValue: encodeConfig,
  decodeValue: decodeConfig,
};

/**
 * Typed mbr_config_v1 (one entry).
 * @example ConfigMap.open().update({ flags: ConfigFlags.AUDIT })
 */
export class ConfigMap extends TypedMap<number, DatapathConfig> {
  static readonly spec = codec.spec;

  /**
   * Wraps a map fd (e.g. from a loaded object, which passes its own revision).
   * @param fd map fd
   * @param revision the policy revision of the same datapath, bumped after every write
   * @param ownsFd false leaves the fd to its owner
   */
  static fromFd(fd: number, revision: PolicyRevision, ownsFd = false): ConfigMap {
    return new ConfigMap(BpfMap.fromFd(fd, codec.spec, ownsFd), codec, revision);
  }

  /**
   * Opens the pinned map of an agent (for the CLI or the proxy), with the pinned policy revision beside it
   * (closed by close()).
   * @throws BpfMapError | MapLayoutMismatchError
   */
  static open(pinRoot: string = DEFAULT_PIN_ROOT): ConfigMap {
    const revision = PolicyRevision.open(pinRoot);
    try {
      return new ConfigMap(BpfMap.openPinned(TypedMap.pinPath(pinRoot, codec.spec.name), codec.spec), codec, revision, true);
    } catch (e) {
      revision.close();
      throw e;
    }
  }

  /** The current configuration. */
  read(): DatapathConfig {
    return this.get(0) ?? { flags: 0, eventsPerSec: 0, eventsBurst: 0, hostIdentity: 0 };
  }

  /** Replaces the fields given, keeps the others; bumps the policy revision. @returns the new configuration */
  update(patch: Partial<DatapathConfig>): DatapathConfig {
    const next = { ...this.read(), ...patch };
    this.set(0, next);
    return next;
  }

  /** Turns global audit mode on or off. */
  setAudit(on: boolean): void {
    const cur = this.read();
    this.update({ flags: on ? cur.flags | ConfigFlags.AUDIT : cur.flags & ~ConfigFlags.AUDIT });
  }
}
