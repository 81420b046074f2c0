// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/observe-command
 *
 * `membrane observe [--socket PATH] [--json] [--follow] [--last N] [--verdict V] [--from REF]
 * [--to REF]` (DESIGN §3.4): the flows the agent keeps, or a live stream with --follow.
 */
import { apiGet, apiStream, DEFAULT_SOCKET } from '../observe/api.ts';
import type { FlowRecord, FlowSide } from '../observe/flows.ts';
import { parseArgs, one, UsageError } from './args.ts';
import type { CliIo } from './io.ts';

function name(p: FlowRecord['source']): string {
  const who = p.namespace ? `${p.namespace}/${p.name}` : p.identity === 1 ? 'host' : p.identity === 2 ? 'world' : `identity ${p.identity}`;
  return `${who} (${p.ip}${p.port ? `:${p.port}` : ''})`;
}

function sideText(s: FlowSide): string {
  if (!s.enforced) return '-';
  if (s.allowedBy.length) return `${s.verdict} by ${s.allowedBy.join(',')}`;
  if (s.deniedBy.length) return `${s.verdict} by ${s.deniedBy.join(',')}`;
  return `${s.verdict}: ${s.reason}`;
}

/** One readable line per flow. */
export function formatFlow(f: FlowRecord): string {
  const verdict = f.verdict + (f.dropReason ? ` (${f.dropReason})` : '');
  const l7 = f.l7 ? ` ${JSON.stringify(f.l7)}` : '';
  return `${f.time}  ${name(f.source)} -> ${name(f.destination)} ${f.protocol}  ${verdict}  egress: ${sideText(f.egress)}; ingress: ${sideText(f.ingress)}${l7}\n`;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  let socket: string;
  let query: string;
  let json: boolean;
  let follow: boolean;
  try {
    const args = parseArgs(argv, { values: ['socket', 'last', 'verdict', 'from', 'to'], flags: ['json', 'follow'] });
    if (args.positional.length) throw new UsageError(`unexpected argument '${args.positional[0]}'`);
    socket = one(args, 'socket') ?? DEFAULT_SOCKET;
    json = args.flags.has('json');
    follow = args.flags.has('follow');
    const q = new URLSearchParams();
    const last = one(args, 'last');
    if (last !== undefined) {
      if (!/^\d+$/.test(last)) throw new UsageError(`--last: '${last}' is not a number`);
      q.set('last', last);
    }
    const verdict = one(args, 'verdict');
    if (verdict !== undefined) {
      if (!['FORWARDED', 'DROPPED', 'AUDIT', 'REDIRECTED'].includes(verdict.toUpperCase())) throw new UsageError(`--verdict: '${verdict}' is not one of FORWARDED, DROPPED, AUDIT, REDIRECTED`);
      q.set('verdict', verdict.toUpperCase());
    }
    for (const k of ['from', 'to']) {
      const v = one(args, k);
      if (v !== undefined) q.set(k, v);
    }
    if (follow) q.set('follow', '1');
    query = `/v1/flows?${q.toString()}`;
  } catch (e) {
    io.err(`membrane observe: ${(e as Error).message}\n`);
    return 2;
  }
  const print = (line: string) => {
    if (!line.trim()) return;
    if (json) io.out(line + '\n');
    else io.out(formatFlow(JSON.parse(line) as FlowRecord));
  };
  try {
    if (follow) {
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await apiStream(socket, query, print, ac.signal);
      return 0;
    }
    const res = await apiGet(socket, query);
    if (res.status !== 200) throw new Error(`agent answered ${res.status}: ${res.body}`);
    for (const line of res.body.split('\n')) print(line);
    return 0;
  } catch (e) {
    io.err(`membrane observe: cannot reach the agent at ${socket}: ${(e as Error).message}\n`);
    return 1;
  }
}
