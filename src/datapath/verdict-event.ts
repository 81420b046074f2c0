// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/verdict-event
 * Decoder of `struct verdict_event` (bpf/lib/events.h), the ring buffer record the programs emit for every new
 * flow and every drop.
 */
import { C_CONSTANTS, VERDICT_EVENT } from './layout.ts';
import { dropReasonName } from './drop-reasons.ts';
import { ipv4Text } from './addr.ts';

/** Flow verdict names (Hubble's). */
export type Verdict = 'FORWARDED' | 'DROPPED' | 'AUDIT' | 'REDIRECTED' | 'UNKNOWN';
/** Which program saw the packet. */
export type ObservationPoint = 'from-container' | 'to-container' | 'from-netdev' | 'unknown';
/** Outcome of one side's policy (SIDE_* in policy.h). */
export type SideOutcome = 'not-evaluated' | 'not-enforced' | 'allowed' | 'redirected' | 'denied' | 'default-denied' | 'unknown';
/** Which kind of entry decided (MATCH_* in policy.h, Cilium's policy match types). */
export type MatchType = 'none' | 'l3-only' | 'l3-l4' | 'l4-only' | 'all' | 'l3-proto' | 'proto-only' | 'unknown';

/** One side (the source's egress or the destination's ingress) of a verdict. */
export interface SideVerdict {
  outcome: SideOutcome;
  /** A deny that audit mode let pass. */
  audited: boolean;
  match: MatchType;
  /** policy_entry.cookie of the deciding entry (0 = none): the agent maps it to the policies. */
  cookie: number;
}

/** A decoded `struct verdict_event`. Addresses as text, ports host order. */
export interface VerdictEvent {
  /** bpf_ktime_get_ns() (CLOCK_MONOTONIC; compare with process.hrtime.bigint()). */
  tsNs: bigint;
  saddr: string;
  daddr: string;
  /** 0 for ICMP. */
  sport: number;
  /** ICMP: the type. */
  dport: number;
  proto: number;
  verdict: Verdict;
  /** DROP_* (negative) or 0; for AUDIT the reason audit mode overrode. */
  dropReason: number;
  /** Hubble name of dropReason (`POLICY_DENIED`…), null when 0. */
  dropReasonName: string | null;
  isReply: boolean;
  newFlow: boolean;
  related: boolean;
  fromProxy: boolean;
  obsPoint: ObservationPoint;
  srcIdentity: number;
  dstIdentity: number;
  /** Local endpoint ids, 0 = not local. */
  srcEp: number;
  dstEp: number;
  ifindex: number;
  /** Port the flow was redirected to, 0 = none. */
  proxyPort: number;
  egress: SideVerdict;
  ingress: SideVerdict;
}

const F = VERDICT_EVENT.fields;
const C = C_CONSTANTS;

const VERDICTS: Record<number, Verdict> = { [C.VERDICT_FORWARDED]: 'FORWARDED', [C.VERDICT_DROPPED]: 'DROPPED', [C.VERDICT_AUDIT]: 'AUDIT', [C.VERDICT_REDIRECTED]: 'REDIRECTED' };
const OBS: Record<number, ObservationPoint> = { [C.OBS_FROM_CONTAINER]: 'from-container', [C.OBS_TO_CONTAINER]: 'to-container', [C.OBS_FROM_NETDEV]: 'from-netdev' };
const SIDES: Record<number, SideOutcome> = {
  [C.SIDE_NOT_EVALUATED]: 'not-evaluated', [C.SIDE_NOT_ENFORCED]: 'not-enforced', [C.SIDE_ALLOWED]: 'allowed',
  [C.SIDE_REDIRECTED]: 'redirected', [C.SIDE_DENIED]: 'denied', [C.SIDE_DEFAULT_DENIED]: 'default-denied',
};
const MATCHES: Record<number, MatchType> = {
  [C.MATCH_NONE]: 'none', [C.MATCH_L3_ONLY]: 'l3-only', [C.MATCH_L3_L4]: 'l3-l4', [C.MATCH_L4_ONLY]: 'l4-only',
  [C.MATCH_ALL]: 'all', [C.MATCH_L3_PROTO]: 'l3-proto', [C.MATCH_PROTO_ONLY]: 'proto-only',
};

function side(result: number, match: number, cookie: number): SideVerdict {
  return {
    outcome: SIDES[result & ~C.SIDE_F_AUDITED] ?? 'unknown',
    audited: (result & C.SIDE_F_AUDITED) !== 0,
    match: MATCHES[match] ?? 'unknown',
    cookie,
  };
}

/** Size of one record. */
export const VERDICT_EVENT_SIZE = VERDICT_EVENT.size;

/**
 * Decodes one record.
 * @param b at least 64 bytes
 * @param off where the record starts
 */
export function decodeVerdictEvent(b: Buffer, off = 0): VerdictEvent {
  const flags = b.readUInt8(off + F.flags);
  const dropReason = b.readInt32LE(off + F.drop_reason);
  return {
    tsNs: b.readBigUInt64LE(off + F.ts_ns),
    saddr: ipv4Text(b, off + F.saddr),
    daddr: ipv4Text(b, off + F.daddr),
    sport: b.readUInt16BE(off + F.sport),
    dport: b.readUInt16BE(off + F.dport),
    proto: b.readUInt8(off + F.proto),
    verdict: VERDICTS[b.readUInt8(off + F.verdict)] ?? 'UNKNOWN',
    dropReason,
    dropReasonName: dropReasonName(dropReason),
    isReply: (flags & C.EV_F_IS_REPLY) !== 0,
    newFlow: (flags & C.EV_F_NEW_FLOW) !== 0,
    related: (flags & C.EV_F_RELATED) !== 0,
    fromProxy: (flags & C.EV_F_FROM_PROXY) !== 0,
    obsPoint: OBS[b.readUInt8(off + F.obs_point)] ?? 'unknown',
    srcIdentity: b.readUInt32LE(off + F.src_identity),
    dstIdentity: b.readUInt32LE(off + F.dst_identity),
    srcEp: b.readUInt32LE(off + F.src_ep),
    dstEp: b.readUInt32LE(off + F.dst_ep),
    ifindex: b.readUInt32LE(off + F.ifindex),
    proxyPort: b.readUInt16LE(off + F.proxy_port),
    egress: side(b.readUInt8(off + F.egress_result), b.readUInt8(off + F.egress_match), b.readUInt32LE(off + F.egress_cookie)),
    ingress: side(b.readUInt8(off + F.ingress_result), b.readUInt8(off + F.ingress_match), b.readUInt32LE(off + F.ingress_cookie)),
  };
}
