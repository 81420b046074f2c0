// SPDX-License-Identifier: Apache-2.0
/**
 * MapState lookup and precedence (reference §2.5), independent of rule parsing: entries are
 * built from hand-made SelectorPolicies through EndpointMapBuilder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MapState } from '../../../src/policy/map-state.ts';
import { PRECEDENCE_ALLOW, PRECEDENCE_DENY, PRECEDENCE_REDIRECT, type PolicyEntry, type PolicyKey } from '../../../src/policy/types.ts';

const allow: PolicyEntry = { deny: false, redirect: null, precedence: PRECEDENCE_ALLOW, derivedFrom: ['A'] };
const deny: PolicyEntry = { deny: true, redirect: null, precedence: PRECEDENCE_DENY, derivedFrom: ['D'] };
const http: PolicyEntry = { deny: false, redirect: 'http', precedence: PRECEDENCE_REDIRECT, derivedFrom: ['H'] };

function key(identity: number, proto: number, port: number, portPrefixLen: number): PolicyKey {
  return { identity, direction: 'ingress', proto, port, portPrefixLen };
}

function state(entries: Array<[PolicyKey, PolicyEntry]>): MapState {
  const s = new MapState();
  const by = new Map<number, Array<{ key: PolicyKey; entry: PolicyEntry }>>();
  for (const [k, e] of entries) {
    const list = by.get(k.identity) ?? [];
    list.push({ key: k, entry: e });
    by.set(k.identity, list);
  }
  for (const [id, list] of by) s.setIdentity(id, list);
  return s;
}

test('§2.5 step 1: an L3 deny decides at once', () => {
  const s = state([
    [key(300, 0, 0, 0), deny],
    [key(0, 6, 80, 16), allow],
  ]);
  assert.equal(s.lookup('ingress', 300, 6, 80).match?.entry.deny, true);
  assert.equal(s.lookup('ingress', 301, 6, 80).match?.entry.deny, false);
});

test('§2.5 step 3: an L4-only deny beats an L3 allow', () => {
  const s = state([
    [key(300, 0, 0, 0), allow],
    [key(0, 6, 80, 16), deny],
  ]);
  assert.equal(s.lookup('ingress', 300, 6, 80).match?.entry.deny, true);
  assert.equal(s.lookup('ingress', 300, 6, 81).match?.entry.deny, false);
});

test('§2.5 step 3: a redirect on the L4-only entry beats a plain L3 allow', () => {
  const s = state([
    [key(300, 6, 80, 16), allow],
    [key(0, 6, 80, 16), http],
  ]);
  assert.equal(s.lookup('ingress', 300, 6, 80).match?.entry.redirect, 'http');
});

test('§2.5 step 3: equal kinds, the longer prefix wins', () => {
  const s = state([
    [key(300, 0, 0, 0), allow],
    [key(0, 6, 80, 16), { ...allow, derivedFrom: ['L4'] }],
  ]);
  assert.deepEqual(s.lookup('ingress', 300, 6, 80).match?.entry.derivedFrom, ['L4']);
  assert.equal(s.lookup('ingress', 300, 17, 80).via, 'l3');
});

test('§2.5 step 4: no entry is default deny', () => {
  const s = state([[key(300, 6, 80, 16), allow]]);
  assert.equal(s.lookup('ingress', 300, 6, 81).match, null);
  assert.equal(s.lookup('egress', 300, 6, 80).match, null, 'directions are separate');
});

test('port prefixes match ranges', () => {
  const s = state([[key(0, 6, 80, 14), allow]]); // 80-83
  assert.ok(s.lookup('ingress', 5, 6, 83).match);
  assert.equal(s.lookup('ingress', 5, 6, 84).match, null);
  assert.equal(s.lookup('ingress', 5, 17, 80).match, null);
});
