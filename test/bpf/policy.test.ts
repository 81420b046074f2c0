// SPDX-License-Identifier: Apache-2.0
// Policy lookup at the decision point (mbr_from_container): allow, default deny, deny precedence
// (reference §2.5), port-range prefixes and ICMP types. Each test is one scenario on a fresh map state.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, privileged, A, B, WORLD_IP, tcp, icmp, Proto, TCP_ACK } from './harness.ts';
import { DropReason, Mark, TC_ACT_OK, TC_ACT_SHOT } from '../../src/datapath/index.ts';

const skip = privileged();

describe('policy lookup', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('policy');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => h.reset({ bFlags: 0 })); // B enforces nothing: only A's egress decides here

  test('an L3+L4 allow passes, marks the packet decided and records the flow', () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, cookie: 7 });
    const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
    assert.equal(r.retval, TC_ACT_OK);
    assert.equal(r.mark, Mark.DECIDED);
    const ev = h.oneEvent();
    assert.equal(ev.verdict, 'FORWARDED');
    assert.equal(ev.egress.outcome, 'allowed');
    assert.equal(ev.egress.match, 'l3-l4');
    assert.equal(ev.egress.cookie, 7);
    assert.equal(ev.ingress.outcome, 'not-enforced');
    const ct = h.ct.get({ saddr: A.ip, daddr: B.ip, sport: 40000, dport: 80, proto: Proto.TCP });
    assert.ok(ct, 'conntrack entry created');
    assert.equal(ct.srcIdentity, A.identity);
  });

  test('no entry: default deny drops with POLICY_DENIED (133)', () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80 });
    const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 81));
    assert.equal(r.retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.verdict, 'DROPPED');
    assert.equal(ev.dropReason, DropReason.POLICY);
    assert.equal(ev.dropReasonName, 'POLICY_DENIED');
    assert.equal(ev.egress.outcome, 'default-denied');
    assert.equal(h.ct.entries().length, 0, 'no conntrack entry for a dropped flow');
    const m = h.metrics.read().find((c) => c.reason === 133);
    assert.equal(m?.packets, 1n);
    assert.equal(m?.dir, 'egress');
  });

  test('an L4-only deny beats an L3 allow (POLICY_DENY 181)', () => {
    h.allow(
      { epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, cookie: 1 },
      { epId: A.epId, egress: true, identity: 0, proto: Proto.TCP, port: 80, deny: true, cookie: 2 },
    );
    const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
    assert.equal(r.retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.dropReason, DropReason.POLICY_DENY);
    assert.equal(ev.egress.outcome, 'denied');
    assert.equal(ev.egress.match, 'l4-only');
    assert.equal(ev.egress.cookie, 2);
  });

  test('an L3 deny beats an L4-only allow (POLICY_DENY 181)', () => {
    h.allow(
      { epId: A.epId, egress: true, identity: 0, proto: Proto.TCP, port: 80, cookie: 1 },
      { epId: A.epId, egress: true, identity: B.identity, proto: 0, deny: true, cookie: 3 },
    );
    const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
    assert.equal(r.retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.dropReason, DropReason.POLICY_DENY);
    assert.equal(ev.egress.match, 'l3-only');
    assert.equal(ev.egress.cookie, 3);
    // Another peer is still allowed by the L4-only entry.
    assert.equal(h.fromContainer(tcp(A.ip, WORLD_IP, 40001, 80)).retval, TC_ACT_OK);
  });

  test('the L4-only entry wins over an L3 entry when its prefix is longer (2d)', () => {
    h.allow(
      { epId: A.epId, egress: true, identity: B.identity, proto: 0, cookie: 10 },
      { epId: A.epId, egress: true, identity: 0, proto: Proto.TCP, port: 80, cookie: 11 },
    );
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80)).retval, TC_ACT_OK);
    const ev = h.oneEvent();
    assert.equal(ev.egress.match, 'l4-only');
    assert.equal(ev.egress.cookie, 11);
  });

  test('a port-range prefix entry covers its aligned range only', () => {
    // 8080-8083 = 8080/14
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 8080, portPrefixLen: 14 });
    for (const p of [8080, 8081, 8083]) assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000 + p, p)).retval, TC_ACT_OK, `port ${p}`);
    for (const p of [8079, 8084]) assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000 + p, p)).retval, TC_ACT_SHOT, `port ${p}`);
    // UDP is another protocol.
    h.takeEvents();
  });

  test('a protocol-only entry allows every port of that protocol', () => {
    h.allow({ epId: A.epId, egress: true, identity: 0, proto: Proto.TCP, port: 0, portPrefixLen: 0 });
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 1)).retval, TC_ACT_OK);
    assert.equal(h.oneEvent().egress.match, 'proto-only');
  });

  test('ICMP entries match the type: echo allowed, timestamp denied', () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.ICMP, port: 8 });
    assert.equal(h.fromContainer(icmp(A.ip, B.ip, 8, { id: 5 })).retval, TC_ACT_OK);
    const ok = h.oneEvent();
    assert.equal(ok.dport, 8);
    assert.equal(ok.proto, Proto.ICMP);
    assert.equal(h.fromContainer(icmp(A.ip, B.ip, 13, { id: 6 })).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.POLICY);
  });

  test('policy is re-checked on established flows: removing the entry cuts the flow', () => {
    const key = { epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, portPrefixLen: 16 };
    h.allow(key);
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80)).retval, TC_ACT_OK);
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80, TCP_ACK)).retval, TC_ACT_OK);
    h.policy.delete(key);
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80, TCP_ACK)).retval, TC_ACT_SHOT);
  });
});
