// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/addr
 * IP address text ⇄ network-order bytes, for map keys and events.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { MapEncodeError } from './errors.ts';

/** Network-order bytes of an IPv4 address (4 bytes). @throws MapEncodeError */
export function ipv4Bytes(ip: string): Buffer {
  const b = Buffer.alloc(4);
  if (!writeIpv4(ip, b, 0)) throw new MapEncodeError(`not an IPv4 address: ${JSON.stringify(ip)}`, { step: 'encode' });
  return b;
}

/**
 * Writes the 4 network-order bytes of a dotted-quad IPv4 address at `off` (the forms `isIPv4`
 * accepts: four decimal octets 0–255, no leading zeros), without allocating.
 * @returns false (nothing meaningful written) when `ip` is not such an address
 */
export function writeIpv4(ip: string, buf: Buffer, off: number): boolean {
  let octet = 0;
  let digits = 0;
  let part = 0;
  for (let i = 0; i <= ip.length; i++) {
    const c = i < ip.length ? ip.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      buf[off + part++] = octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return false; // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return false;
    } else return false;
  }
  return part === 4;
}

/** Network-order bytes of an IPv6 address (16 bytes), including `::` and a trailing dotted IPv4. @throws MapEncodeError */
export function ipv6Bytes(ip: string): Buffer {
  if (!isIPv6(ip)) throw new MapEncodeError(`not an IPv6 address: ${JSON.stringify(ip)}`, { step: 'encode' });
  let text = ip.replace(/%.*$/, '');
  const tail: number[] = [];
  const m = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (m) {
    const v4 = ipv4Bytes(m[1]);
    tail.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    text = text.slice(0, -m[1].length);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const hex = (s: string) => s.split(':').filter((x) => x !== '').map((h) => parseInt(h, 16));
  const dbl = text.indexOf('::');
  let groups: number[];
  if (dbl >= 0) {
    const hi = hex(text.slice(0, dbl));
    const lo = hex(text.slice(dbl + 2));
    groups = [...hi, ...new Array<number>(8 - hi.length - lo.length - tail.length).fill(0), ...lo, ...tail];
  } else {
    groups = [...hex(text), ...tail];
  }
  if (groups.length !== 8) throw new MapEncodeError(`cannot parse IPv6 address ${ip}`, { step: 'encode' });
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** Dotted text of 4 network-order bytes at `off`. */
export function ipv4Text(buf: Buffer, off = 0): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/** Text of 16 network-order bytes at `off` (no zero compression beyond the longest run). */
export function ipv6Text(buf: Buffer, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(off + i * 2));
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Parses `a.b.c.d/n`, `x::/n` or a bare address (full-length prefix). @throws MapEncodeError */
export function parseCidr(cidr: string): { addr: string; prefixLen: number; family: 4 | 6 } {
  const [addr, len] = cidr.split('/');
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : 0;
  if (!family) throw new MapEncodeError(`not an IP prefix: ${JSON.stringify(cidr)}`, { step: 'encode' });
  const max = family === 4 ? 32 : 128;
  const prefixLen = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > max) {
    throw new MapEncodeError(`bad prefix length in ${JSON.stringify(cidr)}`, { step: 'encode' });
  }
  return { addr, prefixLen, family };
}
