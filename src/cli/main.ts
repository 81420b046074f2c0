// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/main
 *
 * `membrane` command dispatcher. Each subcommand lives in its own module and exports
 * `run(argv, io): Promise<number>` returning the exit code. Modules are imported lazily so
 * that `membrane policy validate` never loads the datapath binding.
 */
import { CliIo, processIo } from './io.ts';

type Command = (argv: string[], io: CliIo) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  'policy validate': async () => (await import('./validate-command.ts')).run,
  'policy trace': async () => (await import('./trace-command.ts')).run,
  'endpoint up': async () => (await import('./endpoint-command.ts')).runUp,
  'endpoint down': async () => (await import('./endpoint-command.ts')).runDown,
  agent: async () => (await import('./agent-command.ts')).run,
  proxy: async () => (await import('./proxy-command.ts')).run,
  status: async () => (await import('./status-command.ts')).run,
  observe: async () => (await import('./observe-command.ts')).run,
  cleanup: async () => (await import('./cleanup-command.ts')).run,
};

const usage = `usage: membrane <command> [options]

commands:
  policy validate PATH...              validate policy files (exit 1 on problems)
  policy trace --policies PATH --endpoints FILE --from REF --to REF --port N[/PROTO] [...]
                                       explain the verdict for one flow, offline
  endpoint up|down --endpoints FILE    plumb endpoint network namespaces (standalone node)
  agent --policies PATH --endpoints FILE [...]   run the node agent
  proxy [--state-dir DIR] [--bpf-root DIR] [--config FILE]   run the L7 proxy (the agent starts it)
  status [--socket PATH] [--json]      agent readiness
  observe [--socket PATH] [--json] [--follow] [--last N]   flows seen by the agent
  cleanup [--bpf-root DIR] [--state-dir DIR] [--endpoints FILE]  remove programs, pins, proxy
`;

/**
 * Runs the CLI.
 * @param argv arguments after the program name
 * @param io where output goes (tests pass a capturing io)
 * @returns the process exit code
 */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(usage);
    return argv.length === 0 ? 2 : 0;
  }
  const two = `${argv[0]} ${argv[1] ?? ''}`;
  const name = commands[two] ? two : commands[argv[0]] ? argv[0] : undefined;
  if (!name) {
    io.err(`membrane: unknown command '${argv.slice(0, 2).join(' ')}'\n${usage}`);
    return 2;
  }
  const rest = argv.slice(name.split(' ').length);
  let cmd: Command;
  try {
    cmd = await commands[name]();
  } catch (e) {
    io.err(`membrane ${name}: not available in this build: ${(e as Error).message}\n`);
    return 2;
  }
  return cmd(rest, io);
}
