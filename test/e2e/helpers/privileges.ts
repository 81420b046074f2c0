// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers/privileges
 *
 * Privileged end-to-end tests (network namespaces, veths, BPF) need root-equivalent
 * capabilities and a few tools. Locally they are skipped with the reason when those are
 * missing; under CI (`CI=true`) a missing privilege is a failure, so a misconfigured runner
 * cannot turn the whole e2e suite into silent skips.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';

/** Capability bits (linux/capability.h). */
const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;

/** Tools every privileged test relies on. */
const REQUIRED_TOOLS = ['ip', 'nsenter'];

let cached: string | null | undefined;

/**
 * Why privileged tests cannot run here, or `undefined` when they can. Checks: effective
 * CAP_NET_ADMIN and CAP_SYS_ADMIN (`ip netns add` mounts; `nsenter` calls setns), and that
 * `ip` and `nsenter` are on PATH. The answer is computed once per process.
 * @returns a reason, or undefined
 */
export function privilegeProblem(): string | undefined {
  if (cached !== undefined) return cached ?? undefined;
  cached = computeProblem() ?? null;
  return cached ?? undefined;
}

function computeProblem(): string | undefined {
  if (process.platform !== 'linux') return `privileged e2e tests need Linux (this is ${process.platform})`;
  let capEff = 0n;
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    capEff = m ? BigInt(`0x${m[1]}`) : 0n;
  } catch {
    return 'cannot read /proc/self/status to check capabilities';
  }
  const missing: string[] = [];
  if (!(capEff & (1n << BigInt(CAP_NET_ADMIN)))) missing.push('CAP_NET_ADMIN');
  if (!(capEff & (1n << BigInt(CAP_SYS_ADMIN)))) missing.push('CAP_SYS_ADMIN');
  if (missing.length) return `privileged e2e test needs root (missing ${missing.join(', ')}; uid ${process.getuid?.()})`;
  const absent = REQUIRED_TOOLS.filter((t) => !which(t));
  if (absent.length) return `privileged e2e test needs ${absent.join(' and ')}, not installed (Debian: iproute2, util-linux)`;
  return undefined;
}

/**
 * Finds an executable on PATH.
 * @param tool program name
 * @returns its path, or undefined
 */
export function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, tool);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** True when running under CI (`CI=true`), where skips become failures. */
export function isCi(): boolean {
  return process.env.CI === 'true';
}

/**
 * Guards a privileged test. Call first in the test body:
 * `if (!requirePrivileges(t)) return;`
 * Locally, when privileges are missing, marks the test skipped with the reason and returns
 * false. Under CI it throws instead, failing the test.
 * @param t the test's context (omit in hooks: then nothing is marked, the result just says
 *   whether to proceed; under CI it still throws)
 * @returns true when the test may proceed
 * @throws Error under CI when privileges are missing
 * @example
 * test('pods reach each other', async (t) => {
 *   if (!requirePrivileges(t)) return;
 *   const node = await createNode('ep', { t });
 * });
 */
export function requirePrivileges(t?: TestContext): boolean {
  const problem = privilegeProblem();
  if (problem === undefined) return true;
  if (isCi()) throw new Error(`${problem} (CI=true: failing instead of skipping)`);
  t?.skip(problem);
  return false;
}

/**
 * For `describe(name, { skip: privilegedSkip() }, …)`: the skip reason locally when
 * unprivileged; `false` when privileged, and also under CI (so the suite runs and its
 * `requirePrivileges` calls fail loudly).
 * @returns a reason or false
 */
export function privilegedSkip(): string | false {
  const problem = privilegeProblem();
  return problem === undefined || isCi() ? false : problem;
}
