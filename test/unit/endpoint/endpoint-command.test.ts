// SPDX-License-Identifier: Apache-2.0
/**
 * `membrane endpoint up|down` input handling (exit 2). Every case here is rejected before any
 * network change, so it runs unprivileged and touches nothing.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runDown, runUp } from '../../../src/cli/endpoint-command.ts';
import { captureIo } from '../../../src/cli/io.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'membrane-unit-endpoint-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

test('usage errors exit 2', async () => {
  for (const argv of [[], ['--endpoints'], ['--nope', 'x'], ['extra']]) {
    const io = captureIo();
    assert.equal(await runUp(argv, io), 2, argv.join(' '));
    assert.match(io.stderr, /usage: membrane endpoint up --endpoints FILE/);
  }
});

test('endpoints-file problems: exit 2, one per line, file:line: field: message', async () => {
  const f = write('bad.yaml', ['endpoints:', '  - name: web', '    ips: [10.0.0.300]', '    netns: unit-bad', '    colour: blue', ''].join('\n'));
  for (const run of [runUp, runDown]) {
    const io = captureIo();
    assert.equal(await run(['--endpoints', f], io), 2);
    assert.deepEqual(io.stderr.trimEnd().split('\n').sort(), [
      `${f}:3: endpoints[0].ips[0]: '10.0.0.300' is not an IP address`,
      `${f}:5: endpoints[0].colour: unknown field`,
    ]);
    assert.equal(io.stdout, '');
  }
});

test('unplumbable endpoints: exit 2 before any change', async () => {
  const f = write('v6.yaml', ['endpoints:', '  - name: v6only', '    ips: [fd00::1]', '    netns: unit-v6only', ''].join('\n'));
  const io = captureIo();
  assert.equal(await runUp(['--endpoints', f], io), 2);
  assert.equal(io.stderr, `${f}:2: default/v6only: ips: an endpoint with netns needs at least one IPv4 address\n`);
  assert.equal(io.stdout, '');
});
