// SPDX-License-Identifier: Apache-2.0
/**
 * Golden policy tests (STYLE B5): every policies/** case, with the identity fixture
 * test/golden/endpoints.yaml, must produce the MapState recorded in test/golden/<case>.json and
 * the hand-written trace verdicts listed there (each citing the reference section it follows),
 * for every rule order (all orders up to 4 rule elements, 24 seeded random orders beyond).
 * `UPDATE_GOLDEN=1` rewrites only the recorded MapState; flow expectations are written by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPolicyPaths } from '../../src/api/load.ts';
import { readEndpointsFile } from '../../src/endpoint/endpoints-file.ts';
import { buildEngine } from '../../src/endpoint/standalone.ts';
import { run as traceRun } from '../../src/cli/trace-command.ts';
import { captureIo } from '../../src/cli/io.ts';
import { renderMapState, ruleOrders, splitArgs } from '../helpers/golden.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const goldenDir = path.join(root, 'test', 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

interface Golden {
  policy: string;
  endpoints: string;
  flows: Array<{ args: string; verdict: string; note?: string; egress?: Record<string, unknown>; ingress?: Record<string, unknown> }>;
  mapState?: Record<string, string[]>;
}

function walk(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir).sort()) {
    const p = path.join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (n.endsWith('.yaml')) out.push(p);
  }
  return out;
}

const policyFiles = walk(path.join(root, 'policies'));

test('every policies/ case has a golden file', () => {
  for (const f of policyFiles) {
    const name = path.basename(f, '.yaml');
    assert.ok(readdirSync(goldenDir).includes(`${name}.json`), `missing test/golden/${name}.json for ${path.relative(root, f)}`);
  }
});

for (const file of policyFiles) {
  const name = path.basename(file, '.yaml');
  const goldenPath = path.join(goldenDir, `${name}.json`);
  let golden: Golden;
  try {
    golden = JSON.parse(readFileSync(goldenPath, 'utf8'));
  } catch {
    continue;
  }
  test(`golden ${name}`, async (t) => {
    const loaded = loadPolicyPaths([file]);
    assert.deepEqual(loaded.problems.filter((p) => p.severity === 'error'), [], 'policy must validate');
    const endpoints = readEndpointsFile(path.join(root, golden.endpoints));

    const mapStateOf = (rules: typeof loaded.rules) => {
      const engine = buildEngine(endpoints, rules);
      const out: Record<string, string[]> = {};
      for (const ep of engine.endpoints()) {
        const view = engine.endpointPolicy(ep.ref);
        if (!view.selectorPolicy.ingress.enforced && !view.selectorPolicy.egress.enforced) continue;
        out[ep.ref] = renderMapState(engine, view.mapState.entries());
      }
      return out;
    };

    await t.test('MapState', () => {
      const actual = mapStateOf(loaded.rules);
      if (update) {
        golden.mapState = actual;
        writeFileSync(goldenPath, JSON.stringify(golden, null, 2) + '\n');
      }
      assert.deepEqual(actual, golden.mapState);
    });

    await t.test('MapState is the same for every rule order', () => {
      const orders = ruleOrders(loaded.rules);
      for (const [i, rules] of orders.entries()) assert.deepEqual(mapStateOf(rules), golden.mapState, `order #${i}`);
    });

    for (const flow of golden.flows) {
      await t.test(`${flow.args}${flow.note ? ` (${flow.note})` : ''}`, async () => {
        const io = captureIo();
        const code = await traceRun(['--policies', file, '--endpoints', path.join(root, golden.endpoints), ...splitArgs(flow.args), '--json'], io);
        assert.equal(code, 0, io.stderr);
        const res = JSON.parse(io.stdout);
        assert.equal(res.verdict, flow.verdict, io.stdout);
        for (const side of ['egress', 'ingress'] as const) {
          const want = flow[side];
          if (!want) continue;
          for (const [k, v] of Object.entries(want)) assert.deepEqual(res[side][k], v, `${side}.${k} in ${io.stdout}`);
        }
      });
    }
  });
}
