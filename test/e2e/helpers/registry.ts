// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers/registry
 *
 * Everything a test run creates outside its own process (network namespaces, child
 * processes, temp directories) is recorded here, by exact name or pid, so it can be removed
 * even when a test fails or the process is interrupted:
 *
 * 1. `NodeTopology.cleanup()` (and `t.after` when a node was made with `{ t }`) removes what
 *    that node created.
 * 2. A root-level `after()` hook, registered when this module is first imported by a test
 *    file, removes whatever is still recorded once the file's tests are done.
 * 3. A process `exit` hook (and SIGINT/SIGTERM/SIGHUP handlers that run it, then exit) is the
 *    synchronous backstop.
 *
 * Nothing is ever removed by pattern: only names and pids recorded here, plus the pids that
 * `ip netns pids NAME` reports for a namespace recorded here (processes living in a
 * namespace this run made were started by this run, e.g. a proxy the agent detached).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after } from 'node:test';

/** Namespaces this process created (or will create), by exact name. */
const namespaces = new Set<string>();
/** Processes this process started, by pid. */
const processes = new Map<number, ChildProcess | undefined>();
/** Temp directories this process created. */
const dirs = new Set<string>();

/** Records a namespace for removal. */
export function trackNamespace(name: string): void {
  namespaces.add(name);
  installHooks();
}

/** Forgets a namespace (after it was removed). */
export function untrackNamespace(name: string): void {
  namespaces.delete(name);
}

/** Records a process for killing. */
export function trackProcess(pid: number, child?: ChildProcess): void {
  processes.set(pid, child);
  installHooks();
}

/** Forgets a process (after it exited). */
export function untrackProcess(pid: number): void {
  processes.delete(pid);
}

/** Records a temp directory for removal. */
export function trackDir(dir: string): void {
  dirs.add(dir);
  installHooks();
}

/** Forgets a directory. */
export function untrackDir(dir: string): void {
  dirs.delete(dir);
}

/** Names of the namespaces still recorded (for assertions that a run left nothing behind). */
export function trackedNamespaces(): string[] {
  return [...namespaces];
}

/**
 * Whether a process is still alive.
 * @param pid process id
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Pids of processes whose network namespace is NAME (`ip netns pids`), excluding this one.
 * @param name a namespace recorded here
 */
export function pidsInNamespace(name: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    return out
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((p) => Number.isInteger(p) && p > 1 && p !== process.pid);
  } catch {
    return [];
  }
}

/**
 * Kills processes by pid: SIGTERM, then SIGKILL for those alive after `graceMs`.
 * @param pids the processes
 * @param graceMs how long to wait for SIGTERM to work
 */
export async function killPids(pids: readonly number[], graceMs = 1000): Promise<void> {
  const live = pids.filter(alive);
  for (const pid of live) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (live.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const pid of live) if (alive(pid)) signal(pid, 'SIGKILL');
  const hard = Date.now() + 2000;
  while (live.some(alive) && Date.now() < hard) await new Promise((r) => setTimeout(r, 20));
  for (const pid of live) if (!alive(pid)) processes.delete(pid);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Deletes one named namespace (`ip netns del NAME`), first killing every process inside it.
 * Missing namespaces are fine.
 * @param name exact namespace name
 */
export async function deleteNamespace(name: string): Promise<void> {
  await killPids(pidsInNamespace(name), 500);
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore', timeout: 5000 });
  } catch {
    // absent
  }
  namespaces.delete(name);
}

/**
 * Removes everything still recorded: processes first (they keep namespaces alive), then
 * namespaces, then directories.
 */
export async function cleanupAll(): Promise<void> {
  await killPids([...processes.keys()]);
  for (const ns of [...namespaces]) await deleteNamespace(ns);
  for (const d of [...dirs]) {
    rmSync(d, { recursive: true, force: true });
    dirs.delete(d);
  }
}

/** Synchronous variant for the `exit` hook: SIGKILL, `ip netns del`, rm. */
export function cleanupAllSync(): void {
  for (const ns of namespaces) for (const pid of pidsInNamespace(ns)) processes.set(pid, undefined);
  for (const pid of processes.keys()) signal(pid, 'SIGKILL');
  for (const ns of namespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
    } catch {
      // absent
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  namespaces.clear();
  processes.clear();
  dirs.clear();
}

let hooked = false;

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupAllSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

// A root-level after() only when this process is a test file: in a plain script (a benchmark
// reusing the harness) node:test would otherwise print an empty TAP report.
if (process.env.NODE_TEST_CONTEXT !== undefined || /\.test\.[cm]?[jt]s$/.test(process.argv[1] ?? '')) {
  after(cleanupAll);
}
