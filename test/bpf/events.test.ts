// SPDX-License-Identifier: Apache-2.0
// Verdict events through the ring buffer: decoded fields, one event per new flow, the per-CPU token bucket,
// drop counters that count even when events are limited, and the asynchronous reader.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, privileged, A, B, tcp, udp, ether, ipv4, Proto, TCP_ACK } from './harness.ts';
import { ConfigFlags, DropReason, RingbufReader, MAP_NAMES, TC_ACT_OK, TC_ACT_SHOT, type VerdictEvent } from '../../src/datapath/index.ts';

const skip = privileged();

describe('verdict events', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('events');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => h.reset());

  test('a new flow yields one event with every field decoded', () => {
    h.allow(
      { epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 8080, portPrefixLen: 14, cookie: 0xdeadbeef },
      { epId: B.epId, egress: false, identity: 0, proto: Proto.TCP, port: 0, cookie: 12 },
    );
    const before = process.hrtime.bigint();
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 41234, 8082)).retval, TC_ACT_OK);
    const ev = h.oneEvent();
    const expected: Omit<VerdictEvent, 'tsNs'> = {
      saddr: A.ip, daddr: B.ip, sport: 41234, dport: 8082, proto: Proto.TCP, verdict: 'FORWARDED', dropReason: 0,
      dropReasonName: null, isReply: false, newFlow: true, related: false, fromProxy: false, obsPoint: 'from-container',
      srcIdentity: A.identity, dstIdentity: B.identity, srcEp: A.epId, dstEp: B.epId, ifindex: 1, proxyPort: 0,
      egress: { outcome: 'allowed', audited: false, match: 'l3-l4', cookie: 0xdeadbeef },
      ingress: { outcome: 'allowed', audited: false, match: 'proto-only', cookie: 12 },
    };
    const { tsNs, ...rest } = ev;
    assert.deepEqual(rest, expected);
    assert.ok(tsNs >= before && tsNs <= process.hrtime.bigint(), 'timestamp is CLOCK_MONOTONIC');
    // The established packets of the flow emit nothing.
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 41234, 8082, TCP_ACK)).retval, TC_ACT_OK);
    assert.equal(h.takeEvents().length, 0);
  });

  test('CFG_F_NO_FLOW_EVENTS keeps drop events only', () => {
    h.config.update({ flags: ConfigFlags.NO_FLOW_EVENTS });
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.UDP, port: 53 }, { epId: B.epId, egress: false, identity: A.identity, proto: Proto.UDP, port: 53 });
    assert.equal(h.fromContainer(udp(A.ip, B.ip, 5000, 53)).retval, TC_ACT_OK);
    assert.equal(h.fromContainer(udp(A.ip, B.ip, 5000, 54)).retval, TC_ACT_SHOT);
    const evs = h.takeEvents();
    assert.deepEqual(evs.map((e) => e.verdict), ['DROPPED']);
  });

  test('the rate limit caps events per CPU; drops are still counted', () => {
    h.config.update({ eventsPerSec: 1, eventsBurst: 5 });
    for (let i = 0; i < 20; i++) assert.equal(h.fromContainer(tcp(A.ip, B.ip, 42000 + i, 9)).retval, TC_ACT_SHOT);
    const evs = h.takeEvents();
    // Test runs may land on either CPU, each with its own bucket of 5 (+ at most one refill each).
    assert.ok(evs.length >= 5 && evs.length <= 12, `got ${evs.length} events`);
    assert.ok(evs.every((e) => e.dropReason === DropReason.POLICY));
    const counters = h.metrics.read();
    assert.equal(counters.find((c) => c.reason === 133 && c.verdict === 2)?.packets, 20n);
    const limited = counters.filter((c) => c.verdict === 100).reduce((n, c) => n + c.packets, 0n);
    assert.equal(limited, BigInt(20 - evs.length));
  });

  test('non-IPv4 from an endpoint drops (139); ARP and unknown veths pass untouched', () => {
    const v6 = ether(Buffer.alloc(40), 0x86dd);
    assert.equal(h.fromContainer(v6).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.UNKNOWN_L3);
    assert.equal(h.fromContainer(ether(Buffer.alloc(28), 0x0806)).retval, TC_ACT_OK);
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 1, 2), 4242).retval, TC_ACT_OK);
    assert.equal(h.takeEvents().length, 0);
  });

  test('a truncated TCP header drops with CT_TRUNCATED_OR_INVALID_HEADER; a later fragment is not supported', () => {
    assert.equal(h.fromContainer(ether(ipv4(A.ip, B.ip, Proto.TCP, Buffer.alloc(6)))).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.CT_INVALID_HDR);
    const frag = ether(ipv4(A.ip, B.ip, Proto.UDP, Buffer.alloc(16)));
    frag.writeUInt16BE(0x0010, 14 + 6); // fragment offset 16 × 8
    assert.equal(h.fromContainer(frag).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.FRAG_NOSUPPORT);
  });

  test('the asynchronous reader delivers events and close() waits for its epoll_wait', async () => {
    const rb = RingbufReader.fromFd(h.lxc.mapFd(MAP_NAMES.events));
    const got: VerdictEvent[] = [];
    let wake: () => void = () => {};
    const enough = new Promise<void>((r) => (wake = r));
    rb.start((evs) => {
      got.push(...evs);
      if (got.length >= 3) wake();
    }, { pollTimeoutMs: 50 });
    await new Promise((r) => setTimeout(r, 20)); // let the reader fall asleep in epoll_wait
    for (let i = 0; i < 3; i++) h.fromContainer(tcp(A.ip, B.ip, 43000 + i, 9));
    await Promise.race([enough, new Promise((_, rej) => setTimeout(() => rej(new Error('no events within 2 s')), 2000))]);
    await rb.close();
    assert.equal(got.length, 3);
    assert.deepEqual(got.map((e) => e.sport).sort(), [43000, 43001, 43002]);
  });
});
