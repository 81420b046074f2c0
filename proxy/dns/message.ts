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
 */
import dnsPacket from 'dns-packet';

/** What dns-packet decodes beyond its published types. */
type Decoded = dnsPacket.DecodedPacket & { opcode?: string; rcode?: string };
type Rr = { name: string; type: string; ttl?: number; data?: unknown };
import { normalizeDnsName } from '../../src/l7/dns.ts';

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
  opcode: string;
  /** Header flags without QR (dns-packet `flags`). */
  flags: number;
  questions: dnsPacket.Question[];
}

/** Parses a query; null when it is not a well-formed DNS query. */
export function parseQuery(msg: Buffer): DnsQuery | null {
  if (msg.length < DNS_HEADER_BYTES) return null;
  let d: Decoded;
  try {
    d = dnsPacket.decode(msg) as Decoded;
  } catch {
    return null;
  }
  if (d.type !== 'query') return null;
  const questions = d.questions ?? [];
  return { id: d.id ?? 0, qname: questions[0]?.name ?? '', qtypes: questions.map((q) => q.type), opcode: d.opcode ?? 'QUERY', flags: d.flags ?? 0, questions };
}

/** The message id of a buffer that has at least a header (else -1). */
export function messageId(msg: Buffer): number {
  return msg.length >= 2 ? msg.readUInt16BE(0) : -1;
}

/** Rewrites the message id in place. */
export function setId(msg: Buffer, id: number): void {
  msg.writeUInt16BE(id & 0xffff, 0);
}

/** An error answer to `q` with `rcode` (RA set, RD/CD copied, questions echoed). */
export function errorResponse(q: DnsQuery, rcode: RcodeName): Buffer {
  const flags = (q.flags & (dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) | dnsPacket.RECURSION_AVAILABLE | RCODE[rcode];
  return dnsPacket.encode({ type: 'response', id: q.id, flags, opcode: q.opcode, questions: q.questions } as dnsPacket.Packet);
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
  let d: Decoded;
  try {
    d = dnsPacket.decode(msg) as Decoded;
  } catch {
    return null;
  }
  if (d.type !== 'response') return null;
  const qnameRaw = d.questions?.[0]?.name ?? '';
  const out: AnswerInfo = { id: d.id ?? 0, rcode: d.rcode ?? 'NOERROR', ips: [], ttl: 0, cnames: [], qname: normalizeDnsName(qnameRaw) };
  if (out.rcode !== 'NOERROR' || !qnameRaw) return out;
  // names reachable from the query name through CNAMEs (bounded: a loop ends when nothing new)
  const records = ((d.answers ?? []) as Rr[]).filter((a) => a.type === 'A' || a.type === 'AAAA' || a.type === 'CNAME');
  const chain = new Set([out.qname]);
  let minTtl = Infinity;
  for (let grew = true, guard = 0; grew && guard < 16; guard++) {
    grew = false;
    for (const r of records) {
      if (r.type !== 'CNAME' || !chain.has(normalizeDnsName(r.name))) continue;
      const target = normalizeDnsName(String(r.data));
      if (!chain.has(target)) {
        chain.add(target);
        out.cnames.push(target);
        minTtl = Math.min(minTtl, r.ttl ?? 0);
        grew = true;
      }
    }
  }
  const ips = new Set<string>();
  for (const r of records) {
    if (r.type === 'CNAME' || !chain.has(normalizeDnsName(r.name))) continue;
    ips.add(String(r.data));
    minTtl = Math.min(minTtl, r.ttl ?? 0);
  }
  out.ips = [...ips];
  out.ttl = out.ips.length && Number.isFinite(minTtl) ? minTtl : 0;
  return out;
}
