// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rangeToPrefixes } from '../../../src/policy/port-range.ts';

function expand(pairs: Array<{ port: number; prefixLen: number }>): number[] {
  const out: number[] = [];
  for (const { port, prefixLen } of pairs) for (let p = port; p < port + 2 ** (16 - prefixLen); p++) out.push(p);
  return out;
}

test('§2.8 endPort: inclusive range becomes minimal LPM prefixes', () => {
  assert.deepEqual(rangeToPrefixes(80, 83), [{ port: 80, prefixLen: 14 }]);
  assert.deepEqual(rangeToPrefixes(80, 80), [{ port: 80, prefixLen: 16 }]);
  assert.deepEqual(rangeToPrefixes(80, 79), [{ port: 80, prefixLen: 16 }], 'endPort ≤ port is a single port');
  assert.deepEqual(rangeToPrefixes(0, 65535), [{ port: 0, prefixLen: 0 }]);
});

test('§2.8 ranges cover exactly [start, end]', () => {
  for (const [a, b] of [
    [80, 444],
    [8000, 8100],
    [1, 65535],
    [1024, 2047],
    [33, 34],
    [65535, 65535],
  ] as const) {
    const ports = expand(rangeToPrefixes(a, b));
    assert.equal(ports.length, b - a + 1, `${a}-${b}`);
    assert.equal(ports[0], a);
    assert.equal(ports.at(-1), b);
    assert.deepEqual([...ports].sort((x, y) => x - y), ports);
  }
});
