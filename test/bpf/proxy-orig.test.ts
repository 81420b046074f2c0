// SPDX-License-Identifier: Apache-2.0
// UDP redirect records the original destination (bpf/lib/proxy.h mbr_origdst_v1; datapath-trial.md §4 variant
// ii): the DNS proxy's dgram socket cannot read IP_ORIGDSTADDR, so every redirected datagram first writes
// {client address, port, proto} → {original destination, client identity}. The entry is written once the proxy
// socket is found and before bpf_sk_assign, which BPF_PROG_TEST_RUN refuses (SOCKET_ASSIGN_FAILED): the write
// is observable here. No proxy socket: no entry, SOCKET_LOOKUP_FAILED. The proxy socket is a dgram socket on
// 127.0.0.1 in the test's namespace (loopback only).
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { Harness, privileged, A, B, WORLD_IP, tcp, udp, Proto } from './harness.ts';
import { encodePolicyKey } from '../../src/datapath/policy-map.ts';
import { CtFlags, DropReason, Identity, ProxyOrigMap, TC_ACT_SHOT } from '../../src/datapath/index.ts';

const skip = privileged();

describe('UDP redirect records the original destination', { skip }, () => {
  let h: Harness;
  let proxy: dgram.Socket;
  let proxyPort: number;
  before(async () => {
    h = new Harness('origdst');
    proxy = dgram.createSocket('udp4');
    await new Promise<void>((r) => proxy.bind(0, '127.0.0.1', r));
    proxyPort = proxy.address().port;
  });
  after(async () => {
    await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()));
    await h?.close();
  });
  beforeEach(() => h.reset({ bFlags: 0 }));

  test('from_container: client address/port → original destination and the client identity', () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.UDP, port: 53, proxyPort });
    const r = h.fromContainer(udp(A.ip, B.ip, 40000, 53));
    assert.equal(r.retval, TC_ACT_SHOT, 'test-run refuses bpf_sk_assign');
    assert.equal(h.oneEvent().dropReason, DropReason.PROXY_SET_FAILED, 'the socket was found');
    assert.deepEqual(h.proxyOrig.lookup(A.ip, 40000, Proto.UDP), { ip: B.ip, port: 53, identity: A.identity });
    assert.deepEqual(h.proxyOrig.entries(), [[{ saddr: A.ip, sport: 40000, proto: Proto.UDP }, { daddr: B.ip, dport: 53, identity: A.identity }]]);
    assert.equal(h.proxyOrig.lookup(A.ip, 40001, Proto.UDP), undefined);
    assert.equal(h.proxyOrig.lookup(A.ip, 40000, Proto.TCP), undefined);
  });

  test('every datagram rewrites the entry (same client port, another server)', () => {
    h.allow({ epId: A.epId, egress: true, identity: 0, proto: Proto.UDP, port: 53, proxyPort });
    h.fromContainer(udp(A.ip, B.ip, 40000, 53));
    assert.equal(h.proxyOrig.lookup(A.ip, 40000, Proto.UDP)?.ip, B.ip);
    h.fromContainer(udp(A.ip, WORLD_IP, 40000, 53));
    assert.deepEqual(h.proxyOrig.lookup(A.ip, 40000, Proto.UDP), { ip: WORLD_IP, port: 53, identity: A.identity });
  });

  test('the cached-decision fast path records it too, with the identity its conntrack entry holds', () => {
    const key = { epId: A.epId, egress: true, identity: B.identity, proto: Proto.UDP, port: 53, portPrefixLen: 16 };
    h.allow({ ...key, proxyPort });
    const flow = { saddr: A.ip, daddr: B.ip, sport: 40000, dport: 53, proto: Proto.UDP };
    // test-run cannot create a redirected flow (bpf_sk_assign refused): write the entry one has, with a
    // source identity of its own so the record shows where it came from.
    h.ct.set(flow, {
      lastSeenNs: process.hrtime.bigint(), srcIdentity: 4242, proxyPort, flags: CtFlags.PROXY_REDIRECT,
      decision: { revision: h.revision.current(), proxyPort, obsPoint: 1, audit: false, nodeOrigin: false }, decIfindex: A.ifindex,
    });
    // Remove the redirect WITHOUT bumping the revision: only the fast path can still redirect (the full
    // check it falls back to when bpf_sk_assign fails now denies).
    assert.ok(h.policy.raw.delete(encodePolicyKey(key)));
    assert.equal(h.proxyOrig.lookup(A.ip, 40000, Proto.UDP), undefined);
    assert.equal(h.fromContainer(udp(A.ip, B.ip, 40000, 53)).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.POLICY, 'the full check ran after the fast path');
    assert.deepEqual(h.proxyOrig.lookup(A.ip, 40000, Proto.UDP), { ip: B.ip, port: 53, identity: 4242 });
  });

  test('from_netdev: ingress redirect of a local endpoint records the outside client as world', () => {
    h.reset(); // B's ingress enforced
    h.allow({ epId: B.epId, egress: false, identity: Identity.WORLD, proto: Proto.UDP, port: 53, proxyPort });
    assert.equal(h.fromNetdev(udp(WORLD_IP, B.ip, 5353, 53)).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.PROXY_SET_FAILED);
    assert.deepEqual(h.proxyOrig.lookup(WORLD_IP, 5353, Proto.UDP), { ip: B.ip, port: 53, identity: Identity.WORLD });
  });

  test('no proxy socket: dropped with SOCKET_LOOKUP_FAILED and nothing recorded', async () => {
    const gone = dgram.createSocket('udp4');
    await new Promise<void>((r) => gone.bind(0, '127.0.0.1', r));
    const port = gone.address().port;
    await new Promise<void>((r) => gone.close(() => r()));
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.UDP, port: 53, proxyPort: port });
    assert.equal(h.fromContainer(udp(A.ip, B.ip, 40000, 53)).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.PROXY_LOOKUP_FAILED);
    assert.equal(h.proxyOrig.entries().length, 0);
  });

  test('TCP redirects record nothing (the accepted socket knows its original destination)', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(proxyPort, '127.0.0.1', r));
    try {
      h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 53, proxyPort });
      assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 53)).retval, TC_ACT_SHOT);
      assert.equal(h.oneEvent().dropReason, DropReason.PROXY_SET_FAILED, 'the listener was found');
      assert.equal(h.proxyOrig.entries().length, 0);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('ProxyOrigMap.open reads the pinned map', () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.UDP, port: 53, proxyPort });
    h.fromContainer(udp(A.ip, B.ip, 41000, 53));
    const m = ProxyOrigMap.open(h.pinRoot);
    try {
      assert.deepEqual(m.lookup(A.ip, 41000, Proto.UDP), { ip: B.ip, port: 53, identity: A.identity });
    } finally {
      m.close();
    }
  });
});
