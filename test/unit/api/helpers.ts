// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/api/helpers
 *
 * Small helpers for api tests: build CNP YAML around a spec fragment and parse it.
 */
import { parsePolicyText } from '../../../src/api/load.ts';
import type { LoadedPolicies, Problem, Rule } from '../../../src/api/types.ts';

/** Parses YAML text as `test.yaml`. */
export function parse(text: string): LoadedPolicies {
  return parsePolicyText(text, 'test.yaml');
}

/** Errors of a load result. */
export function errors(l: LoadedPolicies): Problem[] {
  return l.problems.filter((p) => p.severity === 'error');
}

/** Warnings of a load result. */
export function warnings(l: LoadedPolicies): Problem[] {
  return l.problems.filter((p) => p.severity === 'warning');
}

/** Indents every line of `s` by `n` spaces. */
export function indent(s: string, n: number): string {
  const pad = ' '.repeat(n);
  return s
    .split('\n')
    .map((l) => (l.trim() === '' ? l : pad + l))
    .join('\n');
}

/** A CiliumNetworkPolicy named `p` in namespace `ns` (unless null) whose spec body is `spec`. */
export function cnp(spec: string, opts: { ns?: string | null; kind?: string; name?: string } = {}): string {
  const ns = opts.ns === undefined ? 'prod' : opts.ns;
  return [
    'apiVersion: cilium.io/v2',
    `kind: ${opts.kind ?? 'CiliumNetworkPolicy'}`,
    'metadata:',
    `  name: ${opts.name ?? 'p'}`,
    ...(ns === null ? [] : [`  namespace: ${ns}`]),
    'spec:',
    indent(spec.trim(), 2),
    '',
  ].join('\n');
}

/** A CCNP named `p` whose spec body is `spec`. */
export function ccnp(spec: string): string {
  return cnp(spec, { ns: null, kind: 'CiliumClusterwideNetworkPolicy' });
}

/** Parses and expects exactly one valid rule; throws with the problems otherwise. */
export function oneRule(text: string): Rule {
  const l = parse(text);
  const errs = errors(l);
  if (errs.length > 0 || l.rules.length !== 1) {
    throw new Error(`expected one valid rule, got ${l.rules.length}: ${JSON.stringify(l.problems, null, 1)}`);
  }
  return l.rules[0];
}

/** Parses and returns the error messages rendered as `field: message`. */
export function errorTexts(text: string): string[] {
  return errors(parse(text)).map((p) => `${p.field ?? ''}: ${p.message}`);
}
