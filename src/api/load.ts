// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/load
 *
 * Reads policy files and directories into sanitized rules (DESIGN §3.2, §3.3):
 * 1. each path is a file or a directory, read recursively (`.yaml`, `.yml`, `.json`; entries
 *    sorted by name; entries starting with `.` are skipped, e.g. ConfigMap `..data` links);
 *    a file named explicitly is read whatever its extension; an empty directory = no policy;
 * 2. every file is parsed as a multi-document YAML stream (JSON is YAML), keeping the line of
 *    every field; a syntax error names its line and drops only its document;
 * 3. `List` kinds (`kind: List`, `kind: CiliumNetworkPolicyList`, …) with `items` are expanded;
 * 4. each object is validated by `api/validate.ts`; other kinds are skipped with a warning;
 * 5. a second object with the same kind, namespace and name is an error naming both places,
 *    and only the first is kept.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, type Node as YamlNode } from 'yaml';
import { PolicyValidationError } from '../errors.ts';
import { childPath, isPlainObject } from './schema.ts';
import type { LoadedPolicies, Problem } from './types.ts';
import { validateObject } from './validate.ts';

/** File extensions read from directories. */
export const POLICY_EXTENSIONS: readonly string[] = ['.yaml', '.yml', '.json'];

/** One parsed YAML document with the line of every field path. */
interface ParsedDoc {
  value: unknown;
  /** Line of the document's root node. */
  line: number;
  lines: Map<string, number>;
}

/**
 * Loads policy files and directories.
 *
 * @param paths files or directories, in the order given (directories are walked in sorted order)
 * @returns accepted rules and objects, plus every problem (errors and warnings)
 * @example
 * const { rules, problems } = loadPolicyPaths(['policies/']);
 */
export function loadPolicyPaths(paths: string[]): LoadedPolicies & { files: string[] } {
  const problems: Problem[] = [];
  const files: string[] = [];
  const seen = new Set<string>();
  for (const p of paths) collectFiles(p, true, files, seen, problems, new Set());
  const texts: Array<{ file: string; text: string }> = [];
  for (const file of files) {
    try {
      texts.push({ file, text: readFileSync(file, 'utf8') });
    } catch (e) {
      problems.push({ file, line: 0, message: `cannot read file: ${(e as Error).message}`, severity: 'error' });
    }
  }
  const loaded = parseTexts(texts);
  return { ...loaded, problems: [...problems, ...loaded.problems], files };
}

/**
 * Parses and validates policy text, as if it were the content of `fileName`.
 *
 * @param text YAML or JSON, possibly several documents
 * @param fileName name used in problems and origins
 * @returns rules, objects and problems
 * @example
 * const { rules } = parsePolicyText('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n...', 'p.yaml');
 */
export function parsePolicyText(text: string, fileName: string): LoadedPolicies {
  return parseTexts([{ file: fileName, text }]);
}

/**
 * Throws when `loaded` has any error problem; warnings are kept on the thrown error too.
 *
 * @param loaded the result of {@link loadPolicyPaths} or {@link parsePolicyText}
 * @returns `loaded` when it has no error
 * @throws PolicyValidationError listing every problem
 */
export function assertValid<T extends LoadedPolicies>(loaded: T): T {
  if (loaded.problems.some((p) => p.severity === 'error')) throw new PolicyValidationError(loaded.problems);
  return loaded;
}

function collectFiles(
  p: string,
  explicit: boolean,
  out: string[],
  seen: Set<string>,
  problems: Problem[],
  dirsOnStack: Set<string>,
): void {
  let st;
  try {
    st = statSync(p);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file or directory' : err.message;
    problems.push({ file: p, line: 0, message: `cannot read: ${why}`, severity: 'error' });
    return;
  }
  let real = p;
  try {
    real = realpathSync(p);
  } catch {
    // keep p
  }
  if (st.isDirectory()) {
    if (dirsOnStack.has(real)) return; // symlink loop
    let entries: string[];
    try {
      entries = readdirSync(p).sort();
    } catch (e) {
      problems.push({ file: p, line: 0, message: `cannot read directory: ${(e as Error).message}`, severity: 'error' });
      return;
    }
    dirsOnStack.add(real);
    for (const name of entries) {
      if (name.startsWith('.')) continue;
      collectFiles(path.join(p, name), false, out, seen, problems, dirsOnStack);
    }
    dirsOnStack.delete(real);
    return;
  }
  if (!explicit && !POLICY_EXTENSIONS.includes(path.extname(p).toLowerCase())) return;
  if (seen.has(real)) return;
  seen.add(real);
  out.push(p);
}

function parseTexts(texts: Array<{ file: string; text: string }>): LoadedPolicies {
  const result: LoadedPolicies = { rules: [], objects: [], problems: [] };
  const byKey = new Map<string, { file: string; line: number }>();
  for (const { file, text } of texts) {
    for (const doc of parseYamlDocuments(text, file, result.problems)) {
      for (const item of expandLists(doc, file, result.problems)) {
        const r = validateObject(item.value, { file, line: item.line, lineOf: item.lineOf });
        result.problems.push(...r.problems);
        if (r.skipped || !r.origin) continue;
        const key = `${r.origin.kind}/${r.origin.namespace ?? ''}/${r.origin.name}`;
        const first = byKey.get(key);
        if (first) {
          result.problems.push({
            file,
            line: item.line,
            object: r.object,
            message: `duplicate object: ${r.origin.ref} is also defined at ${first.file}:${first.line}`,
            severity: 'error',
          });
          continue;
        }
        byKey.set(key, { file, line: item.line });
        if (r.problems.some((p) => p.severity === 'error')) continue;
        result.objects.push(r.origin);
        result.rules.push(...r.rules);
      }
    }
  }
  return result;
}

/** Parses a YAML stream; documents with syntax errors are reported and dropped. */
function parseYamlDocuments(text: string, file: string, problems: Problem[]): ParsedDoc[] {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, merge: false });
  const out: ParsedDoc[] = [];
  const lineAt = (offset: number) => lc.linePos(offset).line;
  for (const doc of Array.isArray(docs) ? docs : []) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const msg = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
        problems.push({ file, line: lineAt(e.pos[0]), message: `YAML syntax error: ${msg}`, severity: 'error' });
      }
      continue;
    }
    if (doc.contents === null || doc.contents === undefined) continue; // empty document
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 1000 });
    } catch (e) {
      problems.push({ file, line: lineAt(doc.contents.range?.[0] ?? 0), message: `YAML error: ${(e as Error).message}`, severity: 'error' });
      continue;
    }
    if (value === null || value === undefined) continue; // a document holding only `~`/null
    const lines = new Map<string, number>();
    recordLines(doc.contents as YamlNode, '', lines, lineAt, 0);
    out.push({ value, line: lineAt(doc.contents.range?.[0] ?? 0), lines });
  }
  return out;
}

/** Walks the YAML AST recording the line of each field path: keys for map entries, items for lists. */
function recordLines(node: YamlNode, p: string, lines: Map<string, number>, lineAt: (o: number) => number, depth: number): void {
  if (depth > 200) return;
  if (node.range) lines.set(p, lines.get(p) ?? lineAt(node.range[0]));
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const k = pair.key as YamlNode | null;
      const keyText = isScalar(k) ? String(k.value) : undefined;
      if (keyText === undefined) continue;
      const cp = childPath(p, keyText);
      if (k?.range) lines.set(cp, lineAt(k.range[0]));
      const v = pair.value as YamlNode | null;
      if (v && !isAlias(v)) recordLines(v, cp, lines, lineAt, depth + 1);
      // Re-assert the key's line: the value's range may start on a later line.
      if (k?.range) lines.set(cp, lineAt(k.range[0]));
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const it = item as YamlNode | null;
      if (it && !isAlias(it)) recordLines(it, childPath(p, i), lines, lineAt, depth + 1);
    });
  }
}

/** One object to validate, with its line lookup relative to the object. */
interface ObjectItem {
  value: unknown;
  line: number;
  lineOf: (p: string) => number | undefined;
}

/** Expands `List` kinds (rule 3); other documents pass through. */
function expandLists(doc: ParsedDoc, file: string, problems: Problem[]): ObjectItem[] {
  const v = doc.value;
  const rel = (prefix: string) => (p: string) => doc.lines.get(prefix === '' ? p : p === '' ? prefix : p.startsWith('[') ? prefix + p : `${prefix}.${p}`);
  if (isPlainObject(v) && typeof v.kind === 'string' && /List$/.test(v.kind) && 'items' in v) {
    if (!Array.isArray(v.items)) {
      if (v.items !== null) {
        problems.push({ file, line: doc.lines.get('items') ?? doc.line, object: v.kind, field: 'items', message: 'must be a list', severity: 'error' });
      }
      return [];
    }
    return v.items.map((item, i) => {
      const prefix = childPath('items', i);
      return { value: item, line: doc.lines.get(prefix) ?? doc.line, lineOf: rel(prefix) };
    });
  }
  return [{ value: v, line: doc.line, lineOf: rel('') }];
}
