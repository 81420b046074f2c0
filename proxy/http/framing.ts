// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/http/framing
 *
 * Request-smuggling checks on a parsed HTTP/1.1 request head, on top of node:http's own parser
 * (llhttp, strict mode), which already answers 400 and closes for: Content-Length together with
 * Transfer-Encoding, duplicate or invalid Content-Length, bad chunk sizes or chunk line ends,
 * obs-fold (a header line starting with whitespace), whitespace before a header colon, bare LF
 * line ends, and a Transfer-Encoding whose last coding is not `chunked`.
 *
 * Rejected here as well (400, connection closed), so that the proxy and the server behind it
 * cannot frame the request differently (numbered; each branch repeats its number):
 * 1. an HTTP version other than 1.0 and 1.1;
 * 2. more than one Content-Length, or one that is not plain decimal digits (defence in depth);
 * 3. Transfer-Encoding together with Content-Length (defence in depth);
 * 4. more than one Transfer-Encoding header, or a value other than exactly `chunked`
 *    (`gzip, chunked` is legal HTTP but is refused: no transfer codings are passed on);
 * 5. Transfer-Encoding on an HTTP/1.0 request;
 * 6. more than one Host header, or a Host value with whitespace, `/`, `\`, `@` or a control byte.
 */

/** The outcome of {@link checkFraming}. */
export type FramingCheck = { ok: true; body: 'none' | 'length' | 'chunked' } | { ok: false; reason: string };

/**
 * Checks the framing headers of a request head (numbered as in the module comment).
 * @param httpVersion `1.1` or `1.0` (node:http `req.httpVersion`)
 * @param rawHeaders name, value, name, value, … as received (node:http `req.rawHeaders`)
 * @returns the body framing, or the reason for a 400
 */
export function checkFraming(httpVersion: string, rawHeaders: readonly string[]): FramingCheck {
  // 1.
  if (httpVersion !== '1.1' && httpVersion !== '1.0') return { ok: false, reason: `unsupported HTTP version ${httpVersion}` };
  const cl: string[] = [];
  const te: string[] = [];
  const host: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'content-length') cl.push(rawHeaders[i + 1]!);
    else if (name === 'transfer-encoding') te.push(rawHeaders[i + 1]!);
    else if (name === 'host') host.push(rawHeaders[i + 1]!);
  }
  // 2.
  if (cl.length > 1) return { ok: false, reason: 'more than one Content-Length' };
  if (cl.length === 1 && !/^[0-9]{1,15}$/.test(cl[0]!.trim())) return { ok: false, reason: 'invalid Content-Length' };
  // 3.
  if (cl.length && te.length) return { ok: false, reason: 'Transfer-Encoding together with Content-Length' };
  // 4.
  if (te.length > 1) return { ok: false, reason: 'more than one Transfer-Encoding' };
  if (te.length === 1 && te[0]!.trim().toLowerCase() !== 'chunked') return { ok: false, reason: `unsupported Transfer-Encoding '${te[0]}'` };
  // 5.
  if (te.length && httpVersion === '1.0') return { ok: false, reason: 'Transfer-Encoding in an HTTP/1.0 request' };
  // 6.
  if (host.length > 1) return { ok: false, reason: 'more than one Host' };
  // eslint-disable-next-line no-control-regex
  if (host.length === 1 && /[\s/\\@\x00-\x1f\x7f]/.test(host[0]!)) return { ok: false, reason: 'invalid Host' };
  if (te.length) return { ok: true, body: 'chunked' };
  if (cl.length && Number(cl[0]!.trim()) > 0) return { ok: true, body: 'length' };
  return { ok: true, body: 'none' };
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) a proxy never forwards, plus the ones it sets itself. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);

/**
 * The end-to-end headers of a message as a flat `[name, value, …]` list in wire order (what
 * undici's `dispatch` and node:http's `writeHead` take): drops hop-by-hop headers and every
 * header the Connection header names. One pass when there is no Connection header.
 * @param rawHeaders name, value, … as received
 */
export function endToEndHeadersFlat(rawHeaders: readonly string[]): string[] {
  let named: Set<string> | null = null;
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const n = rawHeaders[i]!.toLowerCase();
    if (n === 'connection') {
      named ??= new Set();
      for (const t of rawHeaders[i + 1]!.split(',')) named.add(t.trim().toLowerCase());
    }
    if (!HOP_BY_HOP.has(n)) out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  if (named === null) return out;
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) if (!named.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  return kept;
}

/**
 * The end-to-end headers of a message as name/value pairs in wire order: drops hop-by-hop
 * headers and every header the Connection header names.
 * @param rawHeaders name, value, … as received
 */
export function endToEndHeaders(rawHeaders: readonly string[]): Array<[string, string]> {
  const named = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') for (const t of rawHeaders[i + 1]!.split(',')) named.add(t.trim().toLowerCase());
  }
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const n = rawHeaders[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(n) && !named.has(n)) out.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  }
  return out;
}
