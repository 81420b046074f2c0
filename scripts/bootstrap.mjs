// SPDX-License-Identifier: Apache-2.0
// First step of `npm test`, `npm run demo` and `bin/membrane`: plain JS, no dependencies.
// Installs node_modules when missing (npm ci) and builds the BPF objects when they are
// missing or older than their sources. Safe to run repeatedly; quiet when nothing to do.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`bootstrap: '${cmd} ${args.join(' ')}' failed (exit ${r.status})\n`);
    process.exit(r.status ?? 1);
  }
}

export function ensureNodeModules() {
  const probes = ['tsx', 'yaml', 're2', 'koffi'].map((m) => path.join(root, 'node_modules', m, 'package.json'));
  if (probes.every((p) => existsSync(p)) && existsSync(path.join(root, 'node_modules', 're2', 'build', 'Release', 're2.node'))) return;
  process.stderr.write('bootstrap: installing node_modules (npm ci)…\n');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

export async function ensureBpf(force = false) {
  const { buildBpf } = await import('./build-bpf.mjs');
  await buildBpf({ force, quiet: true });
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  ensureNodeModules();
  await ensureBpf(process.argv.includes('--build'));
}
