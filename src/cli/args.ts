// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/args
 *
 * A small strict option parser: `--name value`, `--name=value`, repeatable options and flags.
 * Unknown options are errors.
 */

export class UsageError extends Error {
  readonly code = 'MBR_ERR_USAGE';
}

export interface OptionSpec {
  /** Options that take a value; repeatable ones collect every occurrence. */
  values?: string[];
  repeatable?: string[];
  flags?: string[];
}

export interface ParsedArgs {
  values: Map<string, string[]>;
  flags: Set<string>;
  positional: string[];
}

/**
 * @throws UsageError on an unknown option or a missing value
 */
export function parseArgs(argv: string[], spec: OptionSpec): ParsedArgs {
  const takesValue = new Set([...(spec.values ?? []), ...(spec.repeatable ?? [])]);
  const flags = new Set(spec.flags ?? []);
  const out: ParsedArgs = { values: new Map(), flags: new Set(), positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--') || a === '--') {
      out.positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (flags.has(name) && eq < 0) {
      out.flags.add(name);
      continue;
    }
    if (!takesValue.has(name)) throw new UsageError(`unknown option --${name}`);
    const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    const list = out.values.get(name) ?? [];
    if (list.length > 0 && !(spec.repeatable ?? []).includes(name)) throw new UsageError(`--${name} given more than once`);
    list.push(value);
    out.values.set(name, list);
  }
  return out;
}

export function one(args: ParsedArgs, name: string): string | undefined {
  return args.values.get(name)?.[0];
}
