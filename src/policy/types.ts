// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/types
 *
 * PolicyKey and PolicyEntry: the userspace form of one policy-map entry (reference §7.2).
 * Intentionally duplicated from src/datapath's byte layout so that src/policy stays pure: the
 * datapath converts these into C structs (`struct policy_key` / `policy_entry` in bpf/lib/policy.h).
 */

export type Direction = 'ingress' | 'egress';
export const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];

/** IANA protocol numbers used in keys; 0 = any protocol. */
export const PROTO_ANY = 0;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
export const PROTO_SCTP = 132;

const PROTO_NAMES: Record<number, string> = { 0: 'ANY', 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

/** Human name of a protocol number. */
export function protoName(proto: number): string {
  return PROTO_NAMES[proto] ?? String(proto);
}

export type L7Parser = 'http' | 'dns' | 'kafka';

/**
 * One map key. Identity and direction are exact; protocol then port form the prefix:
 * `proto = 0` means any protocol (port and prefix are 0); otherwise `portPrefixLen` of the 16
 * port bits must match (0 = any port of that protocol, 16 = exactly `port`). ICMP types are
 * ports. Ports are in host byte order.
 */
export interface PolicyKey {
  /** Peer identity; 0 = any peer (an L4-only entry). */
  identity: number;
  direction: Direction;
  proto: number;
  port: number;
  portPrefixLen: number;
}

/**
 * One map value. Precedence (reference §2.5): deny 255 > redirect 2 > allow 1; a broader or
 * equal key of the same identity or of identity 0 with higher precedence suppresses a key.
 */
export interface PolicyEntry {
  deny: boolean;
  /** L7 parser the flow is redirected to, or null for a plain allow/deny. */
  redirect: L7Parser | null;
  precedence: number;
  /** Policy refs (`Kind/ns/name`) or synthetic markers (see ORIGIN_*) the entry came from, sorted. */
  derivedFrom: string[];
}

export const PRECEDENCE_DENY = 255;
export const PRECEDENCE_REDIRECT = 2;
export const PRECEDENCE_ALLOW = 1;

/** Synthetic origins: not policies, but reasons the engine added an entry. */
export const ORIGIN_ALLOW_LOCALHOST = '<allow-localhost>';
export const ORIGIN_NO_DEFAULT_DENY = '<enableDefaultDeny=false>';

export function isSyntheticOrigin(o: string): boolean {
  return o.startsWith('<');
}

/** Canonical string of a key, used as a map key and in golden files. */
export function keyString(k: PolicyKey): string {
  const port = k.proto === 0 ? '*' : k.portPrefixLen === 0 ? '*' : k.portPrefixLen === 16 ? String(k.port) : `${k.port}/${k.portPrefixLen}`;
  return `${k.direction}:${k.identity}:${protoName(k.proto)}:${port}`;
}

/** Total LPM prefix of the (proto, port) part, as the datapath sees it: 0, 8..24. */
export function keyPrefixLen(k: PolicyKey): number {
  return k.proto === 0 ? 0 : 8 + k.portPrefixLen;
}

/** True when `outer` covers `inner` on the (proto, port) part (identities not compared). */
export function portCovers(outer: PolicyKey, inner: PolicyKey): boolean {
  if (outer.proto === 0) return true;
  if (outer.proto !== inner.proto) return false;
  if (outer.portPrefixLen > inner.portPrefixLen) return false;
  const shift = 16 - outer.portPrefixLen;
  return outer.portPrefixLen === 0 || inner.port >>> shift === outer.port >>> shift;
}

/** True when the key matches a concrete (proto, port) of a packet. */
export function keyMatches(k: PolicyKey, proto: number, port: number): boolean {
  if (k.proto === 0) return true;
  if (k.proto !== proto) return false;
  if (k.portPrefixLen === 0) return true;
  const shift = 16 - k.portPrefixLen;
  return port >>> shift === k.port >>> shift;
}

/** Incremental change to an endpoint's map state. */
export interface MapChanges {
  adds: Array<{ key: PolicyKey; entry: PolicyEntry }>;
  deletes: PolicyKey[];
}

export function entriesEqual(a: PolicyEntry, b: PolicyEntry): boolean {
  return (
    a.deny === b.deny &&
    a.redirect === b.redirect &&
    a.precedence === b.precedence &&
    a.derivedFrom.length === b.derivedFrom.length &&
    a.derivedFrom.every((d, i) => d === b.derivedFrom[i])
  );
}
