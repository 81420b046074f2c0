// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/dns/message
 *
 * The few things the DNS proxy needs from a DNS message (RFC 1035), on dns-packet:
 * - a query's id, first question (the only one policy looks at, reference §5.2) and types;
 * - an error answer (REFUSED, NXDOMAIN, SERVFAIL) that echoes the query's id, opcode, RD/CD
 *   bits and questions;
 * - from an upstream answer: rcode, and the A/AAAA addresses reached from the query name through
 *   CNAME chains, with the minimum TTL of the records on the way (reference §5.3 step 7).
 *   Records not on the chain (another name in the answer section) are ignored: the upstream
 *   cannot make the proxy learn IPs for names nobody asked about.
 * Messages are forwarded as received; only the 16-bit id is rewritten (setId).
 * Nothing here throws on bad input: parse functions return null.
 *
 * Parsing reads the header and walks the sections itself, decoding only what is used (names
 * through dns-packet's name codec, which handles compression pointers and rejects loops and
 * forward pointers); a full dnsPacket.decode made objects for every record of every message and
 * was a tenth of the proxy's time per query.
 */
import dnsPacket from 'dns-packet';
import { normalizeDnsName } from '../../src/l7/dns.ts';

interface NameCodec {
  decode: ((buf: Buffer, offset?: number) => string) & { bytes: number };
}
const names = (dnsPacket as unknown as { name: NameCodec }).name;
const AAAA = (dnsPacket as unknown as { aaaa: { decode(buf: Buffer, offset: number): string } }).aaaa;

/** Type names as dns-packet writes them (the rest: `UNKNOWN_<n>`). */
const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR',
  39: 'DNAME', 41: 'OPT', 43: 'DS', 46: 'RRSIG', 47: 'NSEC', 48: 'DNSKEY', 50: 'NSEC3', 52: 'TLSA', 64: 'SVCB', 65: 'HTTPS', 99: 'SPF',
  250: 'TSIG', 251: 'IXFR', 252: 'AXFR', 255: 'ANY', 256: 'URI', 257: 'CAA',
};
const typeName = (t: number): string => TYPE_NAMES[t] ?? `UNKNOWN_${t}`;
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE'];
const rcodeName = (r: number): string => RCODE_NAMES[r] ?? `RCODE_${r}`;
const TYPE_A = 1;
const TYPE_CNAME = 5;
const TYPE_AAAA = 28;
const QR = 0x8000;

/** Decodes the name at `off`: [name, offset after it], or null when malformed. */
function readName(buf: Buffer, off: number): [string, number] | null {
  try {
    const n = names.decode(buf, off);
    return [n, off + names.decode.bytes];
  } catch {
    return null;
  }
}

/** The offset after the name at `off` without decoding it (-1 when malformed). */
function skipName(buf: Buffer, off: number): number {
  for (let guard = 0; off < buf.length && guard < 128; guard++) {
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if (len & 0xc0) return -1;
    off += len + 1;
  }
  return -1;
}

/** DNS header size: id, flags, four counts. */
export const DNS_HEADER_BYTES = 12;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type RcodeName = keyof typeof RCODE;

export interface DnsQuery {
  id: number;
  /** First question's name as sent (empty when there is no question). */
  qname: string;
  /** Question types, e.g. ['A']. */
  qtypes: string[];
  /** Header flags without the id: QR clear, opcode, RD, CD … */
  flags: number;
  /** Number of questions and their bytes as sent (echoed by error answers). */
  qdcount: number;
  question: Buffer;
}

/** Parses a query; null when it is not a well-formed DNS query. */
export function parseQuery(msg: Buffer): DnsQuery | null {
  if (msg.length < DNS_HEADER_BYTES) return null;
  const flags = msg.readUInt16BE(2);
  if (flags & QR) return null;
  const qdcount = msg.readUInt16BE(4);
  let off = DNS_HEADER_BYTES;
  let qname = '';
  const qtypes: string[] = [];
  for (let i = 0; i < qdcount; i++) {
    const n = readName(msg, off);
    if (!n || n[1] + 4 > msg.length) return null;
    if (i === 0) qname = n[0];
    qtypes.push(typeName(msg.readUInt16BE(n[1])));
    off = n[1] + 4;
  }
  return { id: msg.readUInt16BE(0), qname, qtypes, flags, qdcount, question: msg.subarray(DNS_HEADER_BYTES, off) };
}

/** The message id of a buffer that has at least a header (else -1). */
export function messageId(msg: Buffer): number {
  return msg.length >= 2 ? msg.readUInt16BE(0) : -1;
}

/** Rewrites the message id in place. */
export function setId(msg: Buffer, id: number): void {
  msg.writeUInt16BE(id & 0xffff, 0);
}

/** An error answer to `q` with `rcode` (QR and RA set, opcode, RD and CD copied, questions echoed as sent). */
export function errorResponse(q: DnsQuery, rcode: RcodeName): Buffer {
  const out = Buffer.allocUnsafe(DNS_HEADER_BYTES + q.question.length);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(QR | (q.flags & (0x7800 | dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) | dnsPacket.RECURSION_AVAILABLE | RCODE[rcode], 2);
  out.writeUInt16BE(q.qdcount, 4);
  out.fill(0, 6, DNS_HEADER_BYTES);
  q.question.copy(out, DNS_HEADER_BYTES);
  return out;
}

/**
 * An error answer built from a query's raw header when it could not be parsed: FORMERR with
 * the id, no questions. Null when even the header is missing.
 */
export function formatError(msg: Buffer): Buffer | null {
  if (msg.length < DNS_HEADER_BYTES || msg[2]! & 0x80) return null; // no header, or not a query
  const out = Buffer.alloc(DNS_HEADER_BYTES);
  msg.copy(out, 0, 0, 2);
  out[2] = 0x80 | (msg[2]! & 0x79); // QR, opcode and RD copied
  out[3] = 0x80 | RCODE.FORMERR; // RA
  return out;
}

export interface AnswerInfo {
  id: number;
  rcode: string;
  /** Addresses for the query name (through CNAMEs), deduplicated. */
  ips: string[];
  /** Minimum TTL of the chain's records (0 when there are no addresses). */
  ttl: number;
  /** CNAME targets followed (for the flow log). */
  cnames: string[];
  /** The response's first question name, normalised (to check it answers the query). */
  qname: string;
}

/** Parses an upstream answer; null when it is not a well-formed DNS response. */
export function parseAnswer(msg: Buffer): AnswerInfo | null {
  if (msg.length < DNS_HEADER_BYTES) return null;
  const flags = msg.readUInt16BE(2);
  if (!(flags & QR)) return null;
  const qdcount = msg.readUInt16BE(4);
  const ancount = msg.readUInt16BE(6);
  let off = DNS_HEADER_BYTES;
  let qnameRaw = '';
  for (let i = 0; i < qdcount; i++) {
    if (i === 0) {
      const n = readName(msg, off);
      if (!n) return null;
      qnameRaw = n[0];
      off = n[1] + 4;
    } else {
      const next = skipName(msg, off);
      if (next < 0) return null;
      off = next + 4;
    }
    if (off > msg.length) return null;
  }
  const out: AnswerInfo = { id: msg.readUInt16BE(0), rcode: rcodeName(flags & 0xf), ips: [], ttl: 0, cnames: [], qname: qnameRaw ? normalizeDnsName(qnameRaw) : '' };
  if (out.rcode !== 'NOERROR' || !qnameRaw) return out;
  // the A, AAAA and CNAME records of the answer section (owner normalised)
  const records: Array<{ owner: string; type: number; ttl: number; data: string }> = [];
  for (let i = 0; i < ancount; i++) {
    const end = skipName(msg, off);
    if (end < 0 || end + 10 > msg.length) return null;
    const type = msg.readUInt16BE(end);
    const rdlen = msg.readUInt16BE(end + 8);
    const rdata = end + 10;
    if (rdata + rdlen > msg.length) return null;
    if (type === TYPE_A || type === TYPE_AAAA || type === TYPE_CNAME) {
      // most owners are a pointer to the question's name (offset 12): no need to decode it again
      const owner = msg[off] === 0xc0 && msg[off + 1] === DNS_HEADER_BYTES && qdcount > 0 ? [qnameRaw] : readName(msg, off);
      if (!owner) return null;
      let data: string;
      if (type === TYPE_A) {
        if (rdlen !== 4) return null;
        data = `${msg[rdata]}.${msg[rdata + 1]}.${msg[rdata + 2]}.${msg[rdata + 3]}`;
      } else if (type === TYPE_AAAA) {
        if (rdlen !== 16) return null;
        data = AAAA.decode(msg, rdata - 2);
      } else {
        const target = readName(msg, rdata);
        if (!target || target[1] !== rdata + rdlen) return null;
        data = target[0];
      }
      records.push({ owner: owner[0] === qnameRaw ? out.qname : normalizeDnsName(owner[0]!), type, ttl: msg.readUInt32BE(end + 4), data });
    }
    off = rdata + rdlen;
  }
  // names reachable from the query name through CNAMEs (bounded: a loop ends when nothing new)
  const chain = [out.qname];
  let minTtl = Infinity;
  for (let grew = true, guard = 0; grew && guard < 16; guard++) {
    grew = false;
    for (const r of records) {
      if (r.type !== TYPE_CNAME || !chain.includes(r.owner)) continue;
      const target = normalizeDnsName(r.data);
      if (!chain.includes(target)) {
        chain.push(target);
        out.cnames.push(target);
        minTtl = Math.min(minTtl, r.ttl);
        grew = true;
      }
    }
  }
  const seen = records.length > 16 ? new Set<string>() : null; // large answers: no quadratic dedup
  for (const r of records) {
    if (r.type === TYPE_CNAME || !chain.includes(r.owner) || (seen ? seen.has(r.data) : out.ips.includes(r.data))) continue;
    seen?.add(r.data);
    out.ips.push(r.data);
    minTtl = Math.min(minTtl, r.ttl);
  }
  out.ttl = out.ips.length && Number.isFinite(minTtl) ? minTtl : 0;
  return out;
}
