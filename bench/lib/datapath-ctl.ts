// SPDX-License-Identifier: Apache-2.0
/**
 * @module bench/lib/datapath-ctl
 *
 * The part of bench/datapath.ts that must run inside the node namespace (tc attach resolves
 * interface names in the caller's network namespace). Started as
 * `nsenter --net=/run/netns/NODE node --import tsx bench/lib/datapath-ctl.ts CMD SPEC_JSON`;
 * nsenter keeps the mount namespace, so /sys/fs/bpf stays visible.
 *
 * - `serve`: the same as below, but loads once and then attaches/detaches on commands read from
 *   stdin (what bench/datapath.ts uses, so a switch takes milliseconds);
 * - `attach`: loads the object (maps pinned under `spec.pinRoot`, reused when pinned), fills the
 *   maps when `spec.fill` (both pods in the endpoints map and ipcache, 10,000 other ipcache
 *   prefixes, the benchmark flow's allow entries on both sides plus 10,000 other policy entries),
 *   attaches mbr_from_container on ingress and mbr_to_container on egress of both pods' node-side
 *   veths, checks with tc query that they are there, and exits (the attached programs live on).
 * - `detach`: removes the programs and the clsact qdisc of both veths (the bench made them) and
 *   checks that nothing is left.
 *
 * Prints one JSON line with what it did.
 */
import { attach, destroyHooks, endpointFlags, load, query, PROGRAMS, Proto, type PolicyEntryDesc } from '../../src/datapath/index.ts';

/** What the parent passes. */
export interface CtlSpec {
  objectPath: string;
  pinRoot: string;
  /** Fill the maps (first attach only; the pinned maps keep the entries). */
  fill?: boolean;
  port: number;
  client: { ifname: string; ip: string; epId: number; identity: number };
  server: { ifname: string; ip: string; epId: number; identity: number };
  /** Extra ipcache prefixes and policy entries (default 10,000 each). */
  extraIpcache?: number;
  extraPolicy?: number;
  /** mbr_config_v1 flags (ConfigFlags; default 0: per-flow events on, as the agent runs). */
  configFlags?: number;
}

function fillMaps(lxc: ReturnType<typeof load>, spec: CtlSpec, ifindex: { client: number; server: number }): { ipcache: number; policy: number; ms: number } {
  const t0 = process.hrtime.bigint();
  const both = endpointFlags({ ingress: true, egress: true });
  const { client, server } = spec;
  lxc.endpoints().set(ifindex.client, { epId: client.epId, identity: client.identity, flags: both });
  lxc.endpoints().set(ifindex.server, { epId: server.epId, identity: server.identity, flags: both });
  const ipc = lxc.ipcache();
  ipc.set({ addr: client.ip, prefixLen: 32 }, { identity: client.identity, epId: client.epId, ifindex: ifindex.client });
  ipc.set({ addr: server.ip, prefixLen: 32 }, { identity: server.identity, epId: server.epId, ifindex: ifindex.server });
  const nIpc = spec.extraIpcache ?? 10_000;
  // Distinct prefixes, half /32 in 10.100.0.0/16 and up, half /24 in 172.16.0.0/24 and up: none covers the
  // pods (10.200.1.0/24).
  ipc.setMany(
    Array.from({ length: nIpc }, (_, i) => {
      const j = i >> 1;
      return [
        i % 2 ? { addr: `10.${100 + (j >> 16)}.${(j >> 8) & 255}.${j & 255}`, prefixLen: 32 } : { addr: `172.${16 + (j >> 8)}.${j & 255}.0`, prefixLen: 24 },
        { identity: 60_000 + i, epId: 0, ifindex: 0 },
      ] as const;
    }),
  );
  const nPol = spec.extraPolicy ?? 10_000;
  // Other identities (60000+) and ports, over 100 endpoint ids including the two pods', both directions.
  const entries: PolicyEntryDesc[] = Array.from({ length: nPol }, (_, i) => ({
    epId: 1 + (i % 100),
    identity: 60_000 + i,
    egress: i % 2 === 0,
    proto: Proto.TCP,
    port: 1000 + (i % 5000),
    portPrefixLen: 16,
    deny: false,
    proxyPort: 0,
    cookie: 100 + i,
  }));
  // The benchmark flow: client egress to the server's identity, server ingress from the client's.
  entries.push(
    { epId: client.epId, identity: server.identity, egress: true, proto: Proto.TCP, port: spec.port, portPrefixLen: 16, deny: false, proxyPort: 0, cookie: 1 },
    { epId: server.epId, identity: client.identity, egress: false, proto: Proto.TCP, port: spec.port, portPrefixLen: 16, deny: false, proxyPort: 0, cookie: 2 },
  );
  lxc.policy().upsertMany(entries);
  return { ipcache: nIpc + 2, policy: entries.length, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

type Loaded = ReturnType<typeof load>;

/** Attaches both programs to both veths and checks with tc query. @returns program ids and the veths' ifindexes */
function attachAll(lxc: Loaded, spec: CtlSpec): { ifindex: { client: number; server: number }; progIds: Record<string, { ingress: number; egress: number }> } {
  const ifindex = { client: 0, server: 0 };
  const progIds: Record<string, { ingress: number; egress: number }> = {};
  for (const [role, ifname] of [['client', spec.client.ifname], ['server', spec.server.ifname]] as const) {
    const ing = attach(ifname, 'ingress', lxc.program(PROGRAMS.fromContainer));
    const eg = attach(ifname, 'egress', lxc.program(PROGRAMS.toContainer));
    ifindex[role] = ing.ifindex;
    const qi = query(ifname, 'ingress');
    const qe = query(ifname, 'egress');
    if (qi !== ing.progId || qe !== eg.progId) throw new Error(`tc query on ${ifname}: ingress ${qi} egress ${qe}, attached ${ing.progId}/${eg.progId}`);
    progIds[ifname] = { ingress: ing.progId, egress: eg.progId };
  }
  return { ifindex, progIds };
}

/** Removes the programs and the clsact qdisc of both veths (the bench made them) and checks nothing is left. */
function detachAll(spec: CtlSpec): void {
  const ifnames = [spec.client.ifname, spec.server.ifname];
  for (const ifname of ifnames) destroyHooks(ifname);
  const left: string[] = [];
  for (const ifname of ifnames) for (const d of ['ingress', 'egress'] as const) if (query(ifname, d) !== null) left.push(`${ifname} ${d}`);
  if (left.length) throw new Error(`programs still attached after detach: ${left.join(', ')}`);
}

function counts(lxc: Loaded): { ipcache: number; policy: number; endpoints: number } {
  return { ipcache: lxc.ipcache().entries().length, policy: lxc.policy().entries().length, endpoints: lxc.endpoints().entries().length };
}

/**
 * `serve`: loads the object once, then answers one JSON line per command line on stdin:
 * `{"cmd":"attach","fill":true}` | `{"cmd":"attach"}` | `{"cmd":"detach"}` | `{"cmd":"exit"}`,
 * so switching configurations takes milliseconds and no process starts or exits between a
 * switch and a measurement. Prints `{"ready":true}` once loaded.
 */
async function serve(spec: CtlSpec): Promise<void> {
  const lxc = load({ objectPath: spec.objectPath, pinRoot: spec.pinRoot, config: { flags: spec.configFlags ?? 0, eventsPerSec: 0, eventsBurst: 0 } });
  const reply = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
  reply({ ready: true });
  const { createInterface } = await import('node:readline');
  try {
    for await (const line of createInterface({ input: process.stdin })) {
      if (!line.trim()) continue;
      try {
        const req = JSON.parse(line) as { cmd: string; fill?: boolean };
        if (req.cmd === 'attach') {
          const a = attachAll(lxc, spec);
          const filled = req.fill ? fillMaps(lxc, spec, a.ifindex) : undefined;
          reply({ ok: true, ...a, filled, counts: req.fill ? counts(lxc) : undefined });
        } else if (req.cmd === 'detach') {
          detachAll(spec);
          reply({ ok: true });
        } else if (req.cmd === 'exit') {
          reply({ ok: true });
          break;
        } else reply({ ok: false, error: `unknown command ${req.cmd}` });
      } catch (e) {
        reply({ ok: false, error: (e as Error).stack ?? String(e) });
      }
    }
  } finally {
    lxc.close();
  }
}

async function main(): Promise<void> {
  const [cmd, json] = process.argv.slice(2);
  if (!cmd || !json) throw new Error('usage: datapath-ctl.ts serve|attach|detach SPEC_JSON');
  const spec = JSON.parse(json) as CtlSpec;
  if (cmd === 'serve') await serve(spec);
  else if (cmd === 'attach') {
    const lxc = load({ objectPath: spec.objectPath, pinRoot: spec.pinRoot, config: { flags: spec.configFlags ?? 0, eventsPerSec: 0, eventsBurst: 0 } });
    try {
      const a = attachAll(lxc, spec);
      const filled = spec.fill ? fillMaps(lxc, spec, a.ifindex) : undefined;
      process.stdout.write(JSON.stringify({ ok: true, ...a, filled, counts: counts(lxc) }) + '\n');
    } finally {
      lxc.close();
    }
  } else if (cmd === 'detach') {
    detachAll(spec);
    process.stdout.write(JSON.stringify({ ok: true }) + '\n');
  } else throw new Error(`unknown command ${cmd}`);
}

try {
  await main();
} catch (e) {
  process.stderr.write(`datapath-ctl: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
