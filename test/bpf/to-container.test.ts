// SPDX-License-Identifier: Apache-2.0
// mbr_to_container: packets that reached an endpoint without a decision point (from the node itself, or from an
// interface without mbr_from_netdev) are checked against its ingress policy; decided packets pass untouched.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, privileged, A, B, NODE_IP, WORLD_IP, tcp, Proto } from './harness.ts';
import { DropReason, Identity, Mark, TC_ACT_OK, TC_ACT_SHOT } from '../../src/datapath/index.ts';

const skip = privileged();

describe('to_container', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('tolxc');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => h.reset());

  test('a packet marked decided passes without a lookup or event', () => {
    assert.equal(h.toContainer(tcp(A.ip, B.ip, 40000, 80), { mark: Mark.DECIDED }).retval, TC_ACT_OK);
    assert.equal(h.takeEvents().length, 0);
  });

  test('from the node (ipcache identity host): allowed by an ingress entry for host', () => {
    h.allow({ epId: B.epId, egress: false, identity: Identity.HOST, proto: Proto.TCP, port: 8080, cookie: 4 });
    assert.equal(h.toContainer(tcp(NODE_IP, B.ip, 40000, 8080)).retval, TC_ACT_OK);
    const ev = h.oneEvent();
    assert.equal(ev.obsPoint, 'to-container');
    assert.equal(ev.srcIdentity, Identity.HOST);
    assert.equal(ev.ingress.cookie, 4);
    assert.equal(ev.egress.outcome, 'not-evaluated');
  });

  test('a locally generated packet from an address not in ipcache gets the host identity', () => {
    h.allow({ epId: B.epId, egress: false, identity: Identity.HOST, proto: Proto.TCP, port: 8080 });
    assert.equal(h.toContainer(tcp('169.254.1.1', B.ip, 40000, 8080), { ingressIfindex: 0 }).retval, TC_ACT_OK);
    assert.equal(h.oneEvent().srcIdentity, Identity.HOST);
  });

  test('a forwarded packet from an unknown address is world and default-denied', () => {
    h.allow({ epId: B.epId, egress: false, identity: Identity.HOST, proto: Proto.TCP, port: 8080 });
    assert.equal(h.toContainer(tcp(WORLD_IP, B.ip, 40000, 8080), { ingressIfindex: 7 }).retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.srcIdentity, Identity.WORLD);
    assert.equal(ev.dropReason, DropReason.POLICY);
    assert.equal(ev.ingress.outcome, 'default-denied');
  });

  test('a redirect cannot be honoured at tc egress: fail closed', () => {
    h.allow({ epId: B.epId, egress: false, identity: Identity.HOST, proto: Proto.TCP, port: 8080, proxyPort: 15001 });
    assert.equal(h.toContainer(tcp(NODE_IP, B.ip, 40000, 8080)).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.PROXY_SET_FAILED);
  });
});

describe('from_netdev', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('netdev');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => h.reset());

  test('traffic from outside to a local endpoint is checked against its ingress (world)', () => {
    assert.equal(h.fromNetdev(tcp(WORLD_IP, B.ip, 40000, 443)).retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.obsPoint, 'from-netdev');
    assert.equal(ev.srcIdentity, Identity.WORLD);
    assert.equal(ev.dstEp, B.epId);
    h.allow({ epId: B.epId, egress: false, identity: Identity.WORLD, proto: Proto.TCP, port: 443 });
    const r = h.fromNetdev(tcp(WORLD_IP, B.ip, 40001, 443));
    assert.equal(r.retval, TC_ACT_OK);
    assert.equal(r.mark, Mark.DECIDED);
  });

  test('traffic for the node itself is not ours and passes without an event', () => {
    assert.equal(h.fromNetdev(tcp(WORLD_IP, NODE_IP, 40000, 22)).retval, TC_ACT_OK);
    assert.equal(h.takeEvents().length, 0);
  });

  test("the reply to an endpoint's outbound flow passes", () => {
    h.allow({ epId: A.epId, egress: true, identity: Identity.WORLD, proto: Proto.TCP, port: 443 });
    assert.equal(h.fromContainer(tcp(A.ip, WORLD_IP, 40000, 443)).retval, TC_ACT_OK);
    assert.equal(h.fromNetdev(tcp(WORLD_IP, A.ip, 443, 40000, 0x12)).retval, TC_ACT_OK);
  });
});
