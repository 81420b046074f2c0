// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/cidr
 *
 * CIDR parsing for policy validation (reference §1.3, §1.12, §2.10): `toCIDR`, `fromCIDR`,
 * `*CIDRSet.cidr`/`except` and NetworkPolicy `ipBlock`. Pure and self-contained (src/api may
 * not import src/labels).
 *
 * Decisions:
 * 1. An address without `/n` is a host prefix (`/32`, `/128`).
 * 2. Host bits are accepted and cleared, as Go's `net.ParseCIDR` (Cilium) does; the caller
 *    reports a warning so the canonical form is visible.
 * 3. IPv4 octets are decimal without leading zeros (Go ≥ 1.17 rejects `010.0.0.1`); prefix
 *    lengths are decimal without leading zeros.
 * 4. Canonical text: IPv4 `a.b.c.d/n`; IPv6 RFC 5952 (lower case, longest zero run as `::`),
 *    `:` kept (the label matcher parses it). IPv4-mapped IPv6 stays IPv6.
 */

/** A parsed prefix with host bits cleared. */
export interface CidrPrefix {
  family: 4 | 6;
  /** Network address bytes (4 or 16). */
  bytes: number[];
  len: number;
  /** True when the text had host bits set (they are cleared in `bytes`). */
  hadHostBits: boolean;
}

function parseV4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function parseV6(s: string): number[] | null {
  let text = s;
  let tail: number[] = [];
  if (text.includes('.')) {
    const lastColon = text.lastIndexOf(':');
    if (lastColon < 0) return null;
    const v4 = parseV4(text.slice(lastColon + 1));
    if (!v4) return null;
    tail = v4;
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1); // drop the separator, keep a `::`
  }
  const groupsWanted = 8 - tail.length / 2;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string): number[] | null => {
    if (h === '') return [];
    const gs = h.split(':');
    const out: number[] = [];
    for (const g of gs) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  if (!head || !rest) return null;
  let groups: number[];
  if (halves.length === 2) {
    const missing = groupsWanted - head.length - rest.length;
    if (missing < 1) return null;
    groups = [...head, ...new Array<number>(missing).fill(0), ...rest];
  } else {
    if (head.length !== groupsWanted) return null;
    groups = head;
  }
  const bytes: number[] = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  return [...bytes, ...tail];
}

/**
 * Parses a prefix or a bare address (a host prefix).
 *
 * @param text e.g. `10.0.0.0/8`, `192.0.2.1`, `2001:db8::/32`
 * @returns the prefix with host bits cleared, or an error message
 * @example
 * parseCidr('10.1.2.3/8'); // { family: 4, bytes: [10,0,0,0], len: 8, hadHostBits: true }
 */
export function parseCidr(text: string): CidrPrefix | string {
  const slash = text.indexOf('/');
  const ipText = slash >= 0 ? text.slice(0, slash) : text;
  const family: 4 | 6 = ipText.includes(':') ? 6 : 4;
  const bytes = family === 4 ? parseV4(ipText) : parseV6(ipText);
  if (!bytes) return `invalid CIDR ${JSON.stringify(text)}: not an IPv4 or IPv6 address`;
  const bits = family === 4 ? 32 : 128;
  let len = bits;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > bits) {
      return `invalid CIDR ${JSON.stringify(text)}: prefix length must be 0..${bits}`;
    }
    len = Number(lenText);
  }
  let hadHostBits = false;
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if ((bytes[i] & ~mask & 0xff) !== 0) hadHostBits = true;
    bytes[i] &= mask;
  }
  return { family, bytes, len, hadHostBits };
}

/**
 * Canonical text of a prefix (decision 4 above).
 *
 * @param p a parsed prefix
 * @returns e.g. `10.0.0.0/8`, `2001:db8::/32`
 */
export function cidrText(p: CidrPrefix): string {
  if (p.family === 4) return `${p.bytes.join('.')}/${p.len}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((p.bytes[i] << 8) | p.bytes[i + 1]);
  // RFC 5952: compress the longest run (≥ 2) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  const addr =
    bestStart < 0 ? hex.join(':') : `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
  return `${addr}/${p.len}`;
}

/**
 * Whether `inner` lies inside `outer` (same family, longer-or-equal prefix, same network bits).
 *
 * @param outer the enclosing prefix
 * @param inner the candidate
 * @returns true when contained
 */
export function cidrContains(outer: CidrPrefix, inner: CidrPrefix): boolean {
  if (outer.family !== inner.family || inner.len < outer.len) return false;
  for (let i = 0; i < outer.bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, outer.len - i * 8));
    const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if ((inner.bytes[i] & mask) !== outer.bytes[i]) return false;
  }
  return true;
}

/** True for `0.0.0.0/0` and `::/0`. */
export function isWorldPrefix(p: CidrPrefix): boolean {
  return p.len === 0;
}
