// SPDX-License-Identifier: Apache-2.0
// Established-flow fast path (bpf/lib/conntrack.h "Cached decision", bpf/lib/polrev.h): a forward packet of an
// established flow reuses the decision its conntrack entry cached while the policy revision is unchanged, and
// is fully re-checked after any write through the map wrappers (which bump the revision), so removing a rule
// still cuts an established flow on its next packet (reference §7.3). "Raw" writes below go through
// `map.raw`, which does NOT bump: they show which packets took the cache.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { Harness, privileged, root, A, B, NODE_IP, WORLD_IP, tcp, udp, Proto, TCP_ACK, TCP_SYN, TCP_FIN } from './harness.ts';
import { encodePolicyKey } from '../../src/datapath/policy-map.ts';
import {
  ConfigFlags, CtFlags, DropReason, Identity, Mark, PolicyRevision, TC_ACT_OK, TC_ACT_SHOT,
  type CtKey, type PolicyKeyDesc,
} from '../../src/datapath/index.ts';

const skip = privileged();
const REV_MASK = (1n << 40n) - 1n;
const VERDICT = { FORWARDED: 1, DROPPED: 2, AUDIT: 4 } as const;

const flow: CtKey = { saddr: A.ip, daddr: B.ip, sport: 40000, dport: 80, proto: Proto.TCP };
const aEgress: PolicyKeyDesc = { epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80, portPrefixLen: 16 };
const bIngress: PolicyKeyDesc = { epId: B.epId, egress: false, identity: A.identity, proto: Proto.TCP, port: 80, portPrefixLen: 16 };

describe('established-flow fast path', { skip }, () => {
  let h: Harness;
  const syn = () => h.fromContainer(tcp(A.ip, B.ip, 40000, 80, TCP_SYN));
  const ack = () => h.fromContainer(tcp(A.ip, B.ip, 40000, 80, TCP_ACK));
  /** Deletes a policy entry without bumping the revision. */
  const rawDelete = (k: PolicyKeyDesc) => assert.ok(h.policy.raw.delete(encodePolicyKey(k)), 'entry existed');
  const packets = (verdict: number, dir: 'egress' | 'ingress' = 'egress') =>
    h.metrics.read().filter((m) => m.verdict === verdict && m.dir === dir && m.reason === 0).reduce((n, m) => n + m.packets, 0n);

  before(() => {
    h = new Harness('fastpath');
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.reset();
    h.allow({ ...aEgress, cookie: 5 }, { ...bIngress, cookie: 6 });
  });

  test('every wrapper write bumps the revision once, after writing', () => {
    const r0 = h.revision.current();
    h.policy.upsert({ ...aEgress, port: 81, deny: false, proxyPort: 0, cookie: 0 });
    h.policy.upsertMany([{ ...aEgress, port: 82, deny: false, proxyPort: 0, cookie: 0 }, { ...aEgress, port: 83, deny: false, proxyPort: 0, cookie: 0 }]);
    h.policy.apply({ adds: [{ ...aEgress, port: 84, deny: false, proxyPort: 0, cookie: 0 }], deletes: [{ ...aEgress, port: 81 }] });
    h.policy.delete({ ...aEgress, port: 82 });
    h.policy.deleteEndpoint(999);
    assert.equal(h.revision.current() - r0, 5n, 'policy: upsert, upsertMany, apply, delete, deleteEndpoint');
    h.ipcache.set({ addr: '10.9.0.0', prefixLen: 16 }, { identity: 7, epId: 0, ifindex: 0 });
    h.ipcache.setCidr('10.8.0.0/16', { identity: 7, epId: 0, ifindex: 0 });
    h.ipcache.setMany([[{ addr: '10.7.0.0', prefixLen: 16 }, { identity: 7, epId: 0, ifindex: 0 }]]);
    h.ipcache.delete({ addr: '10.9.0.0', prefixLen: 16 });
    h.ipcache.deleteMany([{ addr: '10.8.0.0', prefixLen: 16 }]);
    h.endpoints.set(999, { epId: 99, identity: 9, flags: 0 });
    h.endpoints.delete(999);
    h.config.update({ eventsBurst: 0 });
    assert.equal(h.revision.current() - r0, 13n, 'ipcache ×5, endpoints ×2, config ×1');
    // Conntrack is no input of a decision: its writes do not bump.
    h.ct.clear();
    assert.equal(h.revision.current() - r0, 13n);
  });

  test('(a) an established flow at an unchanged revision reuses its cached decision', () => {
    assert.equal(syn().retval, TC_ACT_OK);
    h.takeEvents();
    const ct = h.ct.get(flow);
    assert.ok(ct?.decision, 'the full check cached its decision');
    assert.equal(ct.decision.revision, h.revision.current() & REV_MASK);
    assert.equal(ct.decision.obsPoint, 1, 'from_container');
    assert.equal(ct.decision.proxyPort, 0);
    assert.equal(ct.decision.audit, false);
    assert.equal(ct.decIfindex, A.ifindex, "the source veth: the decision is A's egress");

    // Both allow entries gone without a bump: the cache still decides, counted, marked decided, no event.
    rawDelete(aEgress);
    rawDelete(bIngress);
    const before = packets(VERDICT.FORWARDED);
    for (let i = 0; i < 3; i++) {
      const r = ack();
      assert.equal(r.retval, TC_ACT_OK, 'cached verdict');
      assert.equal(r.mark, Mark.DECIDED);
    }
    assert.equal(packets(VERDICT.FORWARDED) - before, 3n, 'fast-path packets are counted');
    assert.equal(h.takeEvents().length, 0, 'no event for established packets');

    // A TCP SYN is reported as a new flow: never from the cache, so it sees the deletion.
    assert.equal(syn().retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.POLICY);

    // The bump: the next packet is fully checked and dropped, with its event.
    h.revision.bump();
    const r = ack();
    assert.equal(r.retval, TC_ACT_SHOT);
    const ev = h.oneEvent();
    assert.equal(ev.dropReason, DropReason.POLICY);
    assert.equal(ev.egress.outcome, 'default-denied');
    assert.equal(ev.ingress.outcome, 'default-denied');
  });

  test('(a) the cache belongs to one hook: the same tuple from another veth is fully checked', () => {
    assert.equal(syn().retval, TC_ACT_OK);
    // Spoofed: A's tuple leaving B's veth is B's egress (enforced, no entries).
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80, TCP_ACK), B.ifindex).retval, TC_ACT_SHOT);
    assert.equal(h.ct.get(flow)?.decIfindex, A.ifindex, 'the entry still belongs to A');
    assert.equal(ack().retval, TC_ACT_OK);
  });

  test('(b) removing a rule through the wrapper cuts the established flow on its next packet', () => {
    assert.equal(syn().retval, TC_ACT_OK);
    assert.equal(ack().retval, TC_ACT_OK);
    h.policy.apply({ adds: [], deletes: [bIngress] }); // the destination's ingress side
    assert.equal(ack().retval, TC_ACT_SHOT);
    assert.equal(h.takeEvents().at(-1)?.ingress.outcome, 'default-denied');
    // Put back: re-checked, allowed and cached again at the new revision.
    h.policy.upsert({ ...bIngress, deny: false, proxyPort: 0, cookie: 6 });
    assert.equal(ack().retval, TC_ACT_OK);
    assert.equal(h.ct.get(flow)?.decision?.revision, h.revision.current() & REV_MASK);
    h.policy.delete(aEgress); // the source's egress side
    assert.equal(ack().retval, TC_ACT_SHOT);
  });

  test('(b) a deny added through the wrapper cuts the flow', () => {
    assert.equal(syn().retval, TC_ACT_OK);
    h.policy.upsert({ epId: A.epId, egress: true, identity: 0, proto: Proto.TCP, port: 80, portPrefixLen: 16, deny: true, proxyPort: 0, cookie: 0 });
    assert.equal(ack().retval, TC_ACT_SHOT);
    assert.equal(h.takeEvents().at(-1)?.dropReason, DropReason.POLICY_DENY);
  });

  test('(c) an ipcache change of the peer identity through the wrapper re-checks the flow', () => {
    assert.equal(syn().retval, TC_ACT_OK);
    assert.equal(ack().retval, TC_ACT_OK);
    h.ipcache.set({ addr: B.ip, prefixLen: 32 }, { identity: 4242, epId: B.epId, ifindex: B.ifindex });
    assert.equal(ack().retval, TC_ACT_SHOT, "A's egress allows identity 1002, not 4242");
    const ev = h.takeEvents().at(-1);
    assert.equal(ev?.dstIdentity, 4242);
    assert.equal(ev?.egress.outcome, 'default-denied');
  });

  test('(c) an endpoint change (source identity) through the wrapper re-checks the flow', () => {
    assert.equal(syn().retval, TC_ACT_OK);
    assert.equal(ack().retval, TC_ACT_OK);
    h.endpoints.set(A.ifindex, { epId: A.epId, identity: 4343, flags: h.endpoints.get(A.ifindex)!.flags });
    assert.equal(ack().retval, TC_ACT_SHOT, "B's ingress allows identity 1001, not 4343");
    assert.equal(h.takeEvents().at(-1)?.ingress.outcome, 'default-denied');
  });

  test('(d) audit: the cached verdict stays AUDIT, and turning audit off through ConfigMap cuts the flow', () => {
    h.policy.clear();
    h.config.update({ flags: ConfigFlags.AUDIT });
    assert.equal(syn().retval, TC_ACT_OK);
    assert.equal(h.oneEvent().verdict, 'AUDIT');
    const ct = h.ct.get(flow);
    assert.equal(ct?.decision?.audit, true);
    assert.ok(ct.flags & CtFlags.AUDITED);
    const before = packets(VERDICT.AUDIT);
    assert.equal(ack().retval, TC_ACT_OK);
    assert.equal(packets(VERDICT.AUDIT) - before, 1n, 'the fast path counts AUDIT, as the full check does');
    assert.equal(h.takeEvents().length, 0);
    h.config.setAudit(false);
    assert.equal(ack().retval, TC_ACT_SHOT);
    assert.equal(h.oneEvent().dropReason, DropReason.POLICY);
  });

  test('(d) audit then allowed: the re-check caches FORWARDED, not AUDIT', () => {
    h.policy.clear();
    h.config.update({ flags: ConfigFlags.AUDIT });
    assert.equal(syn().retval, TC_ACT_OK);
    h.allow({ ...aEgress }, { ...bIngress });
    assert.equal(ack().retval, TC_ACT_OK);
    assert.equal(h.ct.get(flow)?.decision?.audit, false);
    const before = packets(VERDICT.FORWARDED);
    assert.equal(ack().retval, TC_ACT_OK);
    assert.equal(packets(VERDICT.FORWARDED) - before, 1n);
  });

  test('(d) redirect: a cached redirect still goes through proxy_redirect4 and fails closed the same way', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      h.policy.upsert({ ...aEgress, deny: false, proxyPort: port, cookie: 9 });
      // BPF_PROG_TEST_RUN refuses bpf_sk_assign, so no redirected flow can be created here: write the entry
      // a redirected flow has (proxy port kept, decision cached at the current revision).
      h.ct.set(flow, {
        lastSeenNs: process.hrtime.bigint(), srcIdentity: A.identity, proxyPort: port, flags: CtFlags.PROXY_REDIRECT,
        decision: { revision: h.revision.current(), proxyPort: port, obsPoint: 1, audit: false, nodeOrigin: false }, decIfindex: A.ifindex,
      });
      h.takeEvents();
      const r = ack();
      assert.equal(r.retval, TC_ACT_SHOT, 'the cached redirect reached bpf_sk_assign, as the full check would');
      const ev = h.oneEvent();
      assert.equal(ev.dropReason, DropReason.PROXY_SET_FAILED);
      assert.equal(ev.egress.outcome, 'redirected', 'the drop is reported by the full check, with both sides');
      assert.equal(ev.egress.cookie, 9);
      assert.equal(h.ct.get(flow)?.proxyPort, port, "a redirected flow's entry keeps its proxy port");
      // The redirect removed through the wrapper: the re-check forwards, and the cache forgets the port.
      h.policy.upsert({ ...aEgress, deny: false, proxyPort: 0, cookie: 5 });
      assert.equal(ack().retval, TC_ACT_OK);
      const ct = h.ct.get(flow);
      assert.equal(ct?.decision?.proxyPort, 0);
      assert.equal(ct?.proxyPort, 0);
      assert.equal(ack().mark, Mark.DECIDED);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('to_container: the cache is keyed by origin (node vs. forwarded)', () => {
    h.allow({ epId: B.epId, egress: false, identity: Identity.HOST, proto: Proto.UDP, port: 53 });
    const pkt = () => udp(NODE_IP, B.ip, 5000, 53);
    assert.equal(h.toContainer(pkt()).retval, TC_ACT_OK);
    const key = { saddr: NODE_IP, daddr: B.ip, sport: 5000, dport: 53, proto: Proto.UDP };
    const ct = h.ct.get(key);
    assert.deepEqual([ct?.decision?.obsPoint, ct?.decision?.nodeOrigin, ct?.decIfindex], [2, true, B.ifindex]);
    rawDelete({ epId: B.epId, egress: false, identity: Identity.HOST, proto: Proto.UDP, port: 53, portPrefixLen: 16 });
    assert.equal(h.toContainer(pkt()).retval, TC_ACT_OK, 'cached');
    assert.equal(h.toContainer(pkt(), { ingressIfindex: 7 }).retval, TC_ACT_SHOT, 'forwarded, not node-originated: full check');
    h.revision.bump();
    assert.equal(h.toContainer(pkt()).retval, TC_ACT_SHOT);
  });

  test('from_netdev: established flows from outside use the cache too', () => {
    h.allow({ epId: B.epId, egress: false, identity: Identity.WORLD, proto: Proto.TCP, port: 443 });
    assert.equal(h.fromNetdev(tcp(WORLD_IP, B.ip, 50000, 443, TCP_SYN)).retval, TC_ACT_OK);
    const ct = h.ct.get({ saddr: WORLD_IP, daddr: B.ip, sport: 50000, dport: 443, proto: Proto.TCP });
    assert.deepEqual([ct?.decision?.obsPoint, ct?.decIfindex], [3, 0]);
    rawDelete({ epId: B.epId, egress: false, identity: Identity.WORLD, proto: Proto.TCP, port: 443, portPrefixLen: 16 });
    assert.equal(h.fromNetdev(tcp(WORLD_IP, B.ip, 50000, 443, TCP_ACK)).retval, TC_ACT_OK, 'cached');
    h.revision.bump();
    assert.equal(h.fromNetdev(tcp(WORLD_IP, B.ip, 50000, 443, TCP_ACK)).retval, TC_ACT_SHOT);
  });

  test('FIN on the fast path still marks the flow closing', () => {
    assert.equal(syn().retval, TC_ACT_OK);
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80, TCP_FIN | TCP_ACK)).retval, TC_ACT_OK);
    assert.ok(h.ct.get(flow)!.flags & CtFlags.CLOSING);
  });
});

describe('policy revision', { skip }, () => {
  let h: Harness;
  before(() => {
    h = new Harness('polrev');
  });
  after(async () => {
    await h?.close();
  });

  test('bumps from several processes are atomic: none is lost', () => {
    const N = 1_000_000;
    // Three processes start bumping at the same instant (after tsx has loaded), so their bumps interleave.
    const script = `
      import { PolicyRevision } from ${JSON.stringify(path.join(root, 'src/datapath/index.ts'))};
      const rev = PolicyRevision.open(${JSON.stringify(h.pinRoot)});
      while (Date.now() < Number(process.env.START)) {}
      for (let i = 0; i < ${N}; i++) rev.bump();
      rev.close();`;
    const r0 = h.revision.current();
    const run = spawnSync('sh', ['-c', 'for i in 1 2 3; do "$NODE" --import tsx --input-type=module -e "$S" & done; wait'], {
      cwd: root, encoding: 'utf8', env: { ...process.env, NODE: process.execPath, S: script, START: String(Date.now() + 4000) },
    });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(h.revision.current() - r0, BigInt(3 * N));
  });

  test('PolicyRevision.open sees the same counter as the loaded object', () => {
    const other = PolicyRevision.open(h.pinRoot);
    try {
      const n = other.bump();
      assert.equal(h.revision.current(), n);
    } finally {
      other.close();
    }
    assert.throws(() => other.bump(), /closed/);
  });
});
