// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/agent-command
 *
 * `membrane agent --policies PATH --endpoints FILE [--audit] [--socket PATH] [--state-dir DIR]
 * [--bpf-root DIR] [--uplink IFACE ...] [--config FILE]` (DESIGN §3.4). Runs until SIGTERM or
 * SIGINT, then stops and leaves enforcement in place.
 */
import { Agent } from '../main.ts';
import { DEFAULT_SOCKET } from '../observe/api.ts';
import { DEFAULT_PIN_ROOT } from '../datapath/index.ts';
import { parseArgs, one, UsageError } from './args.ts';
import type { CliIo } from './io.ts';
import { runUntilSignal } from './signals.ts';

export const DEFAULT_STATE_DIR = '/run/membrane';

export async function run(argv: string[], io: CliIo): Promise<number> {
  let agent: Agent;
  try {
    const args = parseArgs(argv, {
      values: ['endpoints', 'socket', 'state-dir', 'bpf-root', 'config'],
      repeatable: ['policies', 'uplink'],
      flags: ['audit'],
    });
    if (args.positional.length) throw new UsageError(`unexpected argument '${args.positional[0]}'`);
    const policies = args.values.get('policies') ?? [];
    if (policies.length === 0) throw new UsageError('--policies PATH is required');
    const endpoints = one(args, 'endpoints');
    if (!endpoints) throw new UsageError('--endpoints FILE is required');
    if (process.getuid?.() !== 0) throw new UsageError('membrane agent needs root (CAP_BPF and CAP_NET_ADMIN) to load and attach the datapath');
    agent = await Agent.start({
      policies,
      endpoints,
      audit: args.flags.has('audit'),
      socket: one(args, 'socket') ?? DEFAULT_SOCKET,
      stateDir: one(args, 'state-dir') ?? DEFAULT_STATE_DIR,
      bpfRoot: one(args, 'bpf-root') ?? DEFAULT_PIN_ROOT,
      uplinks: args.values.get('uplink') ?? [],
      config: one(args, 'config'),
    });
  } catch (e) {
    io.err(`membrane agent: ${(e as Error).message}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
  return runUntilSignal(io, 'membrane agent', 'enforcement stays in place', () => agent.stop());
}
