// SPDX-License-Identifier: Apache-2.0
// bpf/lib/drop_reasons.h and src/datapath/drop-reasons.ts must agree (STYLE B6): same names, codes and Hubble names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DROP_REASONS, DropReason, dropReason, dropReasonName } from '../../../src/datapath/drop-reasons.ts';

const header = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bpf/lib/drop_reasons.h');

function parseHeader(): Array<{ name: string; code: number; hubble: string }> {
  const out: Array<{ name: string; code: number; hubble: string }> = [];
  for (const line of readFileSync(header, 'utf8').split('\n')) {
    if (!line.startsWith('#define DROP_')) continue;
    const m = /^#define\s+DROP_(\w+)\s+(-\d+)\s+\/\*\s*([A-Z0-9_]+)/.exec(line);
    assert.ok(m, `cannot parse: ${line} (keep "#define DROP_X -N\t/* HUBBLE_NAME ... */")`);
    out.push({ name: m[1], code: Number(m[2]), hubble: m[3] });
  }
  return out;
}

test('the TS table mirrors drop_reasons.h exactly', () => {
  const c = parseHeader().sort((a, b) => b.code - a.code);
  assert.ok(c.length > 0);
  assert.deepEqual(DROP_REASONS.map((r) => ({ ...r })), c);
});

test('codes are negative and unique', () => {
  const codes = Object.values(DropReason);
  assert.equal(new Set(codes).size, codes.length);
  for (const c of codes) assert.ok(c < 0);
});

test('Cilium numbers for the policy and proxy reasons', () => {
  assert.equal(DropReason.POLICY, -133);
  assert.equal(DropReason.POLICY_DENY, -181);
  assert.equal(DropReason.PROXY_LOOKUP_FAILED, -178);
  assert.equal(DropReason.PROXY_SET_FAILED, -179);
  assert.equal(dropReasonName(-133), 'POLICY_DENIED');
  assert.equal(dropReasonName(181), 'POLICY_DENY');
  assert.equal(dropReasonName(0), null);
  assert.equal(dropReasonName(-999), 'UNKNOWN_999');
  assert.equal(dropReason(-178)?.hubble, 'SOCKET_LOOKUP_FAILED');
});
