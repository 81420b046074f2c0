// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/signals
 *
 * Long-running commands (agent, proxy) run until SIGTERM or SIGINT, then stop once.
 */
import type { CliIo } from './io.ts';

/**
 * Waits for SIGTERM/SIGINT, then calls `stop` once.
 * @param name command name for messages, e.g. `membrane agent`
 * @param note what stopping means, e.g. `enforcement stays in place`
 * @returns the exit code: 0 when `stop` resolves, 1 when it rejects
 */
export function runUntilSignal(io: CliIo, name: string, note: string, stop: () => Promise<void>): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (sig: string) => {
      if (stopping) return;
      stopping = true;
      io.err(`${name}: ${sig}: stopping${note ? `, ${note}` : ''}\n`);
      stop().then(
        () => resolve(0),
        (e) => {
          io.err(`${name}: stop: ${(e as Error).message}\n`);
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
}
