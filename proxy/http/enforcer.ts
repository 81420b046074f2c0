// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/http/enforcer
 *
 * The HTTP/1.1 side of the shared parser interface (STYLE B7 item 7, Cilium proxylib
 * r2d2parser.go `OnData`): verdicts MORE | PASS | DROP | ERROR, never a throw on input.
 *
 * - `enforceHead()` decides one parsed request head; Http1Proxy calls it for every request
 *   node:http parses, so the live proxy and this interface cannot disagree:
 *   1. target and framing checks (request-target.ts, framing.ts) → ERROR, reply 400;
 *   2. the Decider → PASS (allowed or audit) or DROP, reply 403 "Access denied\r\n".
 * - `HttpEnforcer.onData()` does the same from raw bytes (a strict head parser: CRLF line ends,
 *   token method, origin-form target, `HTTP/1.x`, `name: value` headers, no obs-fold):
 *   a head not complete yet → MORE; larger than the limit → ERROR (431); malformed → ERROR (400).
 *   On PASS, `bytes` is the length of the head (the body follows as framed by `body`).
 */
import type { ConnContext, Decider, RequestDecision, Verdict } from '../core/types.ts';
import { checkFraming, type FramingCheck } from './framing.ts';
import { checkRequestTarget } from './request-target.ts';

export const DENIED_BODY = 'Access denied\r\n';

/** A parsed request head. */
export interface RequestHead {
  method: string;
  target: string;
  /** `1.1` or `1.0` */
  httpVersion: string;
  /** name, value, name, value, … in wire order */
  rawHeaders: string[];
}

export type HeadOutcome =
  | { verdict: 'PASS'; decision: RequestDecision; body: Extract<FramingCheck, { ok: true }>['body'] }
  | { verdict: 'DROP'; status: 403; decision: RequestDecision }
  | { verdict: 'ERROR'; status: 400 | 431 | 500; reason: string };

function hostOf(rawHeaders: readonly string[]): string | undefined {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'host') return rawHeaders[i + 1];
  return undefined;
}

/**
 * Decides one request head (numbered as in the module comment).
 * @returns PASS, DROP (answer 403) or ERROR (answer `status` and close)
 */
export function enforceHead(decider: Decider, ctx: ConnContext, head: RequestHead): HeadOutcome {
  // 1.
  const t = checkRequestTarget(head.target);
  if (!t.ok) return { verdict: 'ERROR', status: 400, reason: t.reason };
  const f = checkFraming(head.httpVersion, head.rawHeaders);
  if (!f.ok) return { verdict: 'ERROR', status: 400, reason: f.reason };
  // 2.
  const headers: Array<[string, string]> = [];
  for (let i = 0; i + 1 < head.rawHeaders.length; i += 2) headers.push([head.rawHeaders[i]!, head.rawHeaders[i + 1]!]);
  let decision: RequestDecision;
  try {
    decision = decider.decide(ctx, { type: 'http', http: { method: head.method, path: head.target, host: hostOf(head.rawHeaders), headers } });
  } catch (e) {
    return { verdict: 'ERROR', status: 500, reason: `policy evaluation failed: ${(e as Error).message}` };
  }
  return decision.forward ? { verdict: 'PASS', decision, body: f.body } : { verdict: 'DROP', status: 403, decision };
}

/** The reply for a DROP or ERROR outcome, as bytes on the wire (ERROR replies close). */
export function replyFor(o: Exclude<HeadOutcome, { verdict: 'PASS' }>): Buffer {
  if (o.verdict === 'DROP') return Buffer.from(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${DENIED_BODY.length}\r\n\r\n${DENIED_BODY}`, 'latin1');
  const text = o.status === 431 ? 'Request Header Fields Too Large' : o.status === 500 ? 'Internal Server Error' : 'Bad Request';
  return Buffer.from(`HTTP/1.1 ${o.status} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`, 'latin1');
}

export interface OnDataResult {
  verdict: Verdict;
  /** Bytes of input this verdict covers (the head, for PASS and DROP). */
  bytes: number;
  /** What to write to the client (DROP and ERROR). */
  inject?: Buffer;
  outcome?: HeadOutcome;
}

const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/(1\.[01])$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*?)[ \t]*$/;

/** One connection's request heads, from raw bytes. */
export class HttpEnforcer {
  readonly #decider: Decider;
  readonly #ctx: ConnContext;
  readonly #maxHeaderBytes: number;

  constructor(decider: Decider, ctx: ConnContext, maxHeaderBytes: number) {
    this.#decider = decider;
    this.#ctx = ctx;
    this.#maxHeaderBytes = maxHeaderBytes;
  }

  /**
   * Looks at the bytes of the next request (the head must start at `data[0]`).
   * @returns MORE (need more bytes), PASS / DROP (with `bytes` = head length) or ERROR
   */
  onData(data: Buffer): OnDataResult {
    try {
      return this.#onData(data);
    } catch (e) {
      const outcome: HeadOutcome = { verdict: 'ERROR', status: 500, reason: (e as Error).message };
      return { verdict: 'ERROR', bytes: data.length, inject: replyFor(outcome), outcome };
    }
  }

  #onData(data: Buffer): OnDataResult {
    const end = data.indexOf('\r\n\r\n');
    const error = (status: 400 | 431, reason: string): OnDataResult => {
      const outcome: HeadOutcome = { verdict: 'ERROR', status, reason };
      return { verdict: 'ERROR', bytes: data.length, inject: replyFor(outcome), outcome };
    };
    if (end < 0 || end + 4 > this.#maxHeaderBytes) {
      if (data.length > this.#maxHeaderBytes) return error(431, 'request head too large');
      // a bare LF or a non-text byte can be refused before the head is complete
      // eslint-disable-next-line no-control-regex
      if (/(^|[^\r])\n|[\x00\x7f-\xff]/.test(data.toString('latin1'))) return error(400, 'malformed request head');
      return { verdict: 'MORE', bytes: 0 };
    }
    const lines = data.subarray(0, end).toString('latin1').split('\r\n');
    const rl = REQUEST_LINE.exec(lines[0]!);
    if (!rl) return error(400, 'malformed request line');
    const rawHeaders: string[] = [];
    for (const line of lines.slice(1)) {
      if (line[0] === ' ' || line[0] === '\t') return error(400, 'obs-fold (header line starting with whitespace)');
      const m = HEADER_LINE.exec(line);
      // eslint-disable-next-line no-control-regex
      if (!m || /[\x00-\x08\x0a-\x1f\x7f]/.test(m[2]!)) return error(400, 'malformed header line');
      rawHeaders.push(m[1]!, m[2]!);
    }
    const outcome = enforceHead(this.#decider, this.#ctx, { method: rl[1]!, target: rl[2]!, httpVersion: rl[3]!, rawHeaders });
    if (outcome.verdict === 'PASS') return { verdict: 'PASS', bytes: end + 4, outcome };
    if (outcome.verdict === 'DROP') return { verdict: 'DROP', bytes: end + 4, inject: replyFor(outcome), outcome };
    return { verdict: 'ERROR', bytes: data.length, inject: replyFor(outcome), outcome };
  }
}
