// SPDX-License-Identifier: Apache-2.0
/**
 * The whole tree typechecks (TypeScript strict) and passes eslint, including the module
 * boundaries of STYLE.md B2 (no-restricted-imports per directory).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = (name: string) => path.join(root, 'node_modules', '.bin', name);

test('tsc --noEmit (strict) is clean', () => {
  const r = spawnSync(bin('tsc'), ['-p', 'tsconfig.json', '--noEmit'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('eslint is clean (module boundaries included)', () => {
  const r = spawnSync(bin('eslint'), ['.'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
