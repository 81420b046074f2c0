// SPDX-License-Identifier: Apache-2.0
// L7 redirect (reference §7.4/§7.5): a redirect entry with no proxy socket fails closed with
// SOCKET_LOOKUP_FAILED (178); with a listener the lookup succeeds and bpf_sk_assign is reached, which
// BPF_PROG_TEST_RUN refuses (not at tc ingress: SOCKET_ASSIGN_FAILED, 179). The proxy's own marked traffic is
// not enforced again. The listener is bound to 127.0.0.1 in the test's namespace (loopback only).
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Harness, privileged, A, B, tcp, icmp, Proto } from './harness.ts';
import { DropReason, proxyMark, TC_ACT_OK, TC_ACT_SHOT } from '../../src/datapath/index.ts';

const skip = privileged();

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('redirect to the proxy', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('redirect');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => h.reset({ bFlags: 0 }));

  test('no proxy listening: the packet is dropped with SOCKET_LOOKUP_FAILED (fail closed)', async () => {
    const port = await freePort();
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, proxyPort: port, cookie: 9 });
    const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
    assert.equal(r.retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.dropReason, DropReason.PROXY_LOOKUP_FAILED);
    assert.equal(ev.dropReasonName, 'SOCKET_LOOKUP_FAILED');
    assert.equal(ev.egress.outcome, 'redirected');
    assert.equal(h.ct.entries().length, 0);
  });

  test('a proxy listener is found; under test-run bpf_sk_assign refuses (SOCKET_ASSIGN_FAILED)', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, proxyPort: port });
      const r = h.fromContainer(tcp(A.ip, B.ip, 40000, 80));
      assert.equal(r.retval, TC_ACT_SHOT);
      assert.equal(h.oneEvent().dropReason, DropReason.PROXY_SET_FAILED);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('redirecting ICMP is not supported (PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL)', () => {
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.ICMP, port: 8, proxyPort: 15001 });
    assert.equal(h.fromContainer(icmp(A.ip, B.ip, 8, { id: 1 })).retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.PROXY_UNKNOWN_PROTO);
  });

  test("the proxy's marked upstream traffic passes to_container and its replies pass back", () => {
    h.reset(); // B's ingress enforced, nothing allowed
    const upstream = tcp('10.200.0.1', B.ip, 51000, 80);
    assert.equal(h.toContainer(upstream, { mark: proxyMark(A.identity) }).retval, TC_ACT_OK);
    const ct = h.ct.get({ saddr: '10.200.0.1', daddr: B.ip, sport: 51000, dport: 80, proto: Proto.TCP });
    assert.equal(ct?.srcIdentity, A.identity);
    assert.equal(h.fromContainer(tcp(B.ip, '10.200.0.1', 80, 51000, 0x12), B.ifindex).retval, TC_ACT_OK);
    // Without the mark the same packet is checked against B's ingress and dropped.
    assert.equal(h.toContainer(tcp('10.200.0.1', B.ip, 51001, 80)).retval, TC_ACT_SHOT);
  });
});
