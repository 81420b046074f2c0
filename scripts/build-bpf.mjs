// SPDX-License-Identifier: Apache-2.0
// Builds bpf/*.c into build/bpf/*.o with clang -target bpf. Rebuilds only what is stale.
// When clang or the libbpf headers are missing and we are root on Debian, installs them
// (clang, llvm, libbpf-dev, linux-libc-dev); otherwise explains what is needed.
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bpfDir = path.join(root, 'bpf');
const outDir = path.join(root, 'build', 'bpf');

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function ensureToolchain(quiet) {
  const ok = () => have('clang') && existsSync('/usr/include/bpf/bpf_helpers.h') && existsSync('/usr/lib/x86_64-linux-gnu/libbpf.so.1');
  if (ok()) return;
  if (process.getuid?.() !== 0 || !have('apt-get')) {
    throw new Error('building the BPF programs needs clang, libbpf-dev and linux-libc-dev (apt-get install clang libbpf-dev linux-libc-dev)');
  }
  if (!quiet) process.stderr.write('build-bpf: installing clang, libbpf-dev…\n');
  process.stderr.write('build-bpf: installing clang libbpf-dev linux-libc-dev bpftool (apt-get)…\n');
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', 'clang', 'llvm', 'libbpf-dev', 'linux-libc-dev', 'bpftool'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0 || !ok()) throw new Error('apt-get install of clang/libbpf-dev failed');
}

function newestMtime(files) {
  return Math.max(0, ...files.map((f) => statSync(f).mtimeMs));
}

/** Builds every bpf/*.c into build/bpf/<name>.o when stale. Returns the object paths. */
export async function buildBpf({ force = false, quiet = false } = {}) {
  if (!existsSync(bpfDir)) return [];
  const sources = readdirSync(bpfDir).filter((f) => f.endsWith('.c')).map((f) => path.join(bpfDir, f));
  if (sources.length === 0) return [];
  const libDir = path.join(bpfDir, 'lib');
  const headers = existsSync(libDir) ? readdirSync(libDir).filter((f) => f.endsWith('.h')).map((f) => path.join(libDir, f)) : [];
  const headerTime = newestMtime(headers);
  const stale = sources.filter((src) => {
    const obj = path.join(outDir, path.basename(src, '.c') + '.o');
    return force || !existsSync(obj) || statSync(obj).mtimeMs < Math.max(statSync(src).mtimeMs, headerTime);
  });
  if (stale.length === 0) return sources.map((s) => path.join(outDir, path.basename(s, '.c') + '.o'));
  ensureToolchain(quiet);
  mkdirSync(outDir, { recursive: true });
  for (const src of stale) {
    const obj = path.join(outDir, path.basename(src, '.c') + '.o');
    const args = ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86',
      '-I/usr/include/x86_64-linux-gnu', '-I', libDir, '-c', src, '-o', obj];
    const r = spawnSync('clang', args, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error(`clang failed for ${path.relative(root, src)}`);
    if (!quiet) process.stderr.write(`build-bpf: ${path.relative(root, obj)}\n`);
  }
  return sources.map((s) => path.join(outDir, path.basename(s, '.c') + '.o'));
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  try {
    await buildBpf({ force: process.argv.includes('--force') });
  } catch (e) {
    process.stderr.write(`build-bpf: ${e.message}\n`);
    process.exit(1);
  }
}
