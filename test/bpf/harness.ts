// SPDX-License-Identifier: Apache-2.0
// Shared set-up of the BPF scenario tests (test/bpf/*.test.ts): builds and loads both objects with their own
// pin root (/sys/fs/bpf/membrane-test-<pid>-<name>, removed by close()), crafts packets, runs the programs with
// BPF_PROG_TEST_RUN and reads the verdict events they emit. Not a test file itself.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  load, removePins, testRun, RingbufReader, PROGRAMS, MAP_NAMES, Proto, endpointFlags,
  type LoadedObject, type TestRunResult, type VerdictEvent, type IpcacheMap, type EndpointsMap, type PolicyMap,
  type CtMap, type ConfigMap, type MetricsMap, type PolicyEntryDesc, type PolicyRevision, type ProxyOrigMap,
} from '../../src/datapath/index.ts';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Skip reason for privileged tests, or false when they can run. Not root: skip, except under CI
 * (`CI=true`), where being unprivileged fails the run instead of silently skipping the datapath.
 */
export function privileged(): string | false {
  if (process.getuid?.() === 0) return false;
  if (process.env.CI === 'true') throw new Error('BPF tests need root (CAP_BPF, CAP_NET_ADMIN) and CI=true: refusing to skip');
  return 'needs root (CAP_BPF/CAP_NET_ADMIN) to load BPF programs';
}

/** Builds build/bpf/*.o if stale. */
export function buildObjects(): void {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts/build-bpf.mjs')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `build-bpf failed:\n${r.stderr}`);
}

/** Addresses and identities used by the scenarios. */
export const A = { ip: '10.200.0.10', ifindex: 100, epId: 11, identity: 1001 };
export const B = { ip: '10.200.0.20', ifindex: 1, epId: 22, identity: 1002 }; // ifindex 1 = lo: test-run needs a real device for skb->ifindex
export const NODE_IP = '10.200.0.1';
export const WORLD_IP = '192.0.2.7';

/** A loaded datapath with its maps, a ring buffer reader and helpers. */
export class Harness {
  readonly pinRoot: string;
  readonly lxc: LoadedObject;
  readonly host: LoadedObject;
  readonly ipcache: IpcacheMap;
  readonly endpoints: EndpointsMap;
  readonly policy: PolicyMap;
  readonly ct: CtMap;
  readonly config: ConfigMap;
  readonly metrics: MetricsMap;
  readonly proxyOrig: ProxyOrigMap;
  readonly revision: PolicyRevision;
  readonly events: RingbufReader;

  constructor(name: string) {
    buildObjects();
    this.pinRoot = `/sys/fs/bpf/membrane-test-${process.pid}-${name}`;
    removePins(this.pinRoot);
    this.lxc = load({ objectPath: path.join(root, 'build/bpf/bpf_lxc.o'), pinRoot: this.pinRoot });
    this.host = load({ objectPath: path.join(root, 'build/bpf/bpf_host.o'), pinRoot: this.pinRoot });
    this.ipcache = this.lxc.ipcache();
    this.endpoints = this.lxc.endpoints();
    this.policy = this.lxc.policy();
    this.ct = this.lxc.ct();
    this.config = this.lxc.config();
    this.metrics = this.lxc.metrics();
    this.proxyOrig = this.lxc.proxyOrig();
    this.revision = this.lxc.revision();
    this.events = RingbufReader.fromFd(this.lxc.mapFd(MAP_NAMES.events));
  }

  /**
   * Empties every map and sets the standard topology: endpoints A (veth ifindex 100) and B (ifindex 1), both
   * directions enforced unless told otherwise, ipcache for A, B and the node.
   */
  reset(o: { aFlags?: number; bFlags?: number } = {}): void {
    for (const m of [this.policy, this.ct, this.ipcache, this.endpoints, this.proxyOrig]) m.clear();
    this.metrics.clear();
    this.config.set(0, { flags: 0, eventsPerSec: 0, eventsBurst: 0, hostIdentity: 0 });
    const both = endpointFlags({ ingress: true, egress: true });
    this.endpoints.set(A.ifindex, { epId: A.epId, identity: A.identity, flags: o.aFlags ?? both });
    this.endpoints.set(B.ifindex, { epId: B.epId, identity: B.identity, flags: o.bFlags ?? both });
    this.ipcache.set({ addr: A.ip, prefixLen: 32 }, { identity: A.identity, epId: A.epId, ifindex: A.ifindex });
    this.ipcache.set({ addr: B.ip, prefixLen: 32 }, { identity: B.identity, epId: B.epId, ifindex: B.ifindex });
    this.ipcache.set({ addr: NODE_IP, prefixLen: 32 }, { identity: 1, epId: 0, ifindex: 0 });
    this.events.drain();
  }

  /** Adds policy entries (defaults: allow, no redirect, cookie 0, exact port). */
  allow(...entries: Array<Partial<PolicyEntryDesc> & Pick<PolicyEntryDesc, 'epId' | 'egress'>>): void {
    this.policy.upsertMany(entries.map((e) => ({ identity: 0, proto: 0, port: 0, portPrefixLen: e.port ? 16 : 0, deny: false, proxyPort: 0, cookie: 0, ...e })));
  }

  /** Runs mbr_from_container as if `packet` left endpoint A (or the given ingress ifindex). */
  fromContainer(packet: Buffer, ingressIfindex = A.ifindex, mark = 0): TestRunResult {
    return testRun(this.lxc.program(PROGRAMS.fromContainer), { packet, ingressIfindex, ifindex: 1, mark });
  }

  /** Runs mbr_to_container as if `packet` were sent into endpoint B (veth ifindex 1). */
  toContainer(packet: Buffer, o: { ingressIfindex?: number; mark?: number } = {}): TestRunResult {
    return testRun(this.lxc.program(PROGRAMS.toContainer), { packet, ifindex: B.ifindex, ingressIfindex: o.ingressIfindex ?? 0, mark: o.mark ?? 0 });
  }

  /** Runs mbr_from_netdev as if `packet` arrived on an uplink. */
  fromNetdev(packet: Buffer): TestRunResult {
    return testRun(this.host.program(PROGRAMS.fromNetdev), { packet, ifindex: 1, ingressIfindex: 1 });
  }

  /** Verdict events emitted since the last call. */
  takeEvents(): VerdictEvent[] {
    return this.events.drain();
  }

  /** Exactly one event since the last call. */
  oneEvent(): VerdictEvent {
    const evs = this.takeEvents();
    assert.equal(evs.length, 1, `expected one event, got ${JSON.stringify(evs, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
    return evs[0];
  }

  /** Releases the objects and removes the pins. */
  async close(): Promise<void> {
    await this.events.close();
    this.lxc.close();
    this.host.close();
    removePins(this.pinRoot);
  }
}

// ---- packets ---------------------------------------------------------------------------------------------

export const TCP_SYN = 0x02;
export const TCP_ACK = 0x10;
export const TCP_FIN = 0x01;

function ipBytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

/** Builds an IPv4 header + payload (no Ethernet). */
export function ipv4(saddr: string, daddr: string, proto: number, l4: Buffer): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(0x4000, 6); // DF
  ip[8] = 64;
  ip[9] = proto;
  Buffer.from(ipBytes(saddr)).copy(ip, 12);
  Buffer.from(ipBytes(daddr)).copy(ip, 16);
  ip.writeUInt16BE(csum(ip), 10);
  return Buffer.concat([ip, l4]);
}

/** Wraps an IPv4 packet in Ethernet (or another ethertype). */
export function ether(payload: Buffer, ethertype = 0x0800): Buffer {
  const eth = Buffer.alloc(14);
  Buffer.from([0x02, 0, 0, 0, 0, 0x02]).copy(eth, 0);
  Buffer.from([0x02, 0, 0, 0, 0, 0x01]).copy(eth, 6);
  eth.writeUInt16BE(ethertype, 12);
  return Buffer.concat([eth, payload]);
}

/** An Ethernet/IPv4/TCP frame. */
export function tcp(saddr: string, daddr: string, sport: number, dport: number, flags = TCP_SYN): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(1, 4);
  t[12] = 5 << 4;
  t[13] = flags;
  t.writeUInt16BE(65535, 14);
  return ether(ipv4(saddr, daddr, Proto.TCP, t));
}

/** An Ethernet/IPv4/UDP frame. */
export function udp(saddr: string, daddr: string, sport: number, dport: number): Buffer {
  const u = Buffer.alloc(12);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(12, 4);
  return ether(ipv4(saddr, daddr, Proto.UDP, u));
}

/** An Ethernet/IPv4/ICMP frame; `quote` is the IPv4 packet an error message quotes. */
export function icmp(saddr: string, daddr: string, type: number, o: { code?: number; id?: number; quote?: Buffer } = {}): Buffer {
  const h = Buffer.alloc(8);
  h[0] = type;
  h[1] = o.code ?? 0;
  h.writeUInt16BE(o.id ?? 0, 4);
  h.writeUInt16BE(1, 6);
  const body = o.quote ? Buffer.concat([h, o.quote.subarray(0, 28)]) : Buffer.concat([h, Buffer.alloc(8)]);
  body.writeUInt16BE(csum(body), 2);
  return ether(ipv4(saddr, daddr, Proto.ICMP, body));
}

/** The IPv4 part of an Ethernet frame (for ICMP error quotes). */
export function l3Of(frame: Buffer): Buffer {
  return frame.subarray(14);
}

export { Proto };
