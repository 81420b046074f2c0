// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/icmp
 *
 * ICMP type names accepted in `icmps[].fields[].type` (reference §1.11, Cilium
 * `pkg/policy/api/icmp.go`). Names are case-sensitive CamelCase, per family.
 */

/** IPv4 ICMP type names → type numbers. */
export const ICMPV4_TYPES: Readonly<Record<string, number>> = Object.freeze({
  EchoReply: 0,
  DestinationUnreachable: 3,
  Redirect: 5,
  Echo: 8,
  EchoRequest: 8,
  RouterAdvertisement: 9,
  RouterSelection: 10,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
  Photuris: 40,
  ExtendedEchoRequest: 42,
  ExtendedEchoReply: 43,
});

/** IPv6 ICMP type names → type numbers. */
export const ICMPV6_TYPES: Readonly<Record<string, number>> = Object.freeze({
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  MulticastListenerQuery: 130,
  MulticastListenerReport: 131,
  MulticastListenerDone: 132,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
  RedirectMessage: 137,
  RouterRenumbering: 138,
  ICMPNodeInformationQuery: 139,
  ICMPNodeInformationResponse: 140,
  InverseNeighborDiscoverySolicitation: 141,
  InverseNeighborDiscoveryAdvertisement: 142,
  HomeAgentAddressDiscoveryRequest: 144,
  HomeAgentAddressDiscoveryReply: 145,
  MobilePrefixSolicitation: 146,
  MobilePrefixAdvertisement: 147,
  DuplicateAddressRequestCodeSuffix: 157,
  DuplicateAddressConfirmationCodeSuffix: 158,
  ExtendedEchoRequest: 160,
  ExtendedEchoReply: 161,
});

/**
 * Resolves an ICMP type given as a number or a name of the family.
 *
 * @param family `IPv4` or `IPv6`
 * @param type a number 0..255, a decimal string, or a CamelCase name
 * @returns the type number, or an error message
 * @example
 * icmpTypeNumber('IPv6', 'EchoRequest'); // 128
 */
export function icmpTypeNumber(family: 'IPv4' | 'IPv6', type: number | string): number | string {
  if (typeof type === 'number' || /^[0-9]+$/.test(type)) {
    const n = Number(type);
    if (!Number.isInteger(n) || n < 0 || n > 255) return `ICMP type ${JSON.stringify(type)} out of range 0..255`;
    return n;
  }
  const table = family === 'IPv4' ? ICMPV4_TYPES : ICMPV6_TYPES;
  const n = Object.prototype.hasOwnProperty.call(table, type) ? table[type] : undefined;
  if (n === undefined) {
    return `unknown ${family} ICMP type name ${JSON.stringify(type)} (names are case-sensitive: ${Object.keys(table).join(', ')})`;
  }
  return n;
}
