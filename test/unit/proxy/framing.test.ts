// SPDX-License-Identifier: Apache-2.0
// Request-smuggling checks on a parsed head (proxy/http/framing.ts), on top of llhttp's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkFraming, endToEndHeaders, endToEndHeadersFlat } from '../../../proxy/http/framing.ts';

test('plain, length and chunked framing pass', () => {
  assert.deepEqual(checkFraming('1.1', ['Host', 'a']), { ok: true, body: 'none' });
  assert.deepEqual(checkFraming('1.1', ['Host', 'a', 'Content-Length', '0']), { ok: true, body: 'none' });
  assert.deepEqual(checkFraming('1.1', ['Host', 'a', 'Content-Length', '12']), { ok: true, body: 'length' });
  assert.deepEqual(checkFraming('1.1', ['Host', 'a', 'Transfer-Encoding', 'Chunked']), { ok: true, body: 'chunked' });
  assert.deepEqual(checkFraming('1.0', []), { ok: true, body: 'none' });
});

test('smuggling shapes are refused', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['2.0', [], /version/],
    ['1.1', ['Content-Length', '1', 'content-length', '1'], /more than one Content-Length/],
    ['1.1', ['Content-Length', '1', 'Content-Length', '2'], /more than one Content-Length/],
    ['1.1', ['Content-Length', '+1'], /invalid Content-Length/],
    ['1.1', ['Content-Length', '1, 1'], /invalid Content-Length/],
    ['1.1', ['Content-Length', '0x10'], /invalid Content-Length/],
    ['1.1', ['Content-Length', '3', 'Transfer-Encoding', 'chunked'], /together/],
    ['1.1', ['Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'], /more than one Transfer-Encoding/],
    ['1.1', ['Transfer-Encoding', 'gzip, chunked'], /unsupported Transfer-Encoding/],
    ['1.1', ['Transfer-Encoding', 'identity'], /unsupported Transfer-Encoding/],
    ['1.0', ['Transfer-Encoding', 'chunked'], /HTTP\/1\.0/],
    ['1.1', ['Host', 'a', 'Host', 'b'], /more than one Host/],
    ['1.1', ['Host', 'a@b'], /invalid Host/],
    ['1.1', ['Host', 'a b'], /invalid Host/],
  ];
  for (const [v, h, re] of cases) {
    const r = checkFraming(v, h);
    assert.equal(r.ok, false, `${v} ${JSON.stringify(h)}`);
    if (!r.ok) assert.match(r.reason, re);
  }
});

test('hop-by-hop headers and those named by Connection are not forwarded', () => {
  const raw = ['Host', 'a', 'X-Secret', 's', 'Connection', 'keep-alive, X-Secret', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'Expect', '100-continue', 'X-A', '1', 'x-a', '2'];
  assert.deepEqual(endToEndHeaders(raw), [
    ['Host', 'a'],
    ['X-A', '1'],
    ['x-a', '2'],
  ]);
  assert.deepEqual(endToEndHeadersFlat(raw), ['Host', 'a', 'X-A', '1', 'x-a', '2'], 'a header named by a later Connection header is dropped too');
  assert.deepEqual(endToEndHeadersFlat(['Host', 'a', 'TE', 'trailers', 'X-B', '']), ['Host', 'a', 'X-B', '']);
});
