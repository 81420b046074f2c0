// SPDX-License-Identifier: Apache-2.0
// Compares src/datapath/layout.ts with the C structs and constants of bpf/lib (DESIGN §3.5): sizes and offsets
// from the BTF of a compiled probe (layout-probe.c), constants, map names and program names from the sources.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL_LAYOUTS, C_CONSTANTS, MAP_NAMES, PROGRAMS } from '../../../src/datapath/layout.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const lib = path.join(root, 'bpf', 'lib');
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

interface BtfMember { name: string; bits_offset: number }
interface BtfType { kind: string; name: string; size?: number; members?: BtfMember[] }

function probeBtf(): Map<string, BtfType> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mbr-layout-'));
  try {
    const obj = path.join(dir, 'probe.o');
    const cc = spawnSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86',
      '-I/usr/include/x86_64-linux-gnu', '-I', lib, '-c', path.join(root, 'test/unit/datapath/layout-probe.c'), '-o', obj], { encoding: 'utf8' });
    assert.equal(cc.status, 0, `clang failed:\n${cc.stderr}`);
    const dump = spawnSync('bpftool', ['-j', 'btf', 'dump', 'file', obj, 'format', 'raw'], { encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(dump.status, 0, `bpftool failed:\n${dump.stderr}`);
    const types = (JSON.parse(dump.stdout) as { types: BtfType[] }).types;
    return new Map(types.filter((t) => t.kind === 'STRUCT').map((t) => [t.name, t]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const toolsMissing = !have('clang') || !have('bpftool') ? 'needs clang and bpftool (apt-get install clang bpftool)' : false;

test('every mirrored struct has the C size and member offsets', { skip: toolsMissing }, () => {
  const btf = probeBtf();
  for (const l of ALL_LAYOUTS) {
    const t = btf.get(l.cName);
    assert.ok(t, `struct ${l.cName} not found in the probe's BTF (is it in ${l.header}?)`);
    assert.equal(t.size, l.size, `sizeof(struct ${l.cName})`);
    const cFields = Object.fromEntries((t.members ?? []).map((m) => [m.name, m.bits_offset / 8]));
    assert.deepEqual(l.fields, cFields, `members and offsets of struct ${l.cName} (C: ${JSON.stringify(cFields)})`);
  }
});

function headerDefines(): Map<string, number> {
  const defs = new Map<string, number>();
  for (const f of readdirSync(lib).filter((n) => n.endsWith('.h'))) {
    for (const line of readFileSync(path.join(lib, f), 'utf8').split('\n')) {
      const m = /^#define\s+([A-Z0-9_]+)\s+\(?(-?(?:0x[0-9a-fA-F]+|\d+))\)?\s*(?:\/\*.*)?$/.exec(line);
      if (m) defs.set(m[1], Number(m[2]));
    }
  }
  return defs;
}

test('every constant mirrored in layout.ts equals its #define', () => {
  const defs = headerDefines();
  for (const [name, value] of Object.entries(C_CONSTANTS)) {
    assert.ok(defs.has(name), `#define ${name} not found in bpf/lib/*.h`);
    assert.equal(value, defs.get(name), name);
  }
});

test('flag and enum families in the headers are all mirrored', () => {
  const defs = headerDefines();
  const families = /^(EP_F_|CFG_F_|CT_F_|CT_DEC_|SIDE_|MATCH_|VERDICT_|OBS_|MARK_MAGIC_|EV_F_|METRIC_EVENT_|IDENTITY_|DIR_)/;
  const missing = [...defs.keys()].filter((n) => families.test(n) && !(n in C_CONSTANTS));
  assert.deepEqual(missing, [], 'constants defined in C but not mirrored in src/datapath/layout.ts');
});

test('map names match the headers and fit the kernel limit of 15 characters', () => {
  const names = new Set<string>();
  for (const f of readdirSync(lib).filter((n) => n.endsWith('.h'))) {
    for (const m of readFileSync(path.join(lib, f), 'utf8').matchAll(/^\}\s*(\w+)\s+SEC\("\.maps"\);/gm)) names.add(m[1]);
  }
  assert.deepEqual([...names].sort(), Object.values(MAP_NAMES).sort());
  for (const n of names) {
    assert.ok(n.length <= 15, `${n} is longer than 15 characters`);
    assert.match(n, /^mbr_[a-z]+_v\d+$/);
  }
});

test('entry program names match the C sources', () => {
  const names = new Set<string>();
  for (const f of readdirSync(path.join(root, 'bpf')).filter((n) => n.endsWith('.c'))) {
    for (const m of readFileSync(path.join(root, 'bpf', f), 'utf8').matchAll(/SEC\("tc"\)\s*\nint\s+(\w+)\(/g)) names.add(m[1]);
  }
  assert.deepEqual([...names].sort(), Object.values(PROGRAMS).sort());
});
