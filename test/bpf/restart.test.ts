// SPDX-License-Identifier: Apache-2.0
// Restart safety (DESIGN §4): loading again with the same pin root reuses the pinned maps, so policy and
// conntrack survive an agent restart; other processes open the maps by pin.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Harness, privileged, A, B, root, tcp, Proto } from './harness.ts';
import { load, PolicyMap, IpcacheMap, ConfigMap, CtMap, PROGRAMS, testRun, TC_ACT_OK, MapLayoutMismatchError, BpfMap } from '../../src/datapath/index.ts';

const skip = privileged();

describe('pinned maps across reloads', { skip }, () => {
  let h: Harness | undefined;
  after(async () => {
    await h?.close();
  });

  test('a second load reuses every pinned map and sees the same entries', () => {
    h = new Harness('restart');
    h.reset({ bFlags: 0 });
    h.allow({ epId: A.epId, egress: true, identity: B.identity, proto: Proto.TCP, port: 80 });
    assert.equal(h.fromContainer(tcp(A.ip, B.ip, 40000, 80)).retval, TC_ACT_OK);

    const again = load({ objectPath: path.join(root, 'build/bpf/bpf_lxc.o'), pinRoot: h.pinRoot, config: { eventsPerSec: 1000 } });
    try {
      assert.deepEqual([...again.reusedPinnedMaps].sort(), Object.keys(again.maps).sort());
      // The new program instance enforces the old policy and knows the old flow.
      const r = testRun(again.program(PROGRAMS.fromContainer), { packet: tcp(A.ip, B.ip, 40001, 80), ingressIfindex: A.ifindex });
      assert.equal(r.retval, TC_ACT_OK);
      assert.ok(again.ct().get({ saddr: A.ip, daddr: B.ip, sport: 40000, dport: 80, proto: Proto.TCP }));
      // The config written at load is visible through the first object's fd (same map).
      assert.equal(h.config.read().eventsPerSec, 1000);
    } finally {
      again.close();
    }
  });

  test('other processes open the maps by pin, with a layout check', () => {
    assert.ok(h);
    const pm = PolicyMap.open(h.pinRoot);
    const ipc = IpcacheMap.open(h.pinRoot);
    const cfg = ConfigMap.open(h.pinRoot);
    const ct = CtMap.open(h.pinRoot);
    try {
      assert.equal(pm.list(A.epId).length, 1);
      assert.equal(ipc.get({ addr: B.ip, prefixLen: 32 })?.identity, B.identity);
      assert.equal(cfg.read().eventsPerSec, 1000);
      assert.ok(ct.entries().length >= 1);
      assert.throws(() => BpfMap.openPinned(path.join(h!.pinRoot, 'mbr_policy_v1'), { ...PolicyMap.spec, valueSize: 12 }), MapLayoutMismatchError);
    } finally {
      pm.close();
      ipc.close();
      cfg.close();
      ct.close();
    }
  });
});
