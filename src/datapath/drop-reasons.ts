// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/drop-reasons
 * Mirror of bpf/lib/drop_reasons.h: the negative `DROP_*` codes the programs return, with Cilium's numbers and
 * the Hubble `DropReason` names (reference §6.3) that `membrane observe` prints. Must match
 * bpf/lib/drop_reasons.h; test/unit/datapath/drop-reasons.test.ts parses the header and compares.
 */

/** One drop reason. */
export interface DropReasonInfo {
  /** C name without the `DROP_` prefix. */
  readonly name: string;
  /** The (negative) code, as in the header and in `verdict_event.drop_reason`. */
  readonly code: number;
  /** Hubble DropReason name (flow.proto), e.g. `POLICY_DENIED`. */
  readonly hubble: string;
}

/** `DROP_*` codes (negative), C names. */
export const DropReason = {
  INVALID_SIP: -132,
  POLICY: -133,
  INVALID: -134,
  CT_INVALID_HDR: -135,
  CT_UNKNOWN_PROTO: -137,
  UNKNOWN_L3: -139,
  UNKNOWN_L4: -142,
  CT_CREATE_FAILED: -155,
  FRAG_NOSUPPORT: -157,
  PROXYMAP_CREATE_FAILED: -161,
  NO_CONFIG: -165,
  PROXY_LOOKUP_FAILED: -178,
  PROXY_SET_FAILED: -179,
  PROXY_UNKNOWN_PROTO: -180,
  POLICY_DENY: -181,
} as const;

/** Hubble names by C name. */
const HUBBLE: Record<keyof typeof DropReason, string> = {
  INVALID_SIP: 'INVALID_SOURCE_IP',
  POLICY: 'POLICY_DENIED',
  INVALID: 'INVALID_PACKET_DROPPED',
  CT_INVALID_HDR: 'CT_TRUNCATED_OR_INVALID_HEADER',
  CT_UNKNOWN_PROTO: 'CT_UNKNOWN_L4_PROTOCOL',
  UNKNOWN_L3: 'UNSUPPORTED_L3_PROTOCOL',
  UNKNOWN_L4: 'UNKNOWN_L4_PROTOCOL',
  CT_CREATE_FAILED: 'CT_MAP_INSERTION_FAILED',
  FRAG_NOSUPPORT: 'IP_FRAGMENTATION_NOT_SUPPORTED',
  PROXYMAP_CREATE_FAILED: 'FAILED_TO_INSERT_INTO_PROXYMAP',
  NO_CONFIG: 'NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION',
  PROXY_LOOKUP_FAILED: 'SOCKET_LOOKUP_FAILED',
  PROXY_SET_FAILED: 'SOCKET_ASSIGN_FAILED',
  PROXY_UNKNOWN_PROTO: 'PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL',
  POLICY_DENY: 'POLICY_DENY',
};

/** Every drop reason, ordered by code magnitude. */
export const DROP_REASONS: readonly DropReasonInfo[] = (Object.keys(DropReason) as (keyof typeof DropReason)[])
  .map((name) => ({ name, code: DropReason[name], hubble: HUBBLE[name] }))
  .sort((a, b) => b.code - a.code);

const byCode = new Map<number, DropReasonInfo>(DROP_REASONS.map((r) => [r.code, r]));

/**
 * Looks a drop code up.
 * @param code negative (as the datapath reports it) or positive (as Hubble numbers it)
 * @returns the reason, or undefined for 0 / unknown codes
 * @example dropReason(-133)?.hubble === 'POLICY_DENIED'
 */
export function dropReason(code: number): DropReasonInfo | undefined {
  return byCode.get(-Math.abs(code));
}

/**
 * The Hubble name of a drop code, `null` for 0, `UNKNOWN_<n>` for a code this build does not know.
 * @param code negative or positive drop code
 */
export function dropReasonName(code: number): string | null {
  if (code === 0) return null;
  return dropReason(code)?.hubble ?? `UNKNOWN_${Math.abs(code)}`;
}
