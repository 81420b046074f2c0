// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/proxy-command
 *
 * `membrane proxy [--state-dir DIR] [--bpf-root DIR] [--config FILE] [--agent-socket PATH]`
 * (DESIGN §3.4): the L7 proxy as its own process. In standalone mode the agent starts it
 * detached; it keeps its last policy (`<state-dir>/proxy-policy.json`) when the agent goes away
 * and across its own restarts. SIGTERM (or SIGINT) stops it cleanly.
 */
import { readSettings } from '../config.ts';
import { DEFAULT_PIN_ROOT } from '../datapath/typed-map.ts';
import { ProxyServer } from '../../proxy/server.ts';
import { parseArgs, one, UsageError } from './args.ts';
import { DEFAULT_STATE_DIR } from './agent-command.ts';
import type { CliIo } from './io.ts';
import { runUntilSignal } from './signals.ts';

export async function run(argv: string[], io: CliIo): Promise<number> {
  let proxy: ProxyServer;
  try {
    const args = parseArgs(argv, { values: ['state-dir', 'bpf-root', 'config', 'agent-socket'] });
    if (args.positional.length) throw new UsageError(`unexpected argument '${args.positional[0]}'`);
    if (process.getuid?.() !== 0) throw new UsageError('membrane proxy needs root (CAP_NET_ADMIN for IP_TRANSPARENT and SO_MARK)');
    proxy = await ProxyServer.start({
      stateDir: one(args, 'state-dir') ?? DEFAULT_STATE_DIR,
      bpfRoot: one(args, 'bpf-root') ?? DEFAULT_PIN_ROOT,
      settings: readSettings(one(args, 'config')),
      agentSocket: one(args, 'agent-socket'),
      log: (m) => io.err(`${new Date().toISOString()} proxy: ${m}\n`),
    });
  } catch (e) {
    io.err(`membrane proxy: ${(e as Error).message}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
  return runUntilSignal(io, 'membrane proxy', '', () => proxy.stop());
}
