// SPDX-License-Identifier: Apache-2.0
// Restart safety (DESIGN §4): loading again with the same pin root reuses the pinned maps, so policy and
// conntrack survive an agent restart; other processes open the maps by pin.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Harness, privileged, buildObjects, A, B, root, tcp, Proto, TCP_ACK } from './harness.ts';
import { encodeCtKey } from '../../src/datapath/ct-map.ts';
import { load, removePins, PolicyMap, IpcacheMap, ConfigMap, CtMap, PROGRAMS, testRun, TC_ACT_OK, MapLayoutMismatchError, BpfMap } from '../../src/datapath/index.ts';

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

  test('an upgrade migrates conntrack from mbr_ct_v1 (16-byte entries) to mbr_ct_v2: replies keep passing', () => {
    buildObjects();
    const pinRoot = `/sys/fs/bpf/membrane-test-${process.pid}-ctmig`;
    removePins(pinRoot);
    const v1 = path.join(pinRoot, 'mbr_ct_v1');
    const mk = spawnSync('sh', ['-c', `mkdir -p ${pinRoot} && bpftool map create ${v1} type lru_hash key 16 value 16 entries 1024 name mbr_ct_v1`], { encoding: 'utf8' });
    assert.equal(mk.status, 0, mk.stderr);
    let lxc: ReturnType<typeof load> | undefined;
    try {
      const old = BpfMap.openPinned(v1, { name: 'mbr_ct_v1', type: 9, keySize: 16, valueSize: 16 });
      const key = { saddr: A.ip, daddr: B.ip, sport: 40000, dport: 80, proto: Proto.TCP };
      const value = Buffer.alloc(16);
      value.writeBigUInt64LE(process.hrtime.bigint(), 0);
      value.writeUInt32LE(A.identity, 8);
      old.update(encodeCtKey(key), value);
      old.close();

      lxc = load({ objectPath: path.join(root, 'build/bpf/bpf_lxc.o'), pinRoot });
      assert.ok(!existsSync(v1), 'the v1 pin is removed after the copy');
      const e = lxc.ct().get(key);
      assert.equal(e?.srcIdentity, A.identity);
      assert.equal(e?.decision, null, 'migrated entries carry no cached decision');
      // B's reply passes as a reply of the migrated flow (B's egress allows nothing).
      const both = 0x06;
      lxc.endpoints().set(B.ifindex, { epId: B.epId, identity: B.identity, flags: both });
      const r = testRun(lxc.program(PROGRAMS.fromContainer), { packet: tcp(B.ip, A.ip, 80, 40000, TCP_ACK), ingressIfindex: B.ifindex });
      assert.equal(r.retval, TC_ACT_OK);
    } finally {
      lxc?.close();
      removePins(pinRoot);
    }
  });
});
