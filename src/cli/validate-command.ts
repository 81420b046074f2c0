// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/validate-command
 *
 * `membrane policy validate PATH...` (DESIGN §3.3): exit 0 when every object is valid
 * (warnings go to stderr and do not fail; a summary goes to stdout); otherwise exit 1 with one
 * line per problem on stderr, `file:line: Kind/name: field.path: what is wrong`. Warnings use
 * the same format with the message prefixed by `warning: `.
 */
import { loadPolicyPaths } from '../api/load.ts';
import { formatProblem, type Problem } from '../api/types.ts';
import type { CliIo } from './io.ts';

const usage = `usage: membrane policy validate PATH...

Validates CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and NetworkPolicy objects in the
given files and directories (read recursively: .yaml, .yml, .json; multi-document).
Exit 0 when every object is valid, 1 otherwise (one line per problem on stderr).
`;

/** Renders a problem line; warnings get a `warning: ` prefix on the message. */
export function problemLine(p: Problem): string {
  return formatProblem(p.severity === 'warning' ? { ...p, message: `warning: ${p.message}` } : p);
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * Runs `membrane policy validate`.
 *
 * @param argv the arguments after `policy validate`
 * @param io output sink
 * @returns 0 when valid, 1 on problems or usage errors
 * @example
 * await run(['policies/'], processIo); // prints "3 objects valid (2 files)"
 */
export async function run(argv: string[], io: CliIo): Promise<number> {
  const paths: string[] = [];
  let options = true;
  for (const a of argv) {
    if (options && a === '--') {
      options = false;
    } else if (options && (a === '-h' || a === '--help')) {
      io.out(usage);
      return 0;
    } else if (options && a.startsWith('-') && a !== '-') {
      io.err(`membrane policy validate: unknown option ${a}\n${usage}`);
      return 1;
    } else {
      paths.push(a);
    }
  }
  if (paths.length === 0) {
    io.err(`membrane policy validate: no PATH given\n${usage}`);
    return 1;
  }
  const loaded = loadPolicyPaths(paths);
  const errors = loaded.problems.filter((p) => p.severity === 'error');
  for (const p of loaded.problems) io.err(`${problemLine(p)}\n`);
  if (errors.length > 0) return 1;
  const skipped = loaded.problems.filter((p) => p.severity === 'warning' && p.message.startsWith('skipped:')).length;
  io.out(
    `${plural(loaded.objects.length, 'object')} valid (${plural(loaded.files.length, 'file')})` +
      (skipped > 0 ? `, ${plural(skipped, 'object')} of other kinds skipped` : '') +
      '\n',
  );
  return 0;
}
