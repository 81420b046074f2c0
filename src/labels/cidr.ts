// SPDX-License-Identifier: Apache-2.0
/**
 * @module labels/cidr
 *
 * Prefixes as bigints, for `cidr:` label containment (reference §2.10) and the userspace
 * ipcache, where containment is tested for every identity. Parsing and canonical text come
 * from src/api/cidr.ts (one parser for policies and labels). Pure.
 */
import { cidrText, parseCidr, type CidrPrefix } from '../api/cidr.ts';

export interface Prefix {
  family: 4 | 6;
  /** Network address as an unsigned integer (host bits cleared). */
  addr: bigint;
  len: number;
}

function toBigint(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function toBytes(family: 4 | 6, addr: bigint): number[] {
  const n = family === 4 ? 4 : 16;
  const out = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(addr & 0xffn);
    addr >>= 8n;
  }
  return out;
}

function fromCidr(p: CidrPrefix): Prefix {
  return { family: p.family, addr: toBigint(p.bytes), len: p.len };
}

/**
 * Parses `a.b.c.d/n`, an IPv6 prefix, or a bare address (a host prefix); host bits are cleared.
 * Also accepts the label form of IPv6, where ':' is written as '-'.
 * @returns the prefix, or null when the text is not one
 */
export function parsePrefix(s: string): Prefix | null {
  const v4 = parseHostV4(s);
  if (v4 !== null) return { family: 4, addr: BigInt(v4), len: 32 };
  const text = !s.includes(':') && !s.includes('.') && s.includes('-') ? s.replace(/-/g, ':') : s;
  const p = parseCidr(text);
  return typeof p === 'string' ? null : fromCidr(p);
}

const V4_OCTET = /^(0|[1-9][0-9]{0,2})$/;

/**
 * The common case of parsePrefix without the general parser: a canonical dotted IPv4 address
 * (learned DNS answers, endpoint addresses). @returns the address as a number, or null
 */
function parseHostV4(s: string): number | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const part of parts) {
    if (!V4_OCTET.test(part)) return null;
    const v = Number(part);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

/** Parses an address (no prefix length). */
export function parseIp(s: string): { family: 4 | 6; addr: bigint } | null {
  if (s.includes('/')) return null;
  const p = parsePrefix(s);
  return p ? { family: p.family, addr: p.addr } : null;
}

function mask(family: 4 | 6, len: number): bigint {
  const bits = family === 4 ? 32 : 128;
  return len === 0 ? 0n : ((1n << BigInt(len)) - 1n) << BigInt(bits - len);
}

/** True when `inner` lies inside `outer` (same family, longer-or-equal prefix). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return outer.family === inner.family && inner.len >= outer.len && (inner.addr & mask(outer.family, outer.len)) === outer.addr;
}

/** True when the address lies inside the prefix. */
export function prefixContainsIp(p: Prefix, ip: { family: 4 | 6; addr: bigint }): boolean {
  return p.family === ip.family && (ip.addr & mask(p.family, p.len)) === p.addr;
}

/** Canonical `addr/len` text (src/api/cidr.ts decision 4). */
export function formatPrefix(p: Prefix): string {
  return cidrText({ family: p.family, bytes: toBytes(p.family, p.addr), len: p.len, hadHostBits: false });
}

/** Canonical text of an address. */
export function formatIp(family: 4 | 6, addr: bigint): string {
  const t = formatPrefix({ family, addr, len: family === 4 ? 32 : 128 });
  return t.slice(0, t.indexOf('/'));
}
