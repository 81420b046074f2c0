// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/cli/validate
 *
 * `membrane policy validate PATH...` (DESIGN §3.3): exit codes and the exact line format
 * `file:line: Kind/name: field.path: what is wrong`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { captureIo } from '../../../src/cli/io.ts';
import { run } from '../../../src/cli/validate-command.ts';
import { main } from '../../../src/cli/main.ts';

const GOOD = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web
  namespace: prod
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
`;
const BAD = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: bad
spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports:
      - port: "80"
        protocol: TCP
      - port: "70000"
        protocol: TCP
`;

describe('membrane policy validate', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'mbr-validate-'));
    mkdirSync(path.join(dir, 'ok'));
    mkdirSync(path.join(dir, 'empty'));
    writeFileSync(path.join(dir, 'ok', 'a.yaml'), GOOD);
    writeFileSync(path.join(dir, 'ok', 'b.yaml'), GOOD.replace('name: web', 'name: api') + '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n');
    writeFileSync(path.join(dir, 'bad.yaml'), BAD);
    writeFileSync(path.join(dir, 'syntax.yaml'), 'kind: CiliumNetworkPolicy\nmetadata:\n  name: a\n namespace: b\n');
    writeFileSync(path.join(dir, 'req.yaml'), GOOD.replace('fromEndpoints: [{}]', 'fromRequires: [{matchLabels: {env: prod}}]'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('valid objects: exit 0, summary on stdout, skipped kinds warned on stderr', async () => {
    const io = captureIo();
    assert.equal(await run([path.join(dir, 'ok')], io), 0);
    assert.equal(io.stdout, '2 objects valid (2 files), 1 object of other kinds skipped\n');
    assert.equal(io.stderr, `${path.join(dir, 'ok', 'b.yaml')}:11: Namespace/prod: warning: skipped: Namespace is not a policy kind (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy)\n`);
  });

  it('one object, one file: singular summary', async () => {
    const io = captureIo();
    assert.equal(await run([path.join(dir, 'ok', 'a.yaml')], io), 0);
    assert.equal(io.stdout, '1 object valid (1 file)\n');
    assert.equal(io.stderr, '');
  });

  it('an invalid object: exit 1 and the exact line', async () => {
    const io = captureIo();
    const f = path.join(dir, 'bad.yaml');
    assert.equal(await run([f], io), 1);
    assert.equal(io.stderr, `${f}:12: CiliumNetworkPolicy/bad: spec.ingress[0].toPorts[0].ports[1].port: invalid port "70000": must be 0..65535\n`);
    assert.equal(io.stdout, '');
  });

  it('a YAML syntax error names its line', async () => {
    const io = captureIo();
    const f = path.join(dir, 'syntax.yaml');
    assert.equal(await run([f], io), 1);
    assert.match(io.stderr, new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:4: YAML syntax error: `));
  });

  it('a missing file is a problem (exit 1)', async () => {
    const io = captureIo();
    const f = path.join(dir, 'nope.yaml');
    assert.equal(await run([path.join(dir, 'ok'), f], io), 1);
    assert.equal(io.stderr.split('\n').filter((l) => l.startsWith(f)).join('\n'), `${f}:0: cannot read: no such file or directory`);
  });

  it('warnings (fromRequires deprecation) do not fail', async () => {
    const io = captureIo();
    const f = path.join(dir, 'req.yaml');
    assert.equal(await run([f], io), 0);
    assert.equal(
      io.stderr,
      `${f}:9: CiliumNetworkPolicy/web: spec.ingress[0].fromRequires: warning: fromRequires is deprecated (removed in Cilium 1.19); it is applied with the Cilium 1.18 meaning\n`,
    );
    assert.equal(io.stdout, '1 object valid (1 file)\n');
  });

  it('an empty directory is valid with no objects', async () => {
    const io = captureIo();
    assert.equal(await run([path.join(dir, 'empty')], io), 0);
    assert.equal(io.stdout, '0 objects valid (0 files)\n');
  });

  it('no paths: usage error, exit 1; unknown option: exit 1; --help: exit 0', async () => {
    const a = captureIo();
    assert.equal(await run([], a), 1);
    assert.match(a.stderr, /no PATH given\nusage: membrane policy validate PATH\.\.\./);
    const b = captureIo();
    assert.equal(await run(['--strict'], b), 1);
    assert.match(b.stderr, /unknown option --strict/);
    const c = captureIo();
    assert.equal(await run(['--help'], c), 0);
    assert.match(c.stdout, /^usage: membrane policy validate/);
  });

  it('is reachable through the dispatcher', async () => {
    const io = captureIo();
    assert.equal(await main(['policy', 'validate', path.join(dir, 'bad.yaml')], io), 1);
    assert.match(io.stderr, /bad\.yaml:12: CiliumNetworkPolicy\/bad: /);
  });
});
