// SPDX-License-Identifier: Apache-2.0
/**
 * @module bench/lib/stats
 *
 * What every benchmark shares (DESIGN §6): medians and ratios of interleaved rounds, percentiles,
 * CPU pinning and CPU accounting of the systems under test.
 */
import { readFileSync } from 'node:fs';
import { runCmd } from '../../test/e2e/helpers/index.ts';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile of sorted values (NaN when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const round2 = (x: number): number => Math.round(x * 100) / 100;
export const round3 = (x: number): number => Math.round(x * 1000) / 1000;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Ratio of medians of two series of rounds, with the per-round ratios' min and max. */
export function ratioStats(num: readonly number[], den: readonly number[]): { ratio: number; min: number; max: number; perRound: number[] } {
  const perRound = num.map((x, i) => x / den[i]!);
  return { ratio: median(num) / median(den), min: Math.min(...perRound), max: Math.max(...perRound), perRound };
}

/** Pins a process and all its threads to one CPU (`taskset -a -p -c`). */
export async function pin(pid: number, cpu: number, what: string): Promise<void> {
  const r = await runCmd('taskset', ['-a', '-p', '-c', String(cpu), String(pid)]);
  if (r.code !== 0) throw new Error(`taskset -a -p -c ${cpu} ${pid} (${what}): ${r.stderr.trim()}`);
}

/** utime + stime of a process (all threads), seconds. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}
