// SPDX-License-Identifier: Apache-2.0
/**
 * Benchmark: policy computation at scale (DESIGN §6). 10,000 endpoints in 50 namespaces
 * (20 deployments × 10 replicas each, so ~1,000 identities) and 2,000 policies with a realistic
 * mix: L3/L4 allows between neighbouring services, HTTP rules, DNS + toFQDNs egress, CIDR
 * egress, deny rules and a few cluster-wide policies. Measures the full computation, one policy
 * change to its MapChanges, one endpoint arrival, and peak RSS.
 *
 *   node --import tsx bench/policy-compute.ts [--json]
 * Targets: full < 2 s, one change < 50 ms, peak RSS < 300 MB.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPolicyPaths } from '../src/api/load.ts';
import type { EndpointsFile } from '../src/endpoint/endpoints-file.ts';
import { buildEngine, rulesByObject } from '../src/endpoint/standalone.ts';

const NAMESPACES = Number(process.env.BENCH_NS ?? 50);
const DEPLOYMENTS = 20;
const REPLICAS = 10;
const POLICIES_PER_NS = 40;
const TIERS = ['web', 'api', 'db', 'cache'];
const ENVS = ['prod', 'staging', 'dev'];

function policyYaml(ns: number, i: number): string {
  const name = `ns${ns}`;
  const k = i % DEPLOYMENTS;
  const next = (k + 1) % DEPLOYMENTS;
  const prev = (k + DEPLOYMENTS - 1) % DEPLOYMENTS;
  const meta = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p${i}\n  namespace: ${name}\nspec:\n  endpointSelector:\n    matchLabels:\n      app: svc-${k}\n`;
  switch (i % 8) {
    case 0:
    case 1:
      return `${meta}  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            app: svc-${prev}\n      toPorts:\n        - ports:\n            - port: "8080"\n              protocol: TCP\n`;
    case 2:
      return `${meta}  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            tier: web\n      toPorts:\n        - ports:\n            - port: "8080"\n              protocol: TCP\n          rules:\n            http:\n              - method: GET\n                path: "/api/v1/.*"\n              - method: POST\n                path: /api/v1/orders\n`;
    case 3:
      return `${meta}  egress:\n    - toEndpoints:\n        - matchLabels:\n            app: svc-${next}\n      toPorts:\n        - ports:\n            - port: "8080"\n              protocol: TCP\n`;
    case 4:
      return `${meta}  egress:\n    - toEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: kube-system\n            k8s-app: kube-dns\n      toPorts:\n        - ports:\n            - port: "53"\n              protocol: ANY\n          rules:\n            dns:\n              - matchPattern: "*.svc${k}.example.com"\n    - toFQDNs:\n        - matchPattern: "*.svc${k}.example.com"\n      toPorts:\n        - ports:\n            - port: "443"\n              protocol: TCP\n`;
    case 5:
      return `${meta}  egress:\n    - toCIDRSet:\n        - cidr: 172.${16 + (i % 16)}.0.0/16\n          except:\n            - 172.${16 + (i % 16)}.${ns}.0/24\n      toPorts:\n        - ports:\n            - port: "5432"\n              protocol: TCP\n`;
    case 6:
      return `${meta}  ingressDeny:\n    - fromEndpoints:\n        - matchLabels:\n            tier: cache\n      toPorts:\n        - ports:\n            - port: "9000"\n              endPort: 9100\n              protocol: TCP\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            io.cilium.k8s.namespace.labels.env: ${ENVS[ns % 3]}\n`;
    default:
      return `${meta}  ingress:\n    - fromEntities:\n        - host\n        - world\n      toPorts:\n        - ports:\n            - port: "443"\n              protocol: TCP\n`;
  }
}

function ccnpYaml(i: number): string {
  return `apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: cw${i}\nspec:\n  endpointSelector:\n    matchLabels:\n      tier: ${TIERS[i % 4]}\n  egress:\n    - toEndpoints:\n        - matchLabels:\n            io.kubernetes.pod.namespace: kube-system\n            k8s-app: kube-dns\n      toPorts:\n        - ports:\n            - port: "53"\n              protocol: UDP\n`;
}

function endpointsFile(): EndpointsFile {
  const eps: EndpointsFile['endpoints'] = [];
  let n = 0;
  for (let ns = 0; ns < NAMESPACES; ns++) {
    for (let d = 0; d < DEPLOYMENTS; d++) {
      for (let r = 0; r < REPLICAS; r++) {
        n++;
        eps.push({
          name: `svc-${d}-${r}`,
          namespace: `ns${ns}`,
          labels: { app: `svc-${d}`, tier: TIERS[d % 4]!, version: d % 3 === 0 ? 'v2' : 'v1', 'pod-template-hash': `h${d}${ns}` },
          ips: [`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`],
          namedPorts: { http: { port: 8080, protocol: 'TCP' } },
          line: 0,
        });
      }
    }
  }
  eps.push({ name: 'coredns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' }, ips: ['10.96.0.10'], line: 0 });
  return {
    file: 'bench',
    gateway: '169.254.1.1',
    namespaces: Array.from({ length: NAMESPACES }, (_, ns) => ({ name: `ns${ns}`, labels: { env: ENVS[ns % 3]!, team: `team-${ns % 5}` } })),
    endpoints: eps,
  };
}

const ms = (a: bigint, b: bigint) => Number(b - a) / 1e6;

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'mbr-bench-'));
  try {
    let count = 0;
    for (let ns = 0; ns < NAMESPACES; ns++) {
      const docs: string[] = [];
      for (let i = 0; i < POLICIES_PER_NS - (ns < 10 ? 1 : 0); i++) docs.push(policyYaml(ns, i));
      count += docs.length;
      writeFileSync(path.join(dir, `ns${ns}.yaml`), docs.join('---\n'));
    }
    const ccnps = Array.from({ length: 10 }, (_, i) => ccnpYaml(i));
    count += ccnps.length;
    writeFileSync(path.join(dir, 'clusterwide.yaml'), ccnps.join('---\n'));

    const t0 = process.hrtime.bigint();
    const loaded = loadPolicyPaths([dir]);
    const t1 = process.hrtime.bigint();
    const errors = loaded.problems.filter((p) => p.severity === 'error');
    if (errors.length) throw new Error(`bench policies invalid: ${JSON.stringify(errors.slice(0, 3))}`);
    const eps = endpointsFile();

    const t2 = process.hrtime.bigint();
    const engine = buildEngine(eps, loaded.rules);
    const computeErrors = engine.computeAll();
    const t3 = process.hrtime.bigint();
    if (computeErrors.size) throw new Error(`compute errors: ${[...computeErrors.values()][0]}`);
    let entries = 0;
    const identities = new Set<number>();
    for (const ep of engine.endpoints()) {
      const v = engine.endpointPolicy(ep.ref);
      entries += v.mapState.size;
      identities.add(ep.identity.id);
    }

    // one policy change, 21 times on different policies: each gains a port; median reported
    const byObject = rulesByObject(loaded.rules);
    const changeTimes: number[] = [];
    let changeCount = 0;
    let changeEndpoints = 0;
    for (let k = 0; k < 21; k++) {
      const ns = (k * 7) % NAMESPACES;
      const i = (k * 8) % POLICIES_PER_NS; // case 0: an L3/L4 ingress policy
      const changed = loadPolicyPaths([writeTemp(dir, policyYaml(ns, i).replace('port: "8080"', 'port: "8081"'))]).rules;
      const t4 = process.hrtime.bigint();
      const changes = engine.replacePolicyObject(`CiliumNetworkPolicy/ns${ns}/p${i}`, changed);
      changeTimes.push(ms(t4, process.hrtime.bigint()));
      if (k === 0) {
        for (const mc of changes.byEndpoint.values()) changeCount += mc.adds.length + mc.deletes.length;
        changeEndpoints = changes.byEndpoint.size;
      }
    }
    changeTimes.sort((x, y) => x - y);

    // one cluster-wide change touching many endpoints
    const cw = byObject.get('CiliumClusterwideNetworkPolicy/cw0')!;
    const t6 = process.hrtime.bigint();
    const cwChanges = engine.replacePolicyObject('CiliumClusterwideNetworkPolicy/cw0', []);
    const t7 = process.hrtime.bigint();
    engine.replacePolicyObject('CiliumClusterwideNetworkPolicy/cw0', cw);

    // one endpoint arrives (new identity)
    const t8 = process.hrtime.bigint();
    const epChanges = engine.upsertEndpoint({ name: 'newcomer', namespace: 'ns3', labels: { app: 'svc-4', tier: 'web', version: 'v9' }, ips: ['10.99.0.1'] });
    const t9 = process.hrtime.bigint();

    const result = {
      endpoints: eps.endpoints.length,
      identities: identities.size,
      policies: count,
      rules: loaded.rules.length,
      mapEntries: entries,
      parseValidateMs: ms(t0, t1),
      fullComputeMs: ms(t2, t3),
      onePolicyChangeMsMedian: changeTimes[10]!,
      onePolicyChangeMsMax: changeTimes[20]!,
      onePolicyChangeMapChanges: changeCount,
      onePolicyChangeEndpoints: changeEndpoints,
      clusterwideRemoveMs: ms(t6, t7),
      clusterwideRemoveEndpoints: cwChanges.byEndpoint.size,
      oneEndpointAddMs: ms(t8, t9),
      oneEndpointAddEndpointsChanged: epChanges.byEndpoint.size,
      peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(result) + '\n');
    else {
      process.stdout.write('policy-compute\n');
      for (const [k, v] of Object.entries(result)) process.stdout.write(`  ${k.padEnd(34)} ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : v}\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let tempN = 0;
function writeTemp(dir: string, text: string): string {
  const p = path.join(dir, '..', `${path.basename(dir)}-change-${tempN++}.yaml`);
  writeFileSync(p, text);
  return p;
}

await main();
