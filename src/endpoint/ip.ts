// SPDX-License-Identifier: Apache-2.0
/**
 * @module endpoint/ip
 *
 * A thin runner for iproute2's `ip`, used by the endpoint plumbing. Commands are run with
 * `execFile` (never through a shell), in the process's own network namespace or, with
 * `netns`, through `ip -n NETNS …` (ip enters that namespace itself; it remounts /sys only in
 * its own short-lived process, which is harmless).
 *
 * Why not /sys/class/net: a process that entered a namespace with `nsenter --net` still sees the
 * /sys of the namespace that mounted it, so interface lookups go through `ip -j` JSON instead.
 */
import { execFile, execFileSync } from 'node:child_process';

/** The outcome of one `ip` invocation. */
export interface IpResult {
  /** Exit status (0 = success). */
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link ip}. */
export interface IpOptions {
  /** Run inside this named network namespace (`ip -n NETNS`). */
  netns?: string;
}

/** Milliseconds an `ip` command may take before it is killed. */
const IP_TIMEOUT_MS = 10_000;

/**
 * Runs `ip ARGS…`. A non-zero exit is reported in the result, not thrown.
 * @param args arguments after `ip` (and after `-n NETNS` when `opts.netns` is set)
 * @param opts where to run
 * @returns exit code and output
 * @throws Error when `ip` cannot be started at all (not installed)
 */
export function ip(args: readonly string[], opts: IpOptions = {}): Promise<IpResult> {
  const argv = opts.netns === undefined ? [...args] : ['-n', opts.netns, ...args];
  return new Promise((resolve, reject) => {
    execFile('ip', argv, { timeout: IP_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
        reject(new Error(`cannot run ip: ${err.message}`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/**
 * Synchronous `ip ARGS…`, for the few callers that cannot await (see `ifindexOf`).
 * @param args arguments after `ip`
 * @returns exit code and output
 */
export function ipSync(args: readonly string[], opts: IpOptions = {}): IpResult {
  const argv = opts.netns === undefined ? [...args] : ['-n', opts.netns, ...args];
  try {
    const stdout = execFileSync('ip', argv, { timeout: IP_TIMEOUT_MS, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { status?: number | null; stdout?: string; stderr?: string };
    if (typeof err.code === 'string' && err.status === undefined) throw new Error(`cannot run ip: ${err.message}`);
    return { code: err.status ?? 1, stdout: String(err.stdout ?? ''), stderr: String(err.stderr ?? '') };
  }
}

/**
 * Turns `ip`'s stderr into a short reason: `RTNETLINK answers: File exists` → `File exists`.
 * @param stderr what ip printed
 * @returns one line
 */
export function ipReason(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^RTNETLINK answers:\s*/, '').replace(/^Error:\s*/, '').trim())
    .filter(Boolean);
  return lines.length ? lines.join('; ') : 'failed';
}

/** The fields of `ip -j link show` this project reads. */
export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  /** MAC address. */
  address?: string;
  operstate?: string;
  /** For a veth: the peer's ifindex (in the peer's namespace). */
  link_index?: number;
  /** For a link whose peer is in another namespace: that namespace's id as seen from here. */
  link_netnsid?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: IpAddr[];
}

/** One address of `ip -j addr show`. */
export interface IpAddr {
  family: 'inet' | 'inet6' | string;
  local: string;
  prefixlen: number;
  scope?: string;
}

/** One entry of `ip -j neigh show`. */
export interface IpNeigh {
  dst: string;
  lladdr?: string;
  /** e.g. `["PERMANENT"]`, `["REACHABLE"]`. */
  state?: string[];
}

/** One route of `ip -j route show`. */
export interface IpRoute {
  /** `default`, an address, or `a.b.c.d/len`. */
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
  protocol?: string;
  flags?: string[];
}

/**
 * Runs `ip -j ARGS…` and parses the JSON.
 * @returns the parsed array, or `undefined` when ip exits non-zero (e.g. no such device)
 */
export async function ipJson<T>(args: readonly string[], opts: IpOptions = {}): Promise<{ value?: T[]; result: IpResult }> {
  const result = await ip(['-j', ...args], opts);
  if (result.code !== 0) return { result };
  const text = result.stdout.trim();
  return { value: text ? (JSON.parse(text) as T[]) : [], result };
}
