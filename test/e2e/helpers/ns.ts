// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers/ns
 *
 * Running commands inside named network namespaces, always as
 * `nsenter --net=/run/netns/NAME CMD ARGS…` through `spawn` (no shell). Unlike
 * `ip netns exec`, nsenter does not remount /sys, so /sys/fs/bpf (pinned maps) stays visible
 * (reference/datapath-trial.md §1). Caveat of the same choice: /sys/class/net inside the
 * command still lists the *original* namespace's interfaces; use `ip -j` (see {@link ipJson}).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { trackProcess, untrackProcess } from './registry.ts';

/** The outcome of a finished command. */
export interface CmdResult {
  /** Exit status; -1 when killed by a signal (see `signal`). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the command was killed because it ran past `timeoutMs`. */
  timedOut: boolean;
}

/** Options of {@link inNs} and {@link spawnInNs}. */
export interface NsCommandOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment (merged over process.env). */
  env?: Record<string, string>;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  /** inNs only: kill the command (SIGKILL) after this many ms. Default 30 000. */
  timeoutMs?: number;
}

/**
 * The argv that runs CMD inside namespace NS.
 * @param ns namespace name (a file in /run/netns)
 * @param cmd program
 * @param args its arguments
 */
export function nsArgv(ns: string, cmd: string, args: readonly string[]): string[] {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(ns)) throw new Error(`bad namespace name '${ns}'`);
  return [`--net=/run/netns/${ns}`, cmd, ...args];
}

/**
 * Runs a command inside a network namespace and waits for it. Never throws for a non-zero
 * exit; read `code`.
 * @param ns namespace name
 * @param cmd program (resolved on PATH by nsenter)
 * @param args arguments
 * @param opts cwd, env, stdin, timeout
 * @returns exit status and output
 * @example
 * const r = await inNs(node.name, 'ip', ['-j', 'route', 'show']);
 * assert.equal(r.code, 0, r.stderr);
 */
export function inNs(ns: string, cmd: string, args: readonly string[] = [], opts: NsCommandOptions = {}): Promise<CmdResult> {
  return run('nsenter', nsArgv(ns, cmd, args), opts);
}

/**
 * Runs a command in this process's namespace (for the few host-side steps tests need, such as
 * `ip netns add`). Same contract as {@link inNs}.
 */
export function runCmd(cmd: string, args: readonly string[] = [], opts: NsCommandOptions = {}): Promise<CmdResult> {
  return run(cmd, args, opts);
}

function run(cmd: string, args: readonly string[], opts: NsCommandOptions): Promise<CmdResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    if (child.pid !== undefined) trackProcess(child.pid, child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      if (child.pid !== undefined) untrackProcess(child.pid);
      resolve({ code: 127, signal: null, stdout, stderr: stderr + `${cmd}: ${e.message}\n`, timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) untrackProcess(child.pid);
      resolve({ code: code ?? -1, signal, stdout, stderr, timedOut });
    });
  });
}

/** A long-running process inside a namespace (a server, an agent). */
export interface NsProcess {
  /** Its pid (nsenter execs the command, so this is the command's own pid). */
  readonly pid: number;
  readonly child: ChildProcess;
  /** Everything written to stdout so far. */
  readonly stdout: string;
  /** Everything written to stderr so far. */
  readonly stderr: string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Waits until stdout (or stderr) matches.
   * @param re what to wait for
   * @param opts `timeoutMs` (default 10 000), `stream` (default 'stdout')
   * @returns the match
   * @throws Error naming the pattern and the output so far on timeout or early exit
   */
  waitFor(re: RegExp, opts?: { timeoutMs?: number; stream?: 'stdout' | 'stderr' }): Promise<RegExpMatchArray>;
  /**
   * Stops it: the signal (default SIGTERM), then SIGKILL after `graceMs` (default 2000).
   * @returns the exit status
   */
  kill(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts a long-running command inside a namespace. The process is recorded for cleanup
 * (killed in the harness's after/exit hooks if the test does not stop it).
 * @param ns namespace name
 * @param cmd program
 * @param args arguments
 * @param opts cwd, env (input and timeoutMs are ignored)
 * @returns a handle
 * @example
 * const srv = spawnInNs(pod, process.execPath, [SERVER_SCRIPT, '--tcp', '8080']);
 * await srv.waitFor(/"ready":true/);
 * await srv.kill();
 */
export function spawnInNs(ns: string, cmd: string, args: readonly string[] = [], opts: NsCommandOptions = {}): NsProcess {
  const child = spawn('nsenter', nsArgv(ns, cmd, args), {
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`cannot start nsenter for ${cmd} in ${ns}`);
  const pid = child.pid;
  trackProcess(pid, child);
  const out = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out.stdout += d;
    for (const l of listeners) l();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    out.stderr += d;
    for (const l of listeners) l();
  });
  let done: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      done = { code, signal };
      untrackProcess(pid);
      for (const l of listeners) l();
      resolve(done);
    });
    child.on('error', () => {
      done = { code: 127, signal: null };
      untrackProcess(pid);
      for (const l of listeners) l();
      resolve(done);
    });
  });
  const handle: NsProcess = {
    pid,
    child,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    exited,
    waitFor(re, o = {}) {
      const stream = o.stream ?? 'stdout';
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out[stream].match(re);
          if (m) return finish(() => resolve(m));
          if (done)
            finish(() =>
              reject(new Error(`${cmd} in ${ns} exited (${JSON.stringify(done)}) before printing ${re}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`)),
            );
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`timed out waiting for ${re} from ${cmd} in ${ns}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`))),
          o.timeoutMs ?? 10_000,
        );
        const finish = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      });
    },
    async kill(sig = 'SIGTERM', graceMs = 2000) {
      if (done) return done;
      child.kill(sig);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
  };
  return handle;
}

/**
 * Runs `ip -j ARGS…` inside a namespace and parses the JSON.
 * @param ns namespace name
 * @param args arguments after `ip -j`
 * @returns the parsed array
 * @throws Error with ip's message when it fails
 * @example const links = await ipJson<{ ifname: string }>(node.name, ['link', 'show']);
 */
export async function ipJson<T = Record<string, unknown>>(ns: string, args: readonly string[]): Promise<T[]> {
  const r = await inNs(ns, 'ip', ['-j', ...args]);
  if (r.code !== 0) throw new Error(`ip -j ${args.join(' ')} in ${ns}: ${r.stderr.trim()}`);
  const text = r.stdout.trim();
  return text ? (JSON.parse(text) as T[]) : [];
}

/**
 * Whether a named namespace exists (a file in /run/netns).
 * @param ns namespace name
 */
export async function netnsExists(ns: string): Promise<boolean> {
  const r = await runCmd('ip', ['netns', 'list']);
  return r.stdout.split('\n').some((l) => l.split(' ')[0] === ns);
}
