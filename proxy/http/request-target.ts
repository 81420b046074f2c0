// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/http/request-target
 *
 * How the HTTP proxy compares paths (README "L7 proxy"): a rule's `path` regex is matched
 * against the request target exactly as the client sent it (path and query, no decoding, no
 * normalisation), AFTER this check has rejected (400, connection closed) every target whose
 * meaning could differ between the proxy and the server behind it. So `/public/../admin`,
 * `/public/%2e%2e/admin`, `/public%2fadmin` or `/public//admin` can never match `/public/.*`
 * and then be read as something else upstream.
 *
 * Rejected, in this order (each branch below repeats its number):
 * 1. anything but origin-form (`/path[?query]`): absolute-form `http://h/p`, authority-form,
 *    asterisk-form `*`, an empty target;
 * 2. a fragment (`#`), a backslash (raw or `%5c`), NUL (raw or `%00`), any control character,
 *    space or non-ASCII byte (node:http's parser already refuses most of these);
 * 3. malformed percent-encoding (`%`, `%2`, `%zz`);
 * 4. in the path part (before `?`): an encoded slash `%2f`;
 * 5. in the path part: an empty segment (`//`, which many servers collapse);
 * 6. in the path part: a dot-segment `.` or `..`, also when its dots are percent-encoded
 *    (`%2e`, `%2E`, mixed like `%2e.`); a segment that merely contains dots (`a.b`, `...`)
 *    is fine.
 * The query is matched as sent and only checked by 2 and 3.
 */

/** The outcome of {@link checkRequestTarget}. */
export type TargetCheck = { ok: true } | { ok: false; reason: string };

const HEX = /^[0-9a-fA-F]{2}$/;
const OK: TargetCheck = Object.freeze({ ok: true });

/**
 * Checks a request target (numbered as in the module comment).
 * @param target the request-target of the request line (`req.url` of node:http)
 * @returns ok, or the reason for a 400
 * @example
 * checkRequestTarget('/public/a?x=1'); // { ok: true }
 * checkRequestTarget('/public/../admin'); // { ok: false, reason: 'dot-segment in path' }
 */
export function checkRequestTarget(target: string): TargetCheck {
  // 1.
  if (target.length === 0 || target[0] !== '/') return { ok: false, reason: 'request target is not origin-form (must start with /)' };
  // 2. and 3.
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return { ok: false, reason: 'control character, space or non-ASCII byte in request target' };
    if (c === 0x23 /* # */) return { ok: false, reason: 'fragment in request target' };
    if (c === 0x5c /* \ */) return { ok: false, reason: 'backslash in request target' };
    if (c === 0x25 /* % */) {
      const hex = target.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return { ok: false, reason: 'malformed percent-encoding in request target' };
      const v = parseInt(hex, 16);
      if (v === 0) return { ok: false, reason: 'encoded NUL in request target' };
      if (v === 0x5c) return { ok: false, reason: 'encoded backslash in request target' };
    }
  }
  const q = target.indexOf('?');
  const p = q < 0 ? target : target.slice(0, q);
  // 4. to 6. need a `%`, a `//` or a `.` in the path: most paths have none
  if (p.indexOf('%') < 0 && p.indexOf('//') < 0 && p.indexOf('.') < 0) return OK;
  // 4.
  if (/%2f/i.test(p)) return { ok: false, reason: 'encoded slash (%2f) in path' };
  const segments = p.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    // 5. (a trailing empty segment is the ordinary trailing slash: `/a/`, `/`)
    if (seg === '' && i < segments.length - 1) return { ok: false, reason: 'empty path segment (//)' };
    // 6.
    const decoded = seg.replace(/%2e/gi, '.');
    if (decoded === '.' || decoded === '..') return { ok: false, reason: seg === decoded ? 'dot-segment in path' : 'percent-encoded dot-segment in path' };
  }
  return OK;
}
