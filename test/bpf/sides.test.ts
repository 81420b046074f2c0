// SPDX-License-Identifier: Apache-2.0
// Both sides at the decision point (DESIGN §4): the destination's ingress is evaluated where the packet leaves
// the source, audit mode (global and per endpoint), and directions that are not enforced.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, privileged, A, B, tcp, Proto } from './harness.ts';
import { ConfigFlags, DropReason, endpointFlags, TC_ACT_OK, TC_ACT_SHOT } from '../../src/datapath/index.ts';

const skip = privileged();

describe('both sides at the source', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('sides');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => h.reset());

  test("a local destination's ingress is evaluated at the source and can drop", () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, cookie: 5 });
    const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
    assert.equal(r.retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.dropReason, DropReason.POLICY);
    assert.equal(ev.egress.outcome, 'allowed');
    assert.equal(ev.egress.cookie, 5);
    assert.equal(ev.ingress.outcome, 'default-denied');
    assert.equal(ev.srcEp, A.epId);
    assert.equal(ev.dstEp, B.epId);
    assert.equal(ev.srcIdentity, A.identity);
    assert.equal(ev.dstIdentity, B.identity);
  });

  test("with the destination's ingress allowing the source identity, the flow passes with both cookies", () => {
    h.allow(
      { epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, cookie: 5 },
      { epId: B.epId, egress: false, identity: A.identity, proto: Proto.TCP, port: 80, cookie: 6 },
    );
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80)).retval, TC_ACT_OK);
    const ev = h.oneEvent();
    assert.equal(ev.verdict, 'FORWARDED');
    assert.equal(ev.egress.cookie, 5);
    assert.equal(ev.ingress.cookie, 6);
    assert.equal(ev.ingress.outcome, 'allowed');
  });

  test('global audit: a would-be drop passes with verdict AUDIT and the reason it overrode', () => {
    h.config.update({ flags: ConfigFlags.AUDIT });
    const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
    assert.equal(r.retval, TC_ACT_OK);
    const ev = h.oneEvent();
    assert.equal(ev.verdict, 'AUDIT');
    assert.equal(ev.dropReason, DropReason.POLICY);
    assert.equal(ev.egress.audited, true);
    assert.equal(ev.ingress.audited, true);
  });

  test('per-endpoint audit covers only that endpoint: the other side still drops', () => {
    h.reset({ aFlags: endpointFlags({ ingress: true, egress: true, audit: true }) });
    let r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
    assert.equal(r.retval, TC_ACT_SHOT, "B's ingress is not in audit mode");
    assert.equal(h.oneEvent().ingress.audited, false);
    h.allow({ epId: B.epId, egress: false, identity: A.identity, proto: Proto.TCP, port: 80 });
    r = h.fromContainer(tcp(A.ip, B.ip, 40001, 80));
    assert.equal(r.retval, TC_ACT_OK);
    const ev = h.oneEvent();
    assert.equal(ev.verdict, 'AUDIT');
    assert.equal(ev.egress.outcome, 'default-denied');
    assert.equal(ev.egress.audited, true);
  });

  test('a direction that is not enforced allows everything without a lookup', () => {
    h.reset({ aFlags: endpointFlags({ ingress: true, egress: false }), bFlags: endpointFlags({ ingress: false, egress: true }) });
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 9999)).retval, TC_ACT_OK);
    const ev = h.oneEvent();
    assert.equal(ev.egress.outcome, 'not-enforced');
    assert.equal(ev.ingress.outcome, 'not-enforced');
  });

  test('an explicit deny is audited too', () => {
    h.config.update({ flags: ConfigFlags.AUDIT });
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: 0, deny: true });
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80)).retval, TC_ACT_OK);
    const ev = h.oneEvent();
    assert.equal(ev.verdict, 'AUDIT');
    assert.equal(ev.dropReason, DropReason.POLICY_DENY);
  });
});
