// SPDX-License-Identifier: Apache-2.0
/**
 * @module labels/cidr
 *
 * IPv4 and IPv6 prefixes as bigints, for `cidr:` label containment (reference §2.10) and for
 * the userspace ipcache. Pure.
 */

export interface Prefix {
  family: 4 | 6;
  /** Network address as an unsigned integer (host bits cleared). */
  addr: bigint;
  len: number;
}

function parseIPv4(s: string): bigint | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseIPv6(s: string): bigint | null {
  let text = s;
  let tail4: bigint | null = null;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.') && lastColon >= 0) {
    tail4 = parseIPv4(text.slice(lastColon + 1));
    if (tail4 === null) return null;
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (tail4 !== null) v = (v & ~0xffffffffn) | tail4;
  return v;
}

/**
 * Parses an IP address.
 * @returns family and value, or null if it is not an address
 */
export function parseIp(s: string): { family: 4 | 6; addr: bigint } | null {
  if (s.includes(':')) {
    const v = parseIPv6(s);
    return v === null ? null : { family: 6, addr: v };
  }
  const v = parseIPv4(s);
  return v === null ? null : { family: 4, addr: v };
}

/**
 * Parses `a.b.c.d/n`, an IPv6 prefix, or a bare address (a host prefix). Host bits are cleared.
 * Accepts the label form of IPv6 where ':' is written as '-'.
 */
export function parsePrefix(s: string): Prefix | null {
  let text = s;
  if (!text.includes(':') && !text.includes('.') && text.includes('-')) text = text.replace(/-/g, ':');
  const slash = text.indexOf('/');
  const ipText = slash >= 0 ? text.slice(0, slash) : text;
  const ip = parseIp(ipText);
  if (!ip) return null;
  const bits = ip.family === 4 ? 32 : 128;
  let len = bits;
  if (slash >= 0) {
    const l = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(l)) return null;
    len = Number(l);
    if (len > bits) return null;
  }
  return { family: ip.family, addr: ip.addr & mask(ip.family, len), len };
}

function mask(family: 4 | 6, len: number): bigint {
  const bits = family === 4 ? 32 : 128;
  if (len === 0) return 0n;
  return ((1n << BigInt(len)) - 1n) << BigInt(bits - len);
}

/** True when `inner` lies inside `outer` (same family, longer-or-equal prefix). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return outer.family === inner.family && inner.len >= outer.len && (inner.addr & mask(outer.family, outer.len)) === outer.addr;
}

/** True when the address lies inside the prefix. */
export function prefixContainsIp(p: Prefix, ip: { family: 4 | 6; addr: bigint }): boolean {
  return p.family === ip.family && (ip.addr & mask(p.family, p.len)) === p.addr;
}

/** Renders an address. IPv6 in compressed lowercase form. */
export function formatIp(family: 4 | 6, addr: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((addr >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Canonical `addr/len` text of a prefix. */
export function formatPrefix(p: Prefix): string {
  return `${formatIp(p.family, p.addr)}/${p.len}`;
}
