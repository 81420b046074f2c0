// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/errors
 * Errors of the datapath layer. Every error has a stable `code` (`MBR_ERR_*`), says whether retrying can help
 * (`retriable`), names the step that failed (`step`, e.g. `bpf_tc_attach`) and, where one is involved, the
 * attach point (`attachPoint`, e.g. `lxc1a2b ingress`) or map (`map`). `errno` is the positive errno when the
 * failure came from the kernel or libbpf.
 *
 * The project has no shared `EngineError` base yet (src/errors.ts does not exist); these extend `Error` and
 * keep the same shape, so they can be re-parented without changing their codes.
 */

/** Context for a {@link DatapathError}. */
export interface DatapathErrorContext {
  /** The operation that failed, e.g. `bpf_object__load`, `bpf_tc_attach`, `bpf_map_update_elem`. */
  step: string;
  /** Positive errno from the kernel/libbpf, when known. */
  errno?: number;
  /** Interface and direction, e.g. `lxcA ingress`. */
  attachPoint?: string;
  /** Map name, e.g. `mbr_policy_v1`. */
  map?: string;
  /** Extra detail, e.g. the tail of the libbpf log (verifier output). */
  detail?: string;
}

/** Base class of every datapath error. */
export class DatapathError extends Error {
  readonly code: string = 'MBR_ERR_DATAPATH';
  readonly retriable: boolean = false;
  readonly step: string;
  readonly errno: number | undefined;
  readonly attachPoint: string | undefined;
  readonly map: string | undefined;
  readonly detail: string | undefined;

  /**
   * @param message what went wrong, in words
   * @param ctx the failed step and where
   */
  constructor(message: string, ctx: DatapathErrorContext) {
    const where = [ctx.attachPoint && `at ${ctx.attachPoint}`, ctx.map && `on ${ctx.map}`].filter(Boolean).join(' ');
    super(`${ctx.step}${where ? ' ' + where : ''}: ${message}${ctx.detail ? `\n${ctx.detail}` : ''}`);
    this.name = new.target.name;
    this.step = ctx.step;
    this.errno = ctx.errno;
    this.attachPoint = ctx.attachPoint;
    this.map = ctx.map;
    this.detail = ctx.detail;
  }
}

/** libbpf.so.1 or libc could not be loaded, or a symbol is missing. */
export class LibbpfUnavailableError extends DatapathError {
  override readonly code = 'MBR_ERR_LIBBPF_UNAVAILABLE';
}

/** bpffs is not mounted and could not be mounted, or the pin root could not be created. */
export class BpffsError extends DatapathError {
  override readonly code = 'MBR_ERR_BPFFS';
}

/** Opening or loading a BPF object failed (missing file, verifier rejection, incompatible pinned map). */
export class BpfLoadError extends DatapathError {
  override readonly code = 'MBR_ERR_BPF_LOAD';
}

/** Creating a tc hook, attaching, detaching or querying a program failed. */
export class BpfAttachError extends DatapathError {
  override readonly code = 'MBR_ERR_BPF_ATTACH';
  override readonly retriable = true;
}

/** The network interface does not exist. */
export class InterfaceNotFoundError extends DatapathError {
  override readonly code = 'MBR_ERR_NO_SUCH_INTERFACE';
  override readonly retriable = true;
}

/** A map operation failed (other than "no such key" on lookup, which returns undefined). */
export class BpfMapError extends DatapathError {
  override readonly code = 'MBR_ERR_BPF_MAP';
  override readonly retriable = true;
}

/** A pinned map does not have the layout this code was built for (key/value size or type differ). */
export class MapLayoutMismatchError extends DatapathError {
  override readonly code = 'MBR_ERR_MAP_LAYOUT';
}

/** A value cannot be encoded into a map key or entry (out of range, wrong family…). */
export class MapEncodeError extends DatapathError {
  override readonly code = 'MBR_ERR_MAP_ENCODE';
}

/** BPF_PROG_TEST_RUN failed. */
export class BpfTestRunError extends DatapathError {
  override readonly code = 'MBR_ERR_BPF_TEST_RUN';
}

/** mmap/epoll on the event ring buffer failed, or the reader was used after close(). */
export class RingbufError extends DatapathError {
  override readonly code = 'MBR_ERR_RINGBUF';
}

/** A libc socket call (socket, setsockopt, bind, listen) failed. */
export class SocketError extends DatapathError {
  override readonly code = 'MBR_ERR_SOCKET';
}
