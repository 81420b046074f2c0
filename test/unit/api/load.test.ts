// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/api/load
 *
 * Loading files and directories (DESIGN §3.2, §3.3): multi-document YAML, JSON, List kinds,
 * other kinds skipped, duplicates, YAML syntax errors with lines, missing files.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPolicyPaths } from '../../../src/api/load.ts';
import { formatProblem } from '../../../src/api/types.ts';
import { cnp, errors, parse, warnings } from './helpers.ts';

const A = cnp('endpointSelector: {}\ningress: [{}]', { name: 'a' });
const B = cnp('endpointSelector: {}\negress: [{}]', { name: 'b' });

describe('parsePolicyText', () => {
  it('multi-document YAML; empty documents and comments are ignored', () => {
    const l = parse(`# leading comment\n---\n${A}---\n# nothing here\n---\n${B}---\n`);
    assert.deepEqual(
      l.objects.map((o) => o.ref),
      ['CiliumNetworkPolicy/prod/a', 'CiliumNetworkPolicy/prod/b'],
    );
    assert.equal(l.problems.length, 0);
    assert.equal(l.objects[1].location.line, 14);
  });

  it('other kinds are skipped with a warning', () => {
    const l = parse(`apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\n${A}---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\n`);
    assert.equal(l.rules.length, 1);
    const w = warnings(l);
    assert.deepEqual(
      w.map((p) => [p.object, p.line]),
      [
        ['Namespace/prod', 1],
        ['Pod/x', 14],
      ],
    );
    assert.match(w[0].message, /^skipped: Namespace is not a policy kind/);
    assert.equal(errors(l).length, 0);
  });

  it('a document without kind is an error', () => {
    const l = parse('apiVersion: v1\nmetadata: {name: x}\n');
    assert.equal(formatProblem(errors(l)[0]), 'test.yaml:1: kind: required: the object has no kind');
  });

  it('a document that is not a mapping is an error', () => {
    assert.match(errors(parse('- a\n- b\n'))[0].message, /must be a mapping/);
  });

  it('List kinds are expanded; lines and paths stay object-relative', () => {
    const text = `apiVersion: v1
kind: List
items:
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: a}
  spec: {endpointSelector: {}, ingress: [{}]}
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: b}
  spec:
    endpointSelector: {}
    ingress: [{bogus: 1}]
`;
    const l = parse(text);
    assert.deepEqual(
      l.objects.map((o) => [o.ref, o.location.line]),
      [['CiliumNetworkPolicy/default/a', 4]],
    );
    assert.equal(formatProblem(errors(l)[0]), 'test.yaml:13: CiliumNetworkPolicy/b: spec.ingress[0].bogus: unknown field "bogus"');
  });

  it('CiliumNetworkPolicyList is expanded too', () => {
    const l = parse(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicyList\nitems:\n- apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  metadata: {name: a}\n  spec: {endpointSelector: {}, ingress: [{}]}\n`);
    assert.equal(l.rules.length, 1);
  });

  it('JSON is accepted, with lines', () => {
    const json = JSON.stringify(
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'j' }, spec: { endpointSelector: {}, ingress: [{ fromCIDR: ['300.0.0.0/8'] }] } },
      null,
      2,
    );
    const errs = errors(parse(json));
    assert.equal(errs.length, 1);
    assert.equal(errs[0].field, 'spec.ingress[0].fromCIDR[0]');
    assert.equal(errs[0].line, 12);
  });

  it('YAML syntax errors name their line; other documents still load', () => {
    const l = parse(`${A}---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: [unclosed\n`);
    assert.equal(l.rules.length, 1);
    const e = errors(l);
    assert.ok(e.length >= 1);
    assert.match(e[0].message, /^YAML syntax error/);
    assert.ok(e[0].line >= 13, `line ${e[0].line}`);
    assert.equal(e[0].object, undefined);
  });

  it('a bad indentation error names its line', () => {
    const e = errors(parse('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: a\n namespace: b\n'));
    assert.equal(e[0].line, 5);
    assert.match(formatProblem(e[0]), /^test\.yaml:5: YAML syntax error: /);
  });

  it('duplicate keys are a YAML error', () => {
    const e = errors(parse('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nkind: NetworkPolicy\n'));
    assert.equal(e[0].line, 3);
    assert.match(e[0].message, /unique/);
  });

  it('duplicate objects: an error naming both places; the first is kept', () => {
    const l = parse(`${A}---\n${A}`);
    assert.equal(l.objects.length, 1);
    const e = errors(l);
    assert.equal(e.length, 1);
    assert.equal(
      formatProblem(e[0]),
      'test.yaml:10: CiliumNetworkPolicy/a: duplicate object: CiliumNetworkPolicy/prod/a is also defined at test.yaml:1',
    );
  });

  it('same name in different namespaces or kinds is not a duplicate', () => {
    const l = parse(`${A}---\n${cnp('endpointSelector: {}\ningress: [{}]', { name: 'a', ns: 'other' })}---\n${cnp('endpointSelector: {}\ningress: [{}]', { name: 'a', ns: null, kind: 'CiliumClusterwideNetworkPolicy' })}`);
    assert.equal(l.objects.length, 3);
    assert.equal(errors(l).length, 0);
  });

  it('a CNP without namespace and one in default are duplicates (DESIGN §2)', () => {
    const l = parse(`${cnp('endpointSelector: {}\ningress: [{}]', { name: 'a', ns: null })}---\n${cnp('endpointSelector: {}\ningress: [{}]', { name: 'a', ns: 'default' })}`);
    assert.equal(errors(l).length, 1);
  });
});

describe('loadPolicyPaths', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'mbr-load-'));
    mkdirSync(path.join(dir, 'pol', 'sub'), { recursive: true });
    mkdirSync(path.join(dir, 'empty'));
    mkdirSync(path.join(dir, 'pol', '..data'));
    writeFileSync(path.join(dir, 'pol', 'b.yaml'), B);
    writeFileSync(path.join(dir, 'pol', 'sub', 'a.yml'), A);
    writeFileSync(path.join(dir, 'pol', 'c.json'), JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'c' }, spec: { endpointSelector: {}, egress: [{}] } }));
    writeFileSync(path.join(dir, 'pol', 'README.md'), '# not a policy: {');
    writeFileSync(path.join(dir, 'pol', '..data', 'x.yaml'), 'this: [is not read');
    writeFileSync(path.join(dir, 'notes.txt'), A.replace('name: a', 'name: t'));
    symlinkSync(path.join(dir, 'pol'), path.join(dir, 'pol', 'sub', 'loop'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('directories are read recursively in sorted order; only .yaml/.yml/.json; dot entries skipped; symlink loops stop', () => {
    const l = loadPolicyPaths([path.join(dir, 'pol')]);
    assert.deepEqual(l.problems, []);
    assert.deepEqual(
      l.files.map((f) => path.relative(dir, f)),
      ['pol/b.yaml', 'pol/c.json', 'pol/sub/a.yml'],
    );
    assert.deepEqual(
      l.objects.map((o) => o.ref),
      ['CiliumNetworkPolicy/prod/b', 'CiliumClusterwideNetworkPolicy/c', 'CiliumNetworkPolicy/prod/a'],
    );
  });

  it('an empty directory is no policy and no problem', () => {
    const l = loadPolicyPaths([path.join(dir, 'empty')]);
    assert.deepEqual([l.rules.length, l.problems.length, l.files.length], [0, 0, 0]);
  });

  it('a file named explicitly is read whatever its extension; a file given twice is read once', () => {
    const f = path.join(dir, 'notes.txt');
    const l = loadPolicyPaths([f, f]);
    assert.deepEqual(l.objects.map((o) => o.name), ['t']);
  });

  it('a missing path is an error problem', () => {
    const p = path.join(dir, 'missing.yaml');
    const l = loadPolicyPaths([p]);
    assert.equal(formatProblem(l.problems[0]), `${p}:0: cannot read: no such file or directory`);
    assert.equal(l.problems[0].severity, 'error');
  });

  it('duplicates across files name both files', () => {
    writeFileSync(path.join(dir, 'dup.yaml'), B);
    const l = loadPolicyPaths([path.join(dir, 'pol'), path.join(dir, 'dup.yaml')]);
    const e = errors(l);
    assert.equal(e.length, 1);
    assert.equal(e[0].file, path.join(dir, 'dup.yaml'));
    assert.ok(e[0].message.includes(`${path.join(dir, 'pol', 'b.yaml')}:1`));
  });
});
