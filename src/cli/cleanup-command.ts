// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/cleanup-command
 *
 * `membrane cleanup [--bpf-root DIR] [--state-dir DIR] [--endpoints FILE]` (DESIGN §3.4): stops
 * the proxy of that state directory, detaches Membrane's programs (from the endpoints' node-side
 * interfaces, and from every `mbr…` interface of this namespace) and removes the pins.
 */
import { existsSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_PIN_ROOT, detach, removePins } from '../datapath/index.ts';
import { readEndpointsFile } from '../endpoint/endpoints-file.ts';
import { hostIfname, HOST_IFNAME_RE } from '../endpoint/plumbing.ts';
import { parseArgs, one, UsageError } from './args.ts';
import { DEFAULT_STATE_DIR } from './agent-command.ts';
import { removeProxyRouting, ROUTING_FILE } from '../../proxy/core/supervisor.ts';
import type { CliIo } from './io.ts';

function interfacesHere(): string[] {
  // /sys/class/net reflects the namespace /sys was mounted in; `ip` answers for ours.
  try {
    return readdirSync('/sys/class/net');
  } catch {
    return [];
  }
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  let bpfRoot: string;
  let stateDir: string;
  let endpoints: string | undefined;
  try {
    const args = parseArgs(argv, { values: ['bpf-root', 'state-dir', 'endpoints'] });
    if (args.positional.length) throw new UsageError(`unexpected argument '${args.positional[0]}'`);
    bpfRoot = one(args, 'bpf-root') ?? DEFAULT_PIN_ROOT;
    stateDir = one(args, 'state-dir') ?? DEFAULT_STATE_DIR;
    endpoints = one(args, 'endpoints');
  } catch (e) {
    io.err(`membrane cleanup: ${(e as Error).message}\n`);
    return 2;
  }
  let failed = false;
  // 1. the proxy of this state directory
  const pidFile = path.join(stateDir, 'proxy.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 1) {
      try {
        process.kill(pid, 'SIGTERM');
        io.out(`stopped proxy (pid ${pid})\n`);
      } catch {
        /* not running */
      }
    }
    rmSync(pidFile, { force: true });
  }
  // 1b. the redirect routing, when this state directory's agent added it (exact values)
  const routingFile = path.join(stateDir, ROUTING_FILE);
  if (existsSync(routingFile)) {
    for (const what of removeProxyRouting()) io.out(`removed ${what}\n`);
    rmSync(routingFile, { force: true });
  }
  // 2. programs
  const ifnames = new Set<string>();
  if (endpoints) {
    try {
      for (const ep of readEndpointsFile(endpoints).endpoints) if (ep.netns) ifnames.add(hostIfname(ep));
    } catch (e) {
      io.err(`membrane cleanup: ${(e as Error).message}\n`);
      failed = true;
    }
  }
  for (const n of interfacesHere()) if (HOST_IFNAME_RE.test(n)) ifnames.add(n);
  const uplinksFile = path.join(stateDir, 'uplinks.json');
  if (existsSync(uplinksFile)) {
    try {
      for (const u of JSON.parse(readFileSync(uplinksFile, 'utf8')) as string[]) ifnames.add(u);
    } catch {
      /* ignore a damaged file */
    }
  }
  for (const ifname of ifnames) {
    try {
      if (detach(ifname)) io.out(`detached programs from ${ifname}\n`);
    } catch (e) {
      io.err(`membrane cleanup: ${ifname}: ${(e as Error).message}\n`);
      failed = true;
    }
  }
  // 3. pins and persisted agent state
  try {
    const removed = removePins(bpfRoot);
    if (removed.length) io.out(`removed ${removed.length} pinned object(s) under ${bpfRoot}\n`);
  } catch (e) {
    io.err(`membrane cleanup: ${bpfRoot}: ${(e as Error).message}\n`);
    failed = true;
  }
  for (const f of ['agent-state.json', 'uplinks.json', 'proxy-policy.json']) rmSync(path.join(stateDir, f), { force: true });
  return failed ? 1 : 0;
}
