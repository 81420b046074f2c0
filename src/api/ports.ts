// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/ports
 *
 * Port and protocol rules shared by CNP/CCNP `toPorts` and NetworkPolicy `ports`
 * (reference §1.8, §2.8).
 */

/** Protocols accepted in `toPorts[].ports[].protocol` (after upper-casing; empty ⇒ ANY). */
export const PORT_PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ANY'] as const;

/**
 * Extended IP protocols of Cilium's `--enable-extended-ip-protocols` (reference §1.8). Membrane
 * rejects them (DESIGN §2: an unsupported field is a validation error, never ignored).
 */
export const EXTENDED_PROTOCOLS: readonly string[] = ['VRRP', 'IGMP', 'GRE', 'IPIP', 'IPV6', 'ESP', 'AH'];

/** Maximum ports per PortRule and ICMP fields per ICMPRule (reference §1.12). */
export const MAX_PORTS = 40;

/**
 * Checks an IANA service name as used for named ports (RFC 6335 §5.1, reference §1.8):
 * 1–15 characters, letters, digits and `-`, at least one letter, no leading or trailing `-`
 * and no `--`. Case-insensitive (callers lowercase it).
 *
 * @param s the candidate name
 * @returns true when `s` is a valid service name
 * @example
 * isIanaSvcName('http-alt'); // true
 * isIanaSvcName('8080');     // false (no letter)
 */
export function isIanaSvcName(s: string): boolean {
  return (
    s.length >= 1 &&
    s.length <= 15 &&
    /^[A-Za-z0-9-]+$/.test(s) &&
    /[A-Za-z]/.test(s) &&
    !s.startsWith('-') &&
    !s.endsWith('-') &&
    !s.includes('--')
  );
}

/**
 * Parses a port string: decimal 0..65535 (no leading zeros) or an IANA service name.
 *
 * @param s the `port` value (`''` means 0, all ports)
 * @returns `{port}` / `{port: 0, name}` (lowercased), or an error message
 */
export function parsePortString(s: string): { port: number; name?: string } | string {
  if (s === '') return { port: 0 };
  if (/^[0-9]+$/.test(s)) {
    if (s.length > 1 && s.startsWith('0')) return `invalid port ${JSON.stringify(s)}: leading zeros are not allowed`;
    const n = Number(s);
    if (n > 65535) return `invalid port ${JSON.stringify(s)}: must be 0..65535`;
    return { port: n };
  }
  if (!isIanaSvcName(s)) {
    return `invalid port ${JSON.stringify(s)}: must be a number 0..65535 or an IANA service name (at most 15 letters, digits and "-", with at least one letter)`;
  }
  return { port: 0, name: s.toLowerCase() };
}
