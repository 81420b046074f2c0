// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/ringbuf
 * Reader of the mbr_events_v1 ring buffer (DESIGN §4, reference/datapath-trial.md §5): the ring is mmapped
 * and parsed in JS, with a per-tick budget, and the reader sleeps in `epoll_wait` through a koffi `.async`
 * call on the libuv threadpool, so it never blocks the event loop (libbpf's ring_buffer__poll would: 5.7 s in
 * the trial).
 *
 * Memory layout (kernel/bpf/ringbuf.c): offset 0 of the map fd is the consumer page (RW, `consumer_pos` u64
 * at its start); offset PAGE_SIZE is the producer page (RO, `producer_pos` u64) followed by the data area,
 * mapped twice back to back so a record that wraps is contiguous. Each record starts with an 8-byte header:
 * `u32 len` (bit 31 BUSY: being written; bit 30 DISCARD: skip), `u32 pg_off`; the next record starts at
 * `roundup(len + 8, 8)`. The reader publishes its position by storing `consumer_pos`; the kernel wakes epoll
 * waiters only when a record is committed while the consumer has caught up, hence the bounded sleep.
 *
 * Shutdown: {@link RingbufReader.close} waits for the in-flight `epoll_wait` (at most `pollTimeoutMs`)
 * before unmapping. Never `process.exit()` while a reader is started: exiting with a koffi async call in
 * flight deadlocks (trial §5); await close() first.
 */
import { setImmediate as tick } from 'node:timers/promises';
import { errno, libc, mapInfo, strerror, viewOf, type Ptr } from './libbpf.ts';
import { libbpf } from './libbpf.ts';
import { RingbufError } from './errors.ts';
import { MAP_NAMES } from './layout.ts';
import { DEFAULT_PIN_ROOT, TypedMap } from './typed-map.ts';
import { decodeVerdictEvent, VERDICT_EVENT_SIZE, type VerdictEvent } from './verdict-event.ts';

const PAGE_SIZE = 4096;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn;
const EPOLL_CLOEXEC = 0x80000;
const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;
const EINTR = 4;
const BUSY = 0x80000000;
const DISCARD = 0x40000000;
const MAP_TYPE_RINGBUF = 27;

/** Options of {@link RingbufReader.start}. */
export interface RingbufStartOptions {
  /** Records parsed per event-loop turn before yielding (default 16384). */
  budget?: number;
  /** Longest sleep in epoll_wait, bounding close() latency (default 100 ms). */
  pollTimeoutMs?: number;
  /** Called when the loop fails (it stops). */
  onError?: (e: Error) => void;
}

/** Reads records from a BPF ring buffer map. */
export class RingbufReader {
  readonly fd: number;
  readonly size: number;
  private readonly ownsFd: boolean;
  private consumerPtr: Ptr;
  private producerPtr: Ptr;
  private readonly consumer: BigUint64Array;
  private readonly producer: BigUint64Array;
  private readonly data: Buffer;
  private readonly header: Uint32Array;
  private epfd = -1;
  private closed = false;
  private loop: Promise<void> | undefined;

  private constructor(fd: number, ownsFd: boolean) {
    const info = mapInfo(fd);
    if ('err' in info) throw new RingbufError(strerror(info.err), { step: 'bpf_obj_get_info_by_fd', errno: -info.err, map: MAP_NAMES.events });
    if (info.type !== MAP_TYPE_RINGBUF) throw new RingbufError(`map type ${info.type} is not a ring buffer`, { step: 'open', map: info.name });
    this.fd = fd;
    this.ownsFd = ownsFd;
    this.size = info.maxEntries;
    const c = libc();
    this.consumerPtr = c.mmap(null, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (this.consumerPtr === MAP_FAILED || !this.consumerPtr) {
      const e = errno();
      throw new RingbufError(strerror(e), { step: 'mmap consumer page', errno: e, map: info.name });
    }
    this.producerPtr = c.mmap(null, PAGE_SIZE + 2 * this.size, PROT_READ, MAP_SHARED, fd, PAGE_SIZE);
    if (this.producerPtr === MAP_FAILED || !this.producerPtr) {
      const e = errno();
      c.munmap(this.consumerPtr, PAGE_SIZE);
      throw new RingbufError(strerror(e), { step: 'mmap producer pages', errno: e, map: info.name });
    }
    this.consumer = new BigUint64Array(viewOf(this.consumerPtr, PAGE_SIZE), 0, 1);
    const prod = viewOf(this.producerPtr, PAGE_SIZE + 2 * this.size);
    this.producer = new BigUint64Array(prod, 0, 1);
    this.data = Buffer.from(prod, PAGE_SIZE, 2 * this.size);
    this.header = new Uint32Array(prod, PAGE_SIZE, (2 * this.size) / 4);
  }

  /**
   * Maps a ring buffer by fd.
   * @param fd ring buffer map fd (e.g. `loaded.mapFd('mbr_events_v1')`)
   * @param ownsFd whether close() closes the fd
   * @throws RingbufError
   */
  static fromFd(fd: number, ownsFd = false): RingbufReader {
    return new RingbufReader(fd, ownsFd);
  }

  /** Opens an agent's pinned mbr_events_v1. @throws RingbufError */
  static open(pinRoot: string = DEFAULT_PIN_ROOT): RingbufReader {
    const pin = TypedMap.pinPath(pinRoot, MAP_NAMES.events);
    const fd = libbpf().bpf_obj_get(pin);
    if (fd < 0) throw new RingbufError(`cannot open ${pin}: ${strerror(fd)}`, { step: 'bpf_obj_get', errno: -fd, map: MAP_NAMES.events });
    try {
      return new RingbufReader(fd, true);
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  }

  /**
   * Reads up to `max` committed records now, without waiting, and advances the consumer position.
   * @param onRecord called with each record's bytes (a view valid only during the call) and offset
   * @returns how many records were consumed (discarded ones included)
   */
  drainRaw(max: number, onRecord: (buf: Buffer, off: number, len: number) => void): number {
    if (this.closed) throw new RingbufError('reader is closed', { step: 'read', map: MAP_NAMES.events });
    const mask = this.size - 1;
    let cons = Number(Atomics.load(this.consumer, 0));
    const prod = Number(Atomics.load(this.producer, 0));
    let n = 0;
    while (cons < prod && n < max) {
      const off = cons & mask;
      const hdr = Atomics.load(this.header, off >>> 2);
      if (hdr & BUSY) break;
      const len = hdr & 0x3fffffff;
      if (!(hdr & DISCARD)) onRecord(this.data, off + 8, len);
      cons += (len + 8 + 7) & ~7;
      n++;
    }
    if (n > 0) Atomics.store(this.consumer, 0, BigInt(cons));
    return n;
  }

  /** Reads every committed verdict event now (up to `max`), without waiting. */
  drain(max = Number.MAX_SAFE_INTEGER): VerdictEvent[] {
    const out: VerdictEvent[] = [];
    this.drainRaw(max, (b, off, len) => {
      if (len >= VERDICT_EVENT_SIZE) out.push(decodeVerdictEvent(b, off));
    });
    return out;
  }

  /**
   * Starts delivering events: parses up to `budget` records per turn and sleeps in epoll_wait (off the main
   * thread) when the ring is empty.
   * @param onEvents called with each batch of decoded events
   * @example
   * const rb = RingbufReader.open(); rb.start((evs) => evs.forEach(print)); … await rb.close();
   */
  start(onEvents: (events: VerdictEvent[]) => void, opts: RingbufStartOptions = {}): void {
    if (this.loop) throw new RingbufError('already started', { step: 'start', map: MAP_NAMES.events });
    const budget = opts.budget ?? 16384;
    const timeout = opts.pollTimeoutMs ?? 100;
    const c = libc();
    this.epfd = c.epoll_create1(EPOLL_CLOEXEC);
    if (this.epfd < 0) {
      const e = errno();
      throw new RingbufError(strerror(e), { step: 'epoll_create1', errno: e, map: MAP_NAMES.events });
    }
    const ev = Buffer.alloc(12); // struct epoll_event is packed on x86_64: u32 events; u64 data
    ev.writeUInt32LE(EPOLLIN, 0);
    if (c.epoll_ctl(this.epfd, EPOLL_CTL_ADD, this.fd, ev) < 0) {
      const e = errno();
      throw new RingbufError(strerror(e), { step: 'epoll_ctl', errno: e, map: MAP_NAMES.events });
    }
    const events = Buffer.alloc(12);
    const wait = () =>
      new Promise<number>((resolve) => {
        c.epoll_wait.async(this.epfd, events, 1, timeout, (err, res) => resolve(err ? -EINTR : res));
      });
    this.loop = (async () => {
      while (!this.closed) {
        const batch = this.drain(budget);
        if (batch.length > 0) onEvents(batch);
        if (this.closed) break;
        if (batch.length >= budget) await tick();
        else await wait();
      }
    })().catch((e: Error) => {
      if (opts.onError) opts.onError(e);
      else throw e;
    });
  }

  /** Stops the loop (waiting for the in-flight epoll_wait), unmaps the ring and closes fds. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.loop) await this.loop;
    const c = libc();
    if (this.epfd >= 0) c.close(this.epfd);
    c.munmap(this.producerPtr, PAGE_SIZE + 2 * this.size);
    c.munmap(this.consumerPtr, PAGE_SIZE);
    this.producerPtr = 0n;
    this.consumerPtr = 0n;
    if (this.ownsFd) c.close(this.fd);
  }
}
