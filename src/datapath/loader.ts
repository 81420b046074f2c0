// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/loader
 * Loads a BPF object with its maps pinned by name under a pin root, and attaches/detaches its tc programs.
 *
 * Steps (libbpf-bootstrap's order, STYLE B6): mount bpffs if needed → mkdir the pin root → open (with
 * `pin_root_path`) → load (creates and pins the maps, or reuses the pinned ones: a restarted agent keeps its
 * policy, conntrack and events; conntrack pinned by the previous layout, mbr_ct_v1, is copied into mbr_ct_v2) →
 * write the runtime config (mbr_config_v1 is a map, not read-only data, so
 * audit mode can be toggled without a reload; it is written here, between load and attach) → attach. On any
 * failure the half-built object is closed (`try/finally`), and the error names the step and attach point.
 *
 * Programs attached with `bpf_tc_attach` hold their own reference: they keep enforcing after the loading
 * process exits or closes the object. Re-attaching with the same handle/priority replaces the program
 * atomically (`BPF_TC_F_REPLACE`), which is how a restarted agent swaps programs without a gap.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import {
  BPF_TC_EGRESS, BPF_TC_F_REPLACE, BPF_TC_INGRESS, clearLibbpfLog, errno, libbpf, libbpfLog, libc, objectOpenOpts,
  readTcOpts, strerror, tcHook, tcOpts, type Ptr,
} from './libbpf.ts';
import { BpfAttachError, BpffsError, BpfLoadError, InterfaceNotFoundError } from './errors.ts';
import { MAP_NAMES, PROGRAMS } from './layout.ts';
import { DEFAULT_PIN_ROOT } from './typed-map.ts';
import { ConfigMap, type DatapathConfig } from './config-map.ts';
import { IpcacheMap } from './ipcache-map.ts';
import { EndpointsMap } from './endpoints-map.ts';
import { PolicyMap } from './policy-map.ts';
import { CtMap, migrateCtV1 } from './ct-map.ts';
import { MetricsMap } from './metrics-map.ts';
import { ProxyOrigMap } from './proxy-orig-map.ts';
import { PolicyRevision } from './policy-revision.ts';

export { DEFAULT_PIN_ROOT };

/** Where bpffs is mounted when it is not (DESIGN §4: a fresh machine has the directory but no mount). */
export const BPFFS_ROOT = '/sys/fs/bpf';

/** tc filter handle and priority of every Membrane program (one filter per hook; priority 1 runs first). */
export const TC_HANDLE = 0x6d62;
export const TC_PRIORITY = 1;

const EEXIST = 17;
const ENOENT = 2;
const EINVAL = 22;
const ENODEV = 19;

/** A tc attach direction: ingress = packets the interface receives, egress = packets it sends. */
export type TcDirection = 'ingress' | 'egress';

/** Options of {@link load}. */
export interface LoadOptions {
  /** Path of the compiled object, e.g. build/bpf/bpf_lxc.o. */
  objectPath: string;
  /** Directory on bpffs where maps are pinned by name (created if missing). Default /sys/fs/bpf/membrane. */
  pinRoot?: string;
  /** Runtime config to write after load (fields not given keep their pinned values). */
  config?: Partial<DatapathConfig>;
}

/** A loaded object: program and map fds. The programs and maps outlive it once attached/pinned. */
export interface LoadedObject {
  readonly objectPath: string;
  readonly pinRoot: string;
  /** Program fds by name (the entry programs this object contains). */
  readonly programs: Readonly<Record<string, number>>;
  /** Map fds by name. */
  readonly maps: Readonly<Record<string, number>>;
  /** Maps whose pins existed before this load and were reused. */
  readonly reusedPinnedMaps: readonly string[];
  /** @returns the fd of a program @throws BpfLoadError when the object has no such program */
  program(name: string): number;
  /** @returns the fd of a map @throws BpfLoadError when the object has no such map */
  mapFd(name: string): number;
  /**
   * Typed views of the maps (they share the object's fds; do not use them after close()). The ipcache,
   * endpoints, policy and config views bump {@link LoadedObject.revision} after every write.
   */
  ipcache(): IpcacheMap;
  endpoints(): EndpointsMap;
  policy(): PolicyMap;
  ct(): CtMap;
  config(): ConfigMap;
  metrics(): MetricsMap;
  /** Original destinations of redirected UDP datagrams (mbr_origdst_v1; the datapath writes, the proxy reads). */
  proxyOrig(): ProxyOrigMap;
  /** The policy revision (mbr_polrev_v1), mmapped once per object and shared by its views; closed by close(). */
  revision(): PolicyRevision;
  /** Releases the object (bpf_object__close). Attached programs and pinned maps stay. Idempotent. */
  close(): void;
}

function mounts(): Array<{ target: string; fstype: string }> {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '))
    .map((f) => ({ target: f[1].replace(/\\040/g, ' '), fstype: f[2] }));
}

/**
 * Makes sure `pinRoot` is on a bpffs: mounts bpffs at /sys/fs/bpf when `pinRoot` is below it and nothing is
 * mounted there, then creates `pinRoot`.
 * @throws BpffsError
 */
export function ensureBpffs(pinRoot: string = DEFAULT_PIN_ROOT): void {
  const abs = path.resolve(pinRoot);
  const covering = mounts()
    .filter((m) => abs === m.target || abs.startsWith(m.target.endsWith('/') ? m.target : m.target + '/'))
    .sort((a, b) => b.target.length - a.target.length)[0];
  if (!covering || covering.fstype !== 'bpf') {
    if (!(abs === BPFFS_ROOT || abs.startsWith(BPFFS_ROOT + '/'))) {
      throw new BpffsError(`${abs} is not on a bpf filesystem (mount one with: mount -t bpf bpf <dir>)`, { step: 'check-bpffs' });
    }
    mkdirSync(BPFFS_ROOT, { recursive: true });
    if (libc().mount('bpf', BPFFS_ROOT, 'bpf', 0, null) !== 0) {
      const e = errno();
      throw new BpffsError(`cannot mount bpffs at ${BPFFS_ROOT}: ${strerror(e)}`, { step: 'mount', errno: e });
    }
  }
  try {
    mkdirSync(abs, { recursive: true });
  } catch (e) {
    throw new BpffsError(`cannot create pin root ${abs}: ${(e as Error).message}`, { step: 'mkdir' });
  }
}

/**
 * Loads a BPF object: maps pinned by name under `pinRoot` (reused when already pinned), config written.
 * @param opts object path, pin root, config
 * @returns the loaded object
 * @throws BpffsError | BpfLoadError (the message carries libbpf's log, e.g. the verifier's complaint)
 * @example
 * const lxc = load({ objectPath: 'build/bpf/bpf_lxc.o', pinRoot: '/sys/fs/bpf/membrane' });
 * attach('lxc1', 'ingress', lxc.program('mbr_from_container'));
 */
export function load(opts: LoadOptions): LoadedObject {
  const pinRoot = path.resolve(opts.pinRoot ?? DEFAULT_PIN_ROOT);
  const objectPath = path.resolve(opts.objectPath);
  if (!existsSync(objectPath)) throw new BpfLoadError(`${objectPath} does not exist (build it: node scripts/build-bpf.mjs)`, { step: 'open' });
  ensureBpffs(pinRoot);
  const preexisting = new Set(readdirSync(pinRoot));
  const bpf = libbpf();
  clearLibbpfLog();
  const { opts: openOpts, keep } = objectOpenOpts(pinRoot);
  const obj = bpf.bpf_object__open_file(objectPath, openOpts);
  void keep;
  if (obj === null || obj === 0n) {
    const e = errno();
    throw new BpfLoadError(`cannot open ${objectPath}: ${strerror(e)}`, { step: 'bpf_object__open_file', errno: e, detail: libbpfLog() });
  }
  let ok = false;
  try {
    const rc = bpf.bpf_object__load(obj);
    if (rc < 0) {
      throw new BpfLoadError(`cannot load ${path.basename(objectPath)}: ${strerror(rc)}`, { step: 'bpf_object__load', errno: -rc, detail: libbpfLog() });
    }
    const programs: Record<string, number> = {};
    for (const name of Object.values(PROGRAMS)) {
      const prog = bpf.bpf_object__find_program_by_name(obj, name);
      if (prog !== null && prog !== 0n) programs[name] = bpf.bpf_program__fd(prog);
    }
    const maps: Record<string, number> = {};
    for (const name of Object.values(MAP_NAMES)) {
      const fd = bpf.bpf_object__find_map_fd_by_name(obj, name);
      if (fd >= 0) maps[name] = fd;
    }
    const loaded = makeLoaded(obj, objectPath, pinRoot, programs, maps, Object.keys(maps).filter((m) => preexisting.has(m)));
    // A conntrack layout change (v1 → v2: the cached decision) keeps the flows of the previous version.
    if (maps[MAP_NAMES.ct] !== undefined && !preexisting.has(MAP_NAMES.ct) && preexisting.has('mbr_ct_v1')) migrateCtV1(pinRoot, loaded.ct());
    if (opts.config) loaded.config().update(opts.config);
    ok = true;
    return loaded;
  } finally {
    if (!ok) bpf.bpf_object__close(obj);
  }
}

function makeLoaded(obj: Ptr, objectPath: string, pinRoot: string, programs: Record<string, number>, maps: Record<string, number>, reused: string[]): LoadedObject {
  let closed = false;
  const mapFd = (name: string): number => {
    if (closed) throw new BpfLoadError('object is closed', { step: 'use', map: name });
    const fd = maps[name];
    if (fd === undefined) throw new BpfLoadError(`${path.basename(objectPath)} has no map ${name}`, { step: 'find_map', map: name });
    return fd;
  };
  let revision: PolicyRevision | undefined;
  const rev = (): PolicyRevision => {
    if (closed) throw new BpfLoadError('object is closed', { step: 'use', map: MAP_NAMES.polrev });
    revision ??= PolicyRevision.fromFd(mapFd(MAP_NAMES.polrev));
    return revision;
  };
  return {
    objectPath,
    pinRoot,
    programs,
    maps,
    reusedPinnedMaps: reused,
    program(name: string): number {
      const fd = programs[name];
      if (closed || fd === undefined) throw new BpfLoadError(`${path.basename(objectPath)} has no program ${name}${closed ? ' (closed)' : ''}`, { step: 'find_program' });
      return fd;
    },
    mapFd,
    ipcache: () => IpcacheMap.fromFd(mapFd(MAP_NAMES.ipcache), rev()),
    endpoints: () => EndpointsMap.fromFd(mapFd(MAP_NAMES.endpoints), rev()),
    policy: () => PolicyMap.fromFd(mapFd(MAP_NAMES.policy), rev()),
    ct: () => CtMap.fromFd(mapFd(MAP_NAMES.ct)),
    config: () => ConfigMap.fromFd(mapFd(MAP_NAMES.config), rev()),
    metrics: () => MetricsMap.fromFd(mapFd(MAP_NAMES.metrics)),
    proxyOrig: () => ProxyOrigMap.fromFd(mapFd(MAP_NAMES.proxyOrig)),
    revision: rev,
    close(): void {
      if (closed) return;
      revision?.close();
      closed = true;
      libbpf().bpf_object__close(obj);
    },
  };
}

function ifindexOf(ifname: string, step: string, direction?: TcDirection): number {
  const ifindex = libc().if_nametoindex(ifname);
  if (!ifindex) throw new InterfaceNotFoundError(`no interface named ${ifname}`, { step, attachPoint: direction ? `${ifname} ${direction}` : ifname });
  return ifindex;
}

const attachPointOf = (d: TcDirection) => (d === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS);

/**
 * Attaches a program to an interface's tc hook (creating the clsact qdisc if needed; an existing one is
 * fine), atomically replacing Membrane's previous program there.
 * @param ifname interface, e.g. `lxc1a2b`
 * @param direction `ingress` (packets the interface receives) or `egress`
 * @param programFd from {@link LoadedObject.program}
 * @returns the interface index and the kernel's program id
 * @throws InterfaceNotFoundError | BpfAttachError
 */
export function attach(ifname: string, direction: TcDirection, programFd: number): { ifindex: number; progId: number } {
  const ifindex = ifindexOf(ifname, 'if_nametoindex', direction);
  const where = `${ifname} ${direction}`;
  const bpf = libbpf();
  const hook = tcHook(ifindex, attachPointOf(direction));
  clearLibbpfLog();
  let rc = bpf.bpf_tc_hook_create(hook);
  if (rc < 0 && rc !== -EEXIST) {
    throw new BpfAttachError(strerror(rc), { step: 'bpf_tc_hook_create', errno: -rc, attachPoint: where, detail: libbpfLog() });
  }
  const o = tcOpts({ progFd: programFd, flags: BPF_TC_F_REPLACE, handle: TC_HANDLE, priority: TC_PRIORITY });
  rc = bpf.bpf_tc_attach(hook, o);
  if (rc < 0) throw new BpfAttachError(strerror(rc), { step: 'bpf_tc_attach', errno: -rc, attachPoint: where, detail: libbpfLog() });
  return { ifindex, progId: readTcOpts(o).progId };
}

/**
 * Removes Membrane's program from one or both tc hooks of an interface. Leaves the clsact qdisc (other
 * tools' filters may live there). A missing interface or program is not an error.
 * @returns whether a program was removed
 * @throws BpfAttachError
 */
export function detach(ifname: string, direction?: TcDirection): boolean {
  const ifindex = libc().if_nametoindex(ifname);
  if (!ifindex) return false;
  let removed = false;
  for (const d of direction ? [direction] : (['ingress', 'egress'] as const)) {
    clearLibbpfLog();
    const rc = libbpf().bpf_tc_detach(tcHook(ifindex, attachPointOf(d)), tcOpts({ handle: TC_HANDLE, priority: TC_PRIORITY }));
    if (rc === 0) removed = true;
    else if (rc !== -ENOENT && rc !== -EINVAL && rc !== -ENODEV) {
      throw new BpfAttachError(strerror(rc), { step: 'bpf_tc_detach', errno: -rc, attachPoint: `${ifname} ${d}`, detail: libbpfLog() });
    }
  }
  return removed;
}

/**
 * The program Membrane has attached to a hook.
 * @returns its kernel program id, or null when none
 * @throws InterfaceNotFoundError | BpfAttachError
 */
export function query(ifname: string, direction: TcDirection): number | null {
  const ifindex = ifindexOf(ifname, 'if_nametoindex', direction);
  const o = tcOpts({ handle: TC_HANDLE, priority: TC_PRIORITY });
  clearLibbpfLog();
  const rc = libbpf().bpf_tc_query(tcHook(ifindex, attachPointOf(direction)), o);
  if (rc === -ENOENT || rc === -EINVAL) return null;
  if (rc < 0) throw new BpfAttachError(strerror(rc), { step: 'bpf_tc_query', errno: -rc, attachPoint: `${ifname} ${direction}` });
  return readTcOpts(o).progId;
}

/**
 * Removes the clsact qdisc of an interface (and with it every tc filter, Membrane's or not). For interfaces
 * Membrane created itself (e.g. test veths); prefer {@link detach} elsewhere.
 */
export function destroyHooks(ifname: string): void {
  const ifindex = libc().if_nametoindex(ifname);
  if (!ifindex) return;
  const rc = libbpf().bpf_tc_hook_destroy(tcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS));
  if (rc < 0 && rc !== -ENOENT && rc !== -EINVAL) {
    throw new BpfAttachError(strerror(rc), { step: 'bpf_tc_hook_destroy', errno: -rc, attachPoint: `${ifname} ingress+egress` });
  }
}

/**
 * Unpins Membrane's maps under `pinRoot` (files named `mbr_*`) and removes the directory when it is empty
 * (`membrane cleanup`, tests). Maps still used by attached programs live on until those are detached.
 * @returns the names removed
 */
export function removePins(pinRoot: string): string[] {
  if (!existsSync(pinRoot)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(pinRoot)) {
    if (!name.startsWith('mbr_')) continue;
    unlinkSync(path.join(pinRoot, name));
    removed.push(name);
  }
  if (readdirSync(pinRoot).length === 0) rmdirSync(pinRoot);
  return removed;
}
