// SPDX-License-Identifier: Apache-2.0
// Per-packet cost of the decision program (mbr_from_container) with BPF_PROG_TEST_RUN, repeat=100000, with
// 10,000 ipcache and 10,000 policy entries loaded (DESIGN §6; trial: ~72 ns). Needs root. An established flow
// normally takes the conntrack fast path (cached decision, no ipcache/policy lookups); a second established
// flow whose entry cannot cache (it belongs to another hook) shows the cost of the full check.
// Run: node --import tsx bench/datapath-prog.ts [--json]
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { load, removePins, testRun, endpointFlags, PROGRAMS, ConfigFlags, Proto, type PolicyEntryDesc } from '../src/datapath/index.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPEAT = 100_000;
const ROUNDS = 5;

function frame(saddr: number[], daddr: number[], sport: number, dport: number, flags: number): Buffer {
  const b = Buffer.alloc(14 + 20 + 20);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(40, 16);
  b[22] = 64;
  b[23] = Proto.TCP;
  Buffer.from(saddr).copy(b, 26);
  Buffer.from(daddr).copy(b, 30);
  b.writeUInt16BE(sport, 34);
  b.writeUInt16BE(dport, 36);
  b[46] = 5 << 4;
  b[47] = flags;
  return b;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('datapath-prog: needs root (BPF_PROG_TEST_RUN)\n');
    process.exit(2);
  }
  const build = spawnSync(process.execPath, [path.join(root, 'scripts/build-bpf.mjs')], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(1);
  const pinRoot = `/sys/fs/bpf/membrane-bench-${process.pid}`;
  const lxc = load({ objectPath: path.join(root, 'build/bpf/bpf_lxc.o'), pinRoot, config: { flags: 0, eventsPerSec: 0 } });
  try {
    const eps = lxc.endpoints();
    const ipc = lxc.ipcache();
    const pol = lxc.policy();
    const both = endpointFlags({ ingress: true, egress: true });
    eps.set(100, { epId: 1, identity: 50001, flags: both });
    eps.set(1, { epId: 2, identity: 50002, flags: both });
    ipc.set({ addr: '10.200.0.10', prefixLen: 32 }, { identity: 50001, epId: 1, ifindex: 100 });
    ipc.set({ addr: '10.200.0.20', prefixLen: 32 }, { identity: 50002, epId: 2, ifindex: 1 });

    // 10k distinct ipcache prefixes, half /32 in 10.100.0.0/16 and up, half /24 in 172.16.0.0/24 and up (none
    // covers the pods), and 10k policy entries over 100 endpoints.
    const t0 = process.hrtime.bigint();
    ipc.setMany(Array.from({ length: 10_000 }, (_, i) => {
      const j = i >> 1;
      return [
        i % 2 ? { addr: `10.${100 + (j >> 16)}.${(j >> 8) & 255}.${j & 255}`, prefixLen: 32 } : { addr: `172.${16 + (j >> 8)}.${j & 255}.0`, prefixLen: 24 },
        { identity: 60000 + i, epId: 0, ifindex: 0 },
      ] as const;
    }));
    const t1 = process.hrtime.bigint();
    const ipcacheEntries = ipc.entries().length;
    const entries: PolicyEntryDesc[] = Array.from({ length: 10_000 }, (_, i) => ({
      epId: 1 + (i % 100), identity: 60000 + i, egress: i % 2 === 0, proto: Proto.TCP, port: 1000 + (i % 5000), portPrefixLen: 16, deny: false, proxyPort: 0, cookie: i,
    }));
    entries.push(
      { epId: 1, identity: 50002, egress: true, proto: Proto.TCP, port: 80, portPrefixLen: 16, deny: false, proxyPort: 0, cookie: 1 },
      { epId: 2, identity: 50001, egress: false, proto: Proto.TCP, port: 80, portPrefixLen: 16, deny: false, proxyPort: 0, cookie: 2 },
    );
    pol.upsertMany(entries);
    const t2 = process.hrtime.bigint();

    const prog = lxc.program(PROGRAMS.fromContainer);
    const A = [10, 200, 0, 10];
    const B = [10, 200, 0, 20];
    const open = testRun(prog, { packet: frame(A, B, 40000, 80, 0x02), ingressIfindex: 100 });
    if (open.retval !== 0) throw new Error(`allow setup failed: retval ${open.retval}`);
    // A second established flow whose entry belongs to another hook (dec_ifindex 999): every packet takes the
    // full check (ipcache + both sides' policy), as every established packet did before the fast path.
    lxc.ct().set(
      { saddr: '10.200.0.10', daddr: '10.200.0.20', sport: 40002, dport: 80, proto: Proto.TCP },
      { lastSeenNs: process.hrtime.bigint(), srcIdentity: 50001, proxyPort: 0, flags: 0, decision: null, decIfindex: 999 },
    );

    const cases: Array<[string, Buffer, () => void]> = [
      ['allow, established TCP (ACK), fast path (cached decision)', frame(A, B, 40000, 80, 0x10), () => {}],
      ['allow, established TCP (ACK), full check, both sides evaluated', frame(A, B, 40002, 80, 0x10), () => {}],
      ['default deny (drop, events rate-limited)', frame(A, B, 40001, 81, 0x10), () => lxc.config().update({ eventsPerSec: 1, eventsBurst: 1 })],
    ];
    const results: Array<{ case: string; nsPerPacket: number; min: number; max: number }> = [];
    for (const [name, pkt, prep] of cases) {
      prep();
      const runs: number[] = [];
      for (let r = 0; r < ROUNDS; r++) runs.push(testRun(prog, { packet: pkt, ingressIfindex: 100, repeat: REPEAT }).durationNs);
      results.push({ case: name, nsPerPacket: median(runs), min: Math.min(...runs), max: Math.max(...runs) });
    }
    lxc.config().update({ flags: ConfigFlags.NO_FLOW_EVENTS, eventsPerSec: 0 });

    if (process.argv.includes('--json')) {
      process.stdout.write(JSON.stringify({ repeat: REPEAT, rounds: ROUNDS, ipcacheEntries, policyEntries: entries.length, results,
        ipcacheBatchInsertMs: Number(t1 - t0) / 1e6, policyBatchInsertMs: Number(t2 - t1) / 1e6 }) + '\n');
    } else {
      process.stdout.write(`BPF_PROG_TEST_RUN mbr_from_container, repeat=${REPEAT}, median of ${ROUNDS}; ${ipcacheEntries} ipcache + ${entries.length} policy entries (counted in the maps)\n`);
      for (const r of results) process.stdout.write(`  ${r.case}: ${r.nsPerPacket} ns/packet (min ${r.min}, max ${r.max})\n`);
      process.stdout.write(`  map fill: ipcache 10k in ${(Number(t1 - t0) / 1e6).toFixed(1)} ms, policy 10k in ${(Number(t2 - t1) / 1e6).toFixed(1)} ms (batched)\n`);
    }
  } finally {
    lxc.close();
    removePins(pinRoot);
  }
}

await main();
