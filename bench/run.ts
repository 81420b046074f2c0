// SPDX-License-Identifier: Apache-2.0
/**
 * `npm run bench`: runs every benchmark in turn (DESIGN §6) and prints their reports.
 *   npm run bench                 all
 *   npm run bench -- policy       only those whose name contains "policy"
 * Record figures in bench/RESULTS.md with the command that produced them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const benches = [
  { name: 'policy-compute', file: 'policy-compute.ts', root: false },
  { name: 'datapath-prog', file: 'datapath-prog.ts', root: true },
  { name: 'datapath', file: 'datapath.ts', root: true },
  { name: 'http', file: 'http.ts', root: true },
  { name: 'dns', file: 'dns.ts', root: true },
];
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));
let failed = 0;
for (const b of benches) {
  if (filters.length && !filters.some((f) => b.name.includes(f))) continue;
  const file = path.join(here, b.file);
  if (!existsSync(file)) continue;
  process.stdout.write(`\n### ${b.name}  (node --import tsx bench/${b.file})\n`);
  if (b.root && process.getuid?.() !== 0) {
    process.stdout.write('skipped: needs root (BPF, network namespaces)\n');
    continue;
  }
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
