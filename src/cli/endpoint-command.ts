// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/endpoint-command
 *
 * `membrane endpoint up --endpoints FILE` and `membrane endpoint down --endpoints FILE`
 * (DESIGN §3.4). Run them in the namespace that plays the node (in tests:
 * `nsenter --net=/run/netns/NODE membrane endpoint up …`).
 *
 * Output: one line per command that ran (`prod/frontend: ip netns add prod-frontend`), then one
 * summary line per endpoint (`prod/frontend: created mbr1a2b3c4d5e6 <-> prod-frontend:eth0`).
 * Exit codes: 0 done (also when nothing needed doing); 1 a step failed, one line per failure on
 * stderr, `endpoint up: prod/frontend: ip link add mbr… type veth peer name eth0 netns X: File exists`;
 * 2 bad input (usage, or endpoints-file problems, one per line as `file:line: field: message`).
 */
import { EndpointsFileError, readEndpointsFile, type EndpointsFile } from '../endpoint/endpoints-file.ts';
import { endpointDown, endpointUp, PlumbingFailedError, PlumbingInputError, type Report } from '../endpoint/plumbing.ts';
import { one, parseArgs, UsageError } from './args.ts';
import type { CliIo } from './io.ts';

const usage = (verb: string) => `usage: membrane endpoint ${verb} --endpoints FILE\n`;

/**
 * `membrane endpoint up`.
 * @param argv arguments after `endpoint up`
 * @param io output sink
 * @returns exit code (0 ok, 1 a step failed, 2 bad input)
 */
export function runUp(argv: string[], io: CliIo): Promise<number> {
  return runVerb('up', argv, io);
}

/**
 * `membrane endpoint down`.
 * @param argv arguments after `endpoint down`
 * @param io output sink
 * @returns exit code (0 ok, 1 a step failed, 2 bad input)
 */
export function runDown(argv: string[], io: CliIo): Promise<number> {
  return runVerb('down', argv, io);
}

async function runVerb(verb: 'up' | 'down', argv: string[], io: CliIo): Promise<number> {
  let file: EndpointsFile;
  try {
    const args = parseArgs(argv, { values: ['endpoints'], flags: ['help'] });
    if (args.flags.has('help')) {
      io.out(usage(verb));
      return 0;
    }
    if (args.positional.length) throw new UsageError(`unexpected argument '${args.positional[0]}'`);
    const path = one(args, 'endpoints');
    if (path === undefined) throw new UsageError('--endpoints FILE is required');
    file = readEndpointsFile(path);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`endpoint ${verb}: ${e.message}\n${usage(verb)}`);
      return 2;
    }
    if (e instanceof EndpointsFileError) {
      for (const p of e.problems) io.err(`${p}\n`);
      return 2;
    }
    throw e;
  }
  try {
    const report = verb === 'up' ? await endpointUp(file) : await endpointDown(file);
    printReport(verb, report, io);
    return 0;
  } catch (e) {
    if (e instanceof PlumbingInputError) {
      for (const p of e.problems) io.err(`${p}\n`);
      return 2;
    }
    if (e instanceof PlumbingFailedError) {
      printReport(verb, e.report, io);
      for (const f of e.failures) io.err(`endpoint ${verb}: ${f.message}\n`);
      return 1;
    }
    io.err(`endpoint ${verb}: ${(e as Error).message}\n`);
    return 1;
  }
}

function printReport(verb: 'up' | 'down', report: Report, io: CliIo): void {
  for (const a of report.actions) io.out(`${a.endpoint}: ${a.action}\n`);
  for (const ep of report.endpoints) io.out(`${ep.endpoint}: ${ep.state} ${ep.ifname} <-> ${ep.netns}:eth0\n`);
  if (report.endpoints.length === 0) io.out(`endpoint ${verb}: no endpoint has a netns; nothing to plumb\n`);
}
