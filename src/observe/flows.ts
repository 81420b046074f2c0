// SPDX-License-Identifier: Apache-2.0
/**
 * @module observe/flows
 *
 * Flow records as `membrane observe --json` prints them (DESIGN §3.4), built from the
 * datapath's verdict events, and the bounded store the agent keeps them in.
 *
 * A side (egress of the source, ingress of the destination) is reported as in `policy trace`:
 * `enforced`, `verdict`, `allowedBy` / `deniedBy` (the policies behind the deciding map entry's
 * cookie), and `reason` (`default deny` when no entry matched).
 */
import type { SideVerdict, VerdictEvent } from '../datapath/index.ts';
import { isSyntheticOrigin, ORIGIN_ALLOW_LOCALHOST, ORIGIN_NO_DEFAULT_DENY, protoName } from '../policy/types.ts';

export interface FlowPeer {
  namespace: string | null;
  name: string | null;
  identity: number;
  ip: string;
  port: number;
}

export interface FlowSide {
  enforced: boolean;
  verdict: 'allowed' | 'denied' | 'audit';
  allowedBy: string[];
  deniedBy: string[];
  reason: string;
}

export interface FlowRecord {
  time: string;
  verdict: 'FORWARDED' | 'DROPPED' | 'AUDIT' | 'REDIRECTED';
  dropReason: string | null;
  source: FlowPeer;
  destination: FlowPeer;
  protocol: string;
  egress: FlowSide;
  ingress: FlowSide;
  l7: Record<string, unknown> | null;
}

/** What the flow builder needs from the agent. */
export interface FlowContext {
  /** Endpoint `namespace/name` owning an address, if any. */
  endpointOfIp(ip: string): string | undefined;
  /** Policies behind a policy-map cookie. */
  originsOfCookie(cookie: number): string[];
  /** Wall-clock ms of a bpf_ktime_get_ns() timestamp. */
  wallClockOf(tsNs: bigint): number;
}

/** Readable text of an entry the engine added by itself (not a policy). */
function syntheticText(origin: string): string {
  if (origin === ORIGIN_ALLOW_LOCALHOST) return 'allow-localhost (the node may reach its local endpoints)';
  if (origin === ORIGIN_NO_DEFAULT_DENY) return 'no default deny (enableDefaultDeny: false)';
  return origin;
}

function peer(ctx: FlowContext, ip: string, port: number, identity: number): FlowPeer {
  const ref = ctx.endpointOfIp(ip);
  const [namespace, name] = ref ? ref.split('/') : [null, null];
  return { namespace: namespace ?? null, name: name ?? null, identity, ip, port };
}

function side(ctx: FlowContext, s: SideVerdict, what: string): FlowSide {
  const origins = s.cookie ? ctx.originsOfCookie(s.cookie) : [];
  const policies = origins.filter((o) => !isSyntheticOrigin(o));
  const why = policies.length ? policies.join(', ') : origins.length ? origins.map(syntheticText).join(', ') : 'policy';
  switch (s.outcome) {
    case 'allowed':
      return { enforced: true, verdict: 'allowed', allowedBy: policies, deniedBy: [], reason: `allowed by ${why}` };
    case 'redirected':
      return { enforced: true, verdict: 'allowed', allowedBy: policies, deniedBy: [], reason: `redirected to the proxy by ${why}` };
    case 'denied':
      return { enforced: true, verdict: s.audited ? 'audit' : 'denied', allowedBy: [], deniedBy: policies, reason: `denied by ${why}${s.audited ? ' (audit mode: passed)' : ''}` };
    case 'default-denied':
      return { enforced: true, verdict: s.audited ? 'audit' : 'denied', allowedBy: [], deniedBy: [], reason: `default deny${s.audited ? ' (audit mode: passed)' : ''}` };
    case 'not-enforced':
      return { enforced: false, verdict: 'allowed', allowedBy: [], deniedBy: [], reason: `no policy selects the ${what} endpoint for this direction` };
    default:
      return { enforced: false, verdict: 'allowed', allowedBy: [], deniedBy: [], reason: `the ${what} is not a local endpoint` };
  }
}

/** Builds the flow record of one verdict event. */
export function flowOf(ctx: FlowContext, ev: VerdictEvent): FlowRecord {
  const verdict = ev.verdict === 'UNKNOWN' ? 'FORWARDED' : ev.verdict;
  return {
    time: new Date(ctx.wallClockOf(ev.tsNs)).toISOString(),
    verdict,
    dropReason: ev.dropReasonName,
    source: peer(ctx, ev.saddr, ev.sport, ev.srcIdentity),
    destination: peer(ctx, ev.daddr, ev.dport, ev.dstIdentity),
    protocol: protoName(ev.proto),
    egress: side(ctx, ev.egress, 'source'),
    ingress: side(ctx, ev.ingress, 'destination'),
    l7: null,
  };
}

/** Filters of `membrane observe`. */
export interface FlowFilter {
  verdict?: string;
  /** `namespace/name`, an IP, or `host`/`world` by identity name */
  from?: string;
  to?: string;
}

function peerMatches(p: FlowPeer, ref: string): boolean {
  if (ref === p.ip) return true;
  if (p.namespace && `${p.namespace}/${p.name}` === ref) return true;
  if (!ref.includes('/') && p.namespace === 'default' && p.name === ref) return true;
  if (ref === 'host') return p.identity === 1;
  if (ref === 'world') return p.identity === 2;
  return false;
}

export function flowMatches(f: FlowRecord, filter: FlowFilter): boolean {
  if (filter.verdict && f.verdict !== filter.verdict.toUpperCase()) return false;
  if (filter.from && !peerMatches(f.source, filter.from)) return false;
  if (filter.to && !peerMatches(f.destination, filter.to)) return false;
  return true;
}

/** Whether a reported record looks like a FlowRecord (the proxy built it; this guards the store). */
export function isFlowRecord(x: unknown): x is FlowRecord {
  const f = x as Record<string, unknown> | null;
  return (
    !!f &&
    typeof f === 'object' &&
    typeof f.time === 'string' &&
    typeof f.verdict === 'string' &&
    typeof f.source === 'object' &&
    f.source !== null &&
    typeof f.destination === 'object' &&
    f.destination !== null &&
    typeof f.egress === 'object' &&
    typeof f.ingress === 'object'
  );
}

/** What a batch of reported records held: lines taken (they start with `{`) and other non-blank lines. */
export interface RawIngest {
  accepted: number;
  rejected: number;
}

const NEWLINE = 0x0a;
const OPEN_BRACE = 0x7b;

/**
 * Some of the proxy's records as they arrived: one chunk of a request body (or one line that
 * spanned chunks, copied) and where its taken lines lie: line `i` is `bytes[bounds[2i]..bounds[2i+1])`,
 * without its newline. Only ring slots refer to a segment, so it is freed once the last of its
 * records is overwritten or parsed.
 */
class RawSegment {
  constructor(
    readonly bytes: Buffer,
    readonly bounds: Int32Array,
  ) {}

  /** Line `i` as a flow record, or null when it is not one. */
  record(i: number): FlowRecord | null {
    try {
      const f: unknown = JSON.parse(this.bytes.toString('utf8', this.bounds[2 * i], this.bounds[2 * i + 1]));
      return isFlowRecord(f) ? f : null;
    } catch {
      return null;
    }
  }
}

/**
 * Classifies `b[s..e)` as the text of a line would be: 1 when it starts with `{` (a record),
 * 0 when blank (only white space as `String#trim` sees it), -1 otherwise.
 */
function lineKind(b: Buffer, s: number, e: number): 1 | 0 | -1 {
  if (s < e && b[s] === OPEN_BRACE) return 1;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) continue;
    if (c < 0x80) return -1;
    // non-ASCII: Unicode white space (NBSP, U+2028, a BOM, …) is blank too; rare, so decode
    return b.toString('utf8', s, e).trim() ? -1 : 0;
  }
  return 0;
}

/**
 * The most recent flows, bounded. Drops of the same flow within a few seconds (retransmitted
 * SYNs) fold into the first record, so one decision yields one record (DESIGN §3.4).
 * L7 records reported by the proxy are kept as the JSON text they arrived in and parsed only
 * when read (the proxy reports one per request: parsing each on arrival cost the agent more
 * CPU than anything else under load); a line that is not a flow record is skipped when read.
 * That text stays in the request body's own chunks (a slot holds the chunk's segment and a line
 * number): a string or object per record cost the agent page faults, copies and GC under load.
 */
export class FlowStore {
  readonly capacity: number;
  readonly #ring: Array<FlowRecord | RawSegment | null> = [];
  /** For a slot holding a RawSegment, the line of it that is the record. */
  readonly #lineOf: Int32Array;
  #start = 0;
  /** Bounds of the taken lines of the chunk being split (grows). */
  #bounds = new Int32Array(1024);
  readonly #recentDrops = new Map<string, { record: FlowRecord; at: number }>();
  readonly #listeners = new Set<(f: FlowRecord) => void>();

  constructor(capacity = 20000) {
    this.capacity = capacity;
    this.#lineOf = new Int32Array(capacity);
  }

  add(f: FlowRecord, now = Date.now()): void {
    // L7 records are one per request, never folded (a connection carries many requests)
    if ((f.verdict === 'DROPPED' || f.verdict === 'AUDIT') && !f.l7) {
      const key = `${f.verdict}|${f.source.ip}|${f.source.port}|${f.destination.ip}|${f.destination.port}|${f.protocol}`;
      const prev = this.#recentDrops.get(key);
      if (prev && now - prev.at < 5000) {
        prev.at = now; // a retransmission of a flow already reported
        return;
      }
      this.#recentDrops.set(key, { record: f, at: now });
      if (this.#recentDrops.size > 4096) {
        for (const [k, v] of this.#recentDrops) if (now - v.at >= 5000) this.#recentDrops.delete(k);
      }
    }
    this.#push(f, 0);
    for (const l of this.#listeners) l(f);
  }

  /**
   * Adds L7 records as the proxy sent them: the chunks of one body, together JSON text with one
   * record per line (parsed when read). Lines may span chunks; the body's end ends its last line.
   * Lines starting with `{` are taken, blank ones skipped, others rejected (counted only).
   * The chunks are kept, not copied (only a line spanning two is): do not reuse their memory.
   * @param chunks the body, in order
   * @returns how many lines were taken and rejected
   */
  addRaw(chunks: readonly Buffer[]): RawIngest {
    const counts: RawIngest = { accepted: 0, rejected: 0 };
    let carry: Buffer[] = []; // the start of a line begun in earlier chunks
    let carried = 0;
    for (const chunk of chunks) {
      let s = 0; // where the current line starts
      if (carry.length) {
        const nl = chunk.indexOf(NEWLINE);
        if (nl < 0) {
          carry.push(chunk);
          carried += chunk.length;
          continue;
        }
        carry.push(chunk.subarray(0, nl));
        this.#addSpanning(carry, carried + nl, counts);
        carry = [];
        carried = 0;
        s = nl + 1;
      }
      let n = 0;
      for (let nl = chunk.indexOf(NEWLINE, s); nl >= 0; s = nl + 1, nl = chunk.indexOf(NEWLINE, s)) {
        const kind = lineKind(chunk, s, nl);
        if (kind < 0) counts.rejected++;
        if (kind <= 0) continue;
        if (2 * n + 2 > this.#bounds.length) {
          const bigger = new Int32Array(2 * this.#bounds.length);
          bigger.set(this.#bounds);
          this.#bounds = bigger;
        }
        this.#bounds[2 * n] = s;
        this.#bounds[2 * n + 1] = nl;
        n++;
      }
      if (n) {
        counts.accepted += n;
        this.#addSegment(new RawSegment(chunk, this.#bounds.slice(0, 2 * n)));
      }
      if (s < chunk.length) {
        carry.push(chunk.subarray(s));
        carried += chunk.length - s;
      }
    }
    if (carry.length) this.#addSpanning(carry, carried, counts);
    return counts;
  }

  /** Adds the line made of `pieces` (`length` bytes in all), copied into a segment of its own. */
  #addSpanning(pieces: readonly Buffer[], length: number, counts: RawIngest): void {
    const line = Buffer.allocUnsafeSlow(length); // its own memory: a pooled slab would be kept with it
    let at = 0;
    for (const p of pieces) {
      line.set(p, at);
      at += p.length;
    }
    const kind = lineKind(line, 0, length);
    if (kind < 0) counts.rejected++;
    if (kind <= 0) return;
    counts.accepted++;
    this.#addSegment(new RawSegment(line, Int32Array.of(0, length)));
  }

  #addSegment(seg: RawSegment): void {
    const n = seg.bounds.length / 2;
    for (let i = 0; i < n; i++) {
      this.#push(seg, i);
      if (this.#listeners.size === 0) continue;
      const f = seg.record(i);
      if (f) for (const l of this.#listeners) l(f);
    }
  }

  #push(f: FlowRecord | RawSegment, line: number): void {
    let at: number;
    if (this.#ring.length < this.capacity) {
      at = this.#ring.length;
      this.#ring.push(f);
    } else {
      at = this.#start;
      this.#ring[at] = f;
      this.#start = (this.#start + 1) % this.capacity;
    }
    this.#lineOf[at] = line;
  }

  /** The last `n` flows matching a filter, oldest first. */
  last(n: number, filter: FlowFilter = {}): FlowRecord[] {
    const out: FlowRecord[] = [];
    const len = this.#ring.length;
    for (let i = len - 1; i >= 0 && out.length < n; i--) {
      const at = (this.#start + i) % len;
      const stored = this.#ring[at]!;
      let f: FlowRecord | null;
      if (stored instanceof RawSegment) this.#ring[at] = f = stored.record(this.#lineOf[at]!); // parsed once
      else f = stored;
      if (f && flowMatches(f, filter)) out.push(f);
    }
    return out.reverse();
  }

  get size(): number {
    return this.#ring.length;
  }

  /** Calls `fn` for every new flow until the returned function is called. */
  subscribe(fn: (f: FlowRecord) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
}
