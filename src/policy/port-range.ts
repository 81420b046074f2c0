// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/port-range
 *
 * Splits an inclusive port range into the minimal set of prefix-masked (port, prefixLen)
 * pairs the LPM policy map can hold (Cilium pkg/policy/portrange.go `keysForRange`).
 */

/**
 * @param start first port (inclusive)
 * @param end last port (inclusive); ≤ start means the single port `start`
 * @returns pairs of (port, prefix length in bits of 16)
 * @example rangeToPrefixes(80, 83) // [{port: 80, prefixLen: 14}]
 */
export function rangeToPrefixes(start: number, end: number): Array<{ port: number; prefixLen: number }> {
  if (end <= start) return [{ port: start, prefixLen: start === 0 && end === 0 ? 16 : 16 }];
  if (start === 0 && end >= 65535) return [{ port: 0, prefixLen: 0 }];
  const out: Array<{ port: number; prefixLen: number }> = [];
  let cur = start;
  while (cur <= end) {
    // largest aligned block starting at cur that fits in [cur, end]
    let size = 1;
    while (size < 65536 && cur % (size * 2) === 0 && cur + size * 2 - 1 <= end) size *= 2;
    out.push({ port: cur, prefixLen: 16 - Math.log2(size) });
    cur += size;
  }
  return out;
}
