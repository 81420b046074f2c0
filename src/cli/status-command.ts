// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/status-command
 *
 * `membrane status [--socket PATH] [--json]` (DESIGN §3.4): exit 0 when ready, 3 while not,
 * 1 when the agent cannot be reached.
 */
import { apiGet, DEFAULT_SOCKET } from '../observe/api.ts';
import { parseArgs, one, UsageError } from './args.ts';
import type { CliIo } from './io.ts';

export async function run(argv: string[], io: CliIo): Promise<number> {
  let socket: string;
  let json: boolean;
  try {
    const args = parseArgs(argv, { values: ['socket'], flags: ['json'] });
    if (args.positional.length) throw new UsageError(`unexpected argument '${args.positional[0]}'`);
    socket = one(args, 'socket') ?? DEFAULT_SOCKET;
    json = args.flags.has('json');
  } catch (e) {
    io.err(`membrane status: ${(e as Error).message}\n`);
    return 2;
  }
  let status: { ready: boolean; policyRevision: number; endpoints: Array<Record<string, unknown>>; errors: Array<Record<string, unknown>> };
  try {
    const res = await apiGet(socket, '/v1/status');
    if (res.status !== 200) throw new Error(`agent answered ${res.status}: ${res.body}`);
    status = JSON.parse(res.body);
  } catch (e) {
    if (json) io.out(JSON.stringify({ ready: false, error: `cannot reach the agent at ${socket}: ${(e as Error).message}` }) + '\n');
    io.err(`membrane status: cannot reach the agent at ${socket}: ${(e as Error).message}\n`);
    return 1;
  }
  if (json) io.out(JSON.stringify(status) + '\n');
  else {
    io.out(`ready: ${status.ready ? 'yes' : 'no'}   policy revision: ${status.policyRevision}\n`);
    for (const e of status.endpoints) {
      io.out(`  ${e.namespace}/${e.name}  identity ${e.identity}  ${e.interface}  ${e.enforced ? 'enforced' : 'not ready'}  (ingress ${e.ingressEnforced ? 'enforced' : 'open'}, egress ${e.egressEnforced ? 'enforced' : 'open'}${e.audit ? ', audit' : ''})${e.error ? `  error: ${e.error}` : ''}\n`);
    }
    for (const e of status.errors) io.out(`  error: ${e.file}:${e.line}: ${e.object ? `${e.object}: ` : ''}${e.field ? `${e.field}: ` : ''}${e.message}\n`);
  }
  return status.ready ? 0 : 3;
}
