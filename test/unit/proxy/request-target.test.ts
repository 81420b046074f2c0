// SPDX-License-Identifier: Apache-2.0
// How the HTTP proxy compares paths (proxy/http/request-target.ts): the target as sent, after
// rejecting every shape that could mean something else to the server behind the proxy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkRequestTarget } from '../../../proxy/http/request-target.ts';

const ok = [
  '/',
  '/public',
  '/public/',
  '/public/a.b',
  '/public/...',
  '/public/.hidden',
  '/public/a%2eb',
  '/public/%2e%2e%2e',
  '/public/a?x=1',
  '/public/a?next=/../admin', // the query is matched as sent: servers do not resolve it as a path
  '/public/a?x=%2f',
  '/%7Euser',
  '/grpc.Service/Method',
];

const bad: Array<[string, RegExp]> = [
  ['', /origin-form/],
  ['*', /origin-form/],
  ['http://host/public', /origin-form/],
  ['host:80', /origin-form/],
  ['/public/../admin', /dot-segment/],
  ['/public/..', /dot-segment/],
  ['/public/.', /dot-segment/],
  ['/./public', /dot-segment/],
  ['/public/%2e%2e/admin', /percent-encoded dot-segment/],
  ['/public/%2E%2E/admin', /percent-encoded dot-segment/],
  ['/public/%2e./admin', /percent-encoded dot-segment/],
  ['/public/.%2E/admin', /percent-encoded dot-segment/],
  ['/public/%2e/admin', /percent-encoded dot-segment/],
  ['/public%2fadmin', /encoded slash/],
  ['/public%2Fadmin', /encoded slash/],
  ['/public//admin', /empty path segment/],
  ['//admin', /empty path segment/],
  ['/public\\..\\admin', /backslash/],
  ['/public%5c..%5cadmin', /encoded backslash/],
  ['/public%00', /NUL/],
  ['/public/a?x=%00', /NUL/],
  ['/public/a#frag', /fragment/],
  ['/public/%zz', /malformed percent/],
  ['/public/%2', /malformed percent/],
  ['/public/a b', /control character, space/],
  ['/public/\u00e9', /non-ASCII/],
  ['/public/a\u0000', /control character/],
];

test('origin-form targets without ambiguity pass unchanged', () => {
  for (const t of ok) assert.deepEqual(checkRequestTarget(t), { ok: true }, t);
});

test('escapes and ambiguous shapes are rejected with a reason', () => {
  for (const [t, reason] of bad) {
    const r = checkRequestTarget(t);
    assert.equal(r.ok, false, JSON.stringify(t));
    if (!r.ok) assert.match(r.reason, reason, JSON.stringify(t));
  }
});
