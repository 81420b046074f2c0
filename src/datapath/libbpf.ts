// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/libbpf
 * "libbpf-ts": koffi bindings to libbpf.so.1 (libbpf 1.1) and the few libc calls the datapath needs.
 *
 * Only src/datapath imports this module. Functions here are thin: they return libbpf's/libc's raw result
 * (libbpf 1.x returns `-errno`; libc returns -1 and sets errno, read with {@link errno}); callers in
 * loader.ts, map.ts, ringbuf.ts and test-run.ts turn failures into `DatapathError`s.
 *
 * libbpf option structs are built by hand in Buffers (the layouts below are libbpf 1.1's on x86_64, the only
 * target for now); pointers inside them are raw addresses from `koffi.address()`, so the Buffers they point to
 * must stay referenced until the call returns — every builder returns the Buffers it points into as `keep`.
 *
 * The libraries are loaded on first use, so importing this module on a machine without libbpf does not fail;
 * the first call throws {@link LibbpfUnavailableError}.
 */
import koffi, { type LibraryHandle } from 'koffi';
import { LibbpfUnavailableError } from './errors.ts';

/** A native pointer as koffi 3 returns it (a bigint address), or null. */
export type Ptr = bigint;

/** Raw libbpf entry points (names and argument order as in libbpf.h / bpf.h). */
export interface LibbpfApi {
  bpf_object__open_file(path: string, opts: Buffer | null): Ptr | null;
  bpf_object__load(obj: Ptr): number;
  bpf_object__close(obj: Ptr): void;
  bpf_object__find_program_by_name(obj: Ptr, name: string): Ptr | null;
  bpf_program__fd(prog: Ptr): number;
  bpf_object__find_map_fd_by_name(obj: Ptr, name: string): number;
  bpf_tc_hook_create(hook: Buffer): number;
  bpf_tc_hook_destroy(hook: Buffer): number;
  bpf_tc_attach(hook: Buffer, opts: Buffer): number;
  bpf_tc_detach(hook: Buffer, opts: Buffer): number;
  bpf_tc_query(hook: Buffer, opts: Buffer): number;
  bpf_map_update_elem(fd: number, key: Buffer, value: Buffer, flags: bigint): number;
  bpf_map_lookup_elem(fd: number, key: Buffer, value: Buffer): number;
  bpf_map_delete_elem(fd: number, key: Buffer): number;
  bpf_map_get_next_key(fd: number, key: Buffer | null, nextKey: Buffer): number;
  bpf_map_update_batch(fd: number, keys: Buffer, values: Buffer, count: Buffer, opts: Buffer): number;
  bpf_map_lookup_batch(fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: Buffer, opts: Buffer): number;
  bpf_map_delete_batch(fd: number, keys: Buffer, count: Buffer, opts: Buffer): number;
  bpf_obj_get(path: string): number;
  bpf_obj_pin(fd: number, path: string): number;
  bpf_obj_get_info_by_fd(fd: number, info: Buffer, infoLen: Buffer): number;
  bpf_prog_test_run_opts(progFd: number, opts: Buffer): number;
  libbpf_strerror(err: number, buf: Buffer, size: number): number;
}

/** Raw libc entry points. */
export interface LibcApi {
  if_nametoindex(name: string): number;
  mount(source: string, target: string, fstype: string, flags: number, data: null): number;
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrLen: number): number;
  recvmmsg(fd: number, msgvec: Buffer, vlen: number, flags: number, timeout: null): number;
  /** `long syscall(long n, ...)`: variadic, each argument after `n` preceded by its C type (koffi). */
  syscall(n: number, ...typedArgs: unknown[]): number;
  listen(fd: number, backlog: number): number;
  close(fd: number): number;
  mmap(addr: null, len: number, prot: number, flags: number, fd: number, offset: number): Ptr;
  munmap(addr: Ptr, len: number): number;
  epoll_create1(flags: number): number;
  epoll_ctl(epfd: number, op: number, fd: number, event: Buffer): number;
  epoll_wait: ((epfd: number, events: Buffer, maxEvents: number, timeoutMs: number) => number) & {
    async(epfd: number, events: Buffer, maxEvents: number, timeoutMs: number, cb: (err: unknown, res: number) => void): void;
  };
}

interface Loaded {
  bpf: LibbpfApi;
  libc: LibcApi;
}

let loaded: Loaded | undefined;
const logLines: string[] = [];
const LOG_KEEP = 400;
// Referenced forever: libbpf keeps calling the print callback.
let printCallback: unknown;

function load(): Loaded {
  if (loaded) return loaded;
  let lib: LibraryHandle;
  let c: LibraryHandle;
  try {
    lib = koffi.load('libbpf.so.1');
    c = koffi.load('libc.so.6');
  } catch (e) {
    throw new LibbpfUnavailableError(`cannot load libbpf.so.1/libc.so.6 (install libbpf1): ${(e as Error).message}`, { step: 'dlopen' });
  }
  koffi.opaque('bpf_object');
  koffi.opaque('bpf_program');
  const f = (h: LibraryHandle, decl: string) => h.func(decl) as any;
  const bpf: LibbpfApi = {
    bpf_object__open_file: f(lib, 'bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
    bpf_object__load: f(lib, 'int bpf_object__load(bpf_object *obj)'),
    bpf_object__close: f(lib, 'void bpf_object__close(bpf_object *obj)'),
    bpf_object__find_program_by_name: f(lib, 'bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)'),
    bpf_program__fd: f(lib, 'int bpf_program__fd(const bpf_program *prog)'),
    bpf_object__find_map_fd_by_name: f(lib, 'int bpf_object__find_map_fd_by_name(const bpf_object *obj, const char *name)'),
    bpf_tc_hook_create: f(lib, 'int bpf_tc_hook_create(void *hook)'),
    bpf_tc_hook_destroy: f(lib, 'int bpf_tc_hook_destroy(void *hook)'),
    bpf_tc_attach: f(lib, 'int bpf_tc_attach(const void *hook, void *opts)'),
    bpf_tc_detach: f(lib, 'int bpf_tc_detach(const void *hook, const void *opts)'),
    bpf_tc_query: f(lib, 'int bpf_tc_query(const void *hook, void *opts)'),
    bpf_map_update_elem: f(lib, 'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    bpf_map_lookup_elem: f(lib, 'int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    bpf_map_delete_elem: f(lib, 'int bpf_map_delete_elem(int fd, const void *key)'),
    bpf_map_get_next_key: f(lib, 'int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
    bpf_map_update_batch: f(lib, 'int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)'),
    bpf_map_lookup_batch: f(lib, 'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)'),
    bpf_map_delete_batch: f(lib, 'int bpf_map_delete_batch(int fd, const void *keys, void *count, const void *opts)'),
    bpf_obj_get: f(lib, 'int bpf_obj_get(const char *pathname)'),
    bpf_obj_pin: f(lib, 'int bpf_obj_pin(int fd, const char *pathname)'),
    bpf_obj_get_info_by_fd: f(lib, 'int bpf_obj_get_info_by_fd(int fd, void *info, void *info_len)'),
    bpf_prog_test_run_opts: f(lib, 'int bpf_prog_test_run_opts(int prog_fd, void *opts)'),
    libbpf_strerror: f(lib, 'int libbpf_strerror(int err, char *buf, size_t size)'),
  };
  const libc: LibcApi = {
    if_nametoindex: f(c, 'unsigned int if_nametoindex(const char *ifname)'),
    mount: f(c, 'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)'),
    socket: f(c, 'int socket(int domain, int type, int protocol)'),
    setsockopt: f(c, 'int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)'),
    bind: f(c, 'int bind(int fd, const void *addr, uint32_t addrlen)'),
    send: f(c, 'intptr_t send(int fd, const void *buf, size_t len, int flags)'),
    sendto: f(c, 'intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
    recvmmsg: f(c, 'int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)'),
    syscall: f(c, 'long syscall(long n, ...)'),
    listen: f(c, 'int listen(int fd, int backlog)'),
    close: f(c, 'int close(int fd)'),
    mmap: f(c, 'void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: f(c, 'int munmap(void *addr, size_t length)'),
    epoll_create1: f(c, 'int epoll_create1(int flags)'),
    epoll_ctl: f(c, 'int epoll_ctl(int epfd, int op, int fd, void *event)'),
    epoll_wait: f(c, 'int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
  };
  // Capture libbpf's log (warnings such as verifier output) instead of letting it print to stderr; errors
  // include the lines logged during the failed step. MBR_LIBBPF_DEBUG=1 also echoes every line to stderr.
  try {
    const vsnprintf = c.func('int vsnprintf(char *buf, size_t size, const char *fmt, void *ap)') as any;
    const printProto = koffi.proto('int mbr_libbpf_print_fn(int level, const char *fmt, void *ap)');
    const setPrint = lib.func('void *libbpf_set_print(mbr_libbpf_print_fn *fn)') as any;
    const line = Buffer.alloc(4096);
    const debug = process.env.MBR_LIBBPF_DEBUG === '1';
    printCallback = koffi.register((level: number, fmt: string, ap: Ptr) => {
      const n = vsnprintf(line, line.length, fmt, ap);
      const text = line.subarray(0, Math.max(0, Math.min(n, line.length - 1))).toString('utf8').replace(/\n$/, '');
      if (level <= 1) {
        logLines.push(text);
        if (logLines.length > LOG_KEEP) logLines.splice(0, logLines.length - LOG_KEEP);
      }
      if (debug) process.stderr.write(`libbpf: ${text}\n`);
      return 0;
    }, koffi.pointer(printProto));
    setPrint(printCallback);
  } catch {
    // Keep libbpf's default stderr printer.
  }
  loaded = { bpf, libc };
  return loaded;
}

/** The libbpf bindings (loads libbpf.so.1 on first use). @throws LibbpfUnavailableError */
export function libbpf(): LibbpfApi {
  return load().bpf;
}

/** The libc bindings (loads libc.so.6 on first use). @throws LibbpfUnavailableError */
export function libc(): LibcApi {
  return load().libc;
}

/** errno of the calling thread after the last libc call. */
export function errno(): number {
  return koffi.errno();
}

/** Text for a (positive or negative) errno or libbpf error code, e.g. `Operation not permitted`. */
export function strerror(err: number): string {
  const buf = Buffer.alloc(256);
  libbpf().libbpf_strerror(-Math.abs(err), buf, buf.length);
  const end = buf.indexOf(0);
  return buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
}

/** Marks the start of a step: forgets previously captured libbpf log lines. */
export function clearLibbpfLog(): void {
  logLines.length = 0;
}

/** The libbpf log lines captured since the last {@link clearLibbpfLog} (at most the last 400), joined. */
export function libbpfLog(maxLines = 60): string {
  return logLines.slice(-maxLines).join('\n');
}

/** A NUL-terminated copy of `s` (for pointers inside option structs). */
export function cString(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

/** Native address of a Buffer's bytes. The Buffer must stay referenced while the address is used. */
export function addressOf(buf: Buffer): bigint {
  return koffi.address(buf) as bigint;
}

/** An ArrayBuffer over native memory (mmap). */
export function viewOf(ptr: Ptr, len: number): ArrayBuffer {
  return koffi.view(ptr, len);
}

/**
 * `struct bpf_object_open_opts` (libbpf 1.1, 80 bytes):
 * `size_t sz @0; const char *object_name @8; bool relaxed_maps @16; const char *pin_root_path @24;
 *  __u32 :32 @32; const char *kconfig @40; const char *btf_custom_path @48; char *kernel_log_buf @56;
 *  size_t kernel_log_size @64; __u32 kernel_log_level @72`.
 */
export function objectOpenOpts(pinRootPath: string): { opts: Buffer; keep: Buffer[] } {
  const opts = Buffer.alloc(80);
  const pin = cString(pinRootPath);
  opts.writeBigUInt64LE(80n, 0);
  opts.writeBigUInt64LE(addressOf(pin), 24);
  return { opts, keep: [pin] };
}

/** `enum bpf_tc_attach_point`. */
export const BPF_TC_INGRESS = 1;
export const BPF_TC_EGRESS = 2;
/** `bpf_tc_opts.flags`: replace an existing filter with the same handle and priority. */
export const BPF_TC_F_REPLACE = 1;

/** `struct bpf_tc_hook` (24 bytes): `size_t sz @0; int ifindex @8; enum attach_point @12; __u32 parent @16`. */
export function tcHook(ifindex: number, attachPoint: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(24n, 0);
  b.writeInt32LE(ifindex, 8);
  b.writeInt32LE(attachPoint, 12);
  return b;
}

/** Fields of `struct bpf_tc_opts`. */
export interface TcOpts {
  progFd: number;
  flags: number;
  progId: number;
  handle: number;
  priority: number;
}

/** `struct bpf_tc_opts` (32 bytes): `size_t sz @0; int prog_fd @8; __u32 flags @12, prog_id @16, handle @20, priority @24`. */
export function tcOpts(o: Partial<TcOpts>): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(32n, 0);
  b.writeInt32LE(o.progFd ?? 0, 8);
  b.writeUInt32LE(o.flags ?? 0, 12);
  b.writeUInt32LE(o.progId ?? 0, 16);
  b.writeUInt32LE(o.handle ?? 0, 20);
  b.writeUInt32LE(o.priority ?? 0, 24);
  return b;
}

/** Reads back a `struct bpf_tc_opts` filled by bpf_tc_attach/bpf_tc_query. */
export function readTcOpts(b: Buffer): TcOpts {
  return {
    progFd: b.readInt32LE(8),
    flags: b.readUInt32LE(12),
    progId: b.readUInt32LE(16),
    handle: b.readUInt32LE(20),
    priority: b.readUInt32LE(24),
  };
}

/** `struct bpf_map_batch_opts` (24 bytes): `size_t sz @0; __u64 elem_flags @8; __u64 flags @16`. */
export function mapBatchOpts(elemFlags = 0n): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(24n, 0);
  b.writeBigUInt64LE(elemFlags, 8);
  return b;
}

/** Input of {@link testRunOpts}. */
export interface TestRunInput {
  dataIn: Buffer;
  dataOut?: Buffer;
  ctxIn?: Buffer;
  ctxOut?: Buffer;
  repeat?: number;
}

/**
 * `struct bpf_test_run_opts` (80 bytes): `size_t sz @0; const void *data_in @8; void *data_out @16;
 * __u32 data_size_in @24, data_size_out @28; const void *ctx_in @32; void *ctx_out @40; __u32 ctx_size_in @48,
 * ctx_size_out @52, retval @56; int repeat @60; __u32 duration @64, flags @68, cpu @72, batch_size @76`.
 */
export function testRunOpts(i: TestRunInput): { opts: Buffer; keep: Buffer[] } {
  const b = Buffer.alloc(80);
  b.writeBigUInt64LE(80n, 0);
  b.writeBigUInt64LE(addressOf(i.dataIn), 8);
  b.writeUInt32LE(i.dataIn.length, 24);
  if (i.dataOut) {
    b.writeBigUInt64LE(addressOf(i.dataOut), 16);
    b.writeUInt32LE(i.dataOut.length, 28);
  }
  if (i.ctxIn) {
    b.writeBigUInt64LE(addressOf(i.ctxIn), 32);
    b.writeUInt32LE(i.ctxIn.length, 48);
  }
  if (i.ctxOut) {
    b.writeBigUInt64LE(addressOf(i.ctxOut), 40);
    b.writeUInt32LE(i.ctxOut.length, 52);
  }
  b.writeInt32LE(i.repeat ?? 1, 60);
  return { opts: b, keep: [i.dataIn, ...(i.dataOut ? [i.dataOut] : []), ...(i.ctxIn ? [i.ctxIn] : []), ...(i.ctxOut ? [i.ctxOut] : [])] };
}

/** Output fields of a `struct bpf_test_run_opts` after the call. */
export function readTestRunOpts(b: Buffer): { dataSizeOut: number; ctxSizeOut: number; retval: number; duration: number } {
  return { dataSizeOut: b.readUInt32LE(28), ctxSizeOut: b.readUInt32LE(52), retval: b.readUInt32LE(56), duration: b.readUInt32LE(64) };
}

/**
 * `struct bpf_map_info` prefix read by {@link mapInfo}: `__u32 type @0, id @4, key_size @8, value_size @12,
 * max_entries @16, map_flags @20; char name[16] @24`.
 */
export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapFlags: number;
  name: string;
}

/** bpf_obj_get_info_by_fd on a map fd; returns null on failure (errno-style code in `err`). */
export function mapInfo(fd: number): MapInfo | { err: number } {
  const info = Buffer.alloc(88);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  const rc = libbpf().bpf_obj_get_info_by_fd(fd, info, len);
  if (rc < 0) return { err: rc };
  const nameEnd = info.indexOf(0, 24);
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    mapFlags: info.readUInt32LE(20),
    name: info.subarray(24, nameEnd < 0 || nameEnd > 40 ? 40 : nameEnd).toString('utf8'),
  };
}
