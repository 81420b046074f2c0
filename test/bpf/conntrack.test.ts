// SPDX-License-Identifier: Apache-2.0
// Conntrack (reference §7.3): replies and related ICMP errors pass without policy; a new connection in the
// reverse direction is checked like any other.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, privileged, A, B, tcp, udp, icmp, l3Of, Proto, TCP_ACK, TCP_SYN, NODE_IP } from './harness.ts';
import { CtFlags, DropReason, TC_ACT_OK, TC_ACT_SHOT } from '../../src/datapath/index.ts';

const skip = privileged();

describe('conntrack', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('ct');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.reset();
    // A may reach B:80 (both sides); B's egress is enforced with no entries.
    h.allow(
      { epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80 },
      { epId: B.epId, egress: false, identity: A.identity, proto: Proto.TCP, port: 80 },
      { epId: A.epId, egress: true, identity: B.identity, proto: Proto.UDP, port: 53 },
      { epId: B.epId, egress: false, identity: A.identity, proto: Proto.UDP, port: 53 },
    );
  });

  test('the reply of an allowed flow passes at the replying endpoint without a policy entry', () => {
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80)).retval, TC_ACT_OK);
    h.takeEvents();
    const reply = h.fromContainer(tcp(B.ip, A.ip, 80, 40000, TCP_SYN | TCP_ACK), B.ifindex);
    assert.equal(reply.retval, TC_ACT_OK);
    assert.equal(h.takeEvents().length, 0, 'replies emit no event');
    const e = h.ct.get({ saddr: A.ip, daddr: B.ip, sport: 40000, dport: 80, proto: Proto.TCP });
    assert.ok(e && e.flags & CtFlags.SEEN_REPLY, 'reply seen');
    // ... and at the veth towards the client.
    assert.equal(h.toContainer(tcp(B.ip, A.ip, 80, 40000, TCP_ACK)).retval, TC_ACT_OK);
  });

  test('a new connection in the reverse direction is checked and dropped', () => {
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80)).retval, TC_ACT_OK);
    h.takeEvents();
    const r = h.fromContainer(tcp(B.ip, A.ip, 40001, 80), B.ifindex);
    assert.equal(r.retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.dropReason, DropReason.POLICY);
    assert.equal(ev.srcEp, B.epId);
  });

  test('UDP: the first packet is a new flow with an event, the next one is not, the reply passes', () => {
    assert.equal(h.fromContainer(udp(A.ip, B.ip, 5353, 53)).retval, TC_ACT_OK);
    assert.equal(h.oneEvent().newFlow, true);
    assert.equal(h.fromContainer(udp(A.ip, B.ip, 5353, 53)).retval, TC_ACT_OK);
    assert.equal(h.takeEvents().length, 0);
    assert.equal(h.fromContainer(udp(B.ip, A.ip, 53, 5353), B.ifindex).retval, TC_ACT_OK);
  });

  test('an ICMP error quoting a known flow passes as related; one about an unknown flow is checked', () => {
    const fwd = udp(A.ip, B.ip, 5353, 53);
    assert.equal(h.fromContainer(fwd).retval, TC_ACT_OK);
    h.takeEvents();
    // B answers "port unreachable" about A's datagram.
    const err = icmp(B.ip, A.ip, 3, { code: 3, quote: l3Of(fwd) });
    assert.equal(h.fromContainer(err, B.ifindex).retval, TC_ACT_OK);
    assert.equal(h.takeEvents().length, 0);
    const unrelated = icmp(B.ip, A.ip, 3, { code: 3, quote: l3Of(udp(A.ip, B.ip, 1111, 53)) });
    assert.equal(h.fromContainer(unrelated, B.ifindex).retval, TC_ACT_SHOT);
    // The node reporting an error to B about B's reply passes at B's veth (to_container) too.
    assert.equal(h.toContainer(icmp(NODE_IP, B.ip, 3, { code: 1, quote: l3Of(udp(B.ip, A.ip, 53, 5353)) })).retval, TC_ACT_OK);
  });

  test('ICMP echo: the reply of an allowed request passes, a request with the same id the other way does not', () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.ICMP, port: 8 }, { epId: B.epId, egress: false, identity: A.identity, proto: Proto.ICMP, port: 8 });
    assert.equal(h.fromContainer(icmp(A.ip, B.ip, 8, { id: 77 })).retval, TC_ACT_OK);
    assert.equal(h.fromContainer(icmp(B.ip, A.ip, 0, { id: 77 }), B.ifindex).retval, TC_ACT_OK);
    assert.equal(h.fromContainer(icmp(B.ip, A.ip, 8, { id: 77 }), B.ifindex).retval, TC_ACT_SHOT);
  });
});
