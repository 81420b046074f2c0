// SPDX-License-Identifier: Apache-2.0
/**
 * gRPC through the real redirect (issue: "@grpc/grpc-js as clients"): a grpc-js client in one
 * pod calls a grpc-js server in another; the datapath redirects the calls to `membrane proxy`,
 * which allows shop.Catalog/GetItem and answers DeleteItem with grpc-status 7
 * (PERMISSION_DENIED, DESIGN §2) without breaking the channel; each call is one L7 flow in
 * `membrane observe` naming the policy that decided it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNode, requirePrivileges, inNs } from './helpers/index.ts';
import { startAgent } from './helpers/agent.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const peer = path.join(root, 'scripts', 'demo-grpc.mjs');

test('gRPC through the redirect: allowed call, denied call (grpc-status 7), L7 flows', async (t) => {
  if (!requirePrivileges(t)) return;
  const node = await createNode('grpc', { t });
  node.writeEndpoints(
    [
      { name: 'client', namespace: 'shop', labels: { app: 'client' }, ips: ['10.210.1.10'] },
      { name: 'server', namespace: 'shop', labels: { app: 'server' }, ips: ['10.210.1.20'] },
    ],
    { namespaces: [{ name: 'shop', labels: {} }] },
  );
  await node.up();
  const dir = path.join(node.dir, 'policies');
  mkdirSync(dir);
  writeFileSync(
    path.join(dir, 'grpc.yaml'),
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: catalog-read-only, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "50051", protocol: TCP}]
      rules:
        http:
        - method: POST
          path: /shop.Catalog/GetItem
`,
  );
  const agent = startAgent(node, { policies: dir });
  await agent.waitReady();
  const server = node.spawn('nsenter', [`--net=/run/netns/${node.pod('shop/server')}`, process.execPath, peer, 'server', '50051']);
  await server.waitFor(/ready/);
  const call = async (method: string) => {
    const r = await inNs(node.pod('shop/client'), process.execPath, [peer, 'call', '10.210.1.20:50051', method], { timeoutMs: 10_000 });
    return JSON.parse(r.stdout.trim()) as { ok: boolean; code: number; details: string };
  };
  assert.deepEqual(await call('GetItem'), { method: 'GetItem', ok: true, code: 0, details: '' });
  const denied = await call('DeleteItem');
  assert.equal(denied.ok, false);
  assert.equal(denied.code, 7, 'PERMISSION_DENIED');
  assert.match(denied.details, /Access denied/);
  assert.equal((await call('GetItem')).ok, true, 'allowed calls still work after a denial');
  const flows = (await agent.flows()).filter((f) => (f.l7 as { type?: string } | null)?.type === 'http');
  const byUrl = (u: string) => flows.filter((f) => (f.l7 as { url: string }).url === u);
  assert.ok(byUrl('/shop.Catalog/GetItem').length >= 2);
  const d = byUrl('/shop.Catalog/DeleteItem').at(-1)!;
  assert.equal(d.verdict, 'DROPPED');
  assert.deepEqual((d.ingress as { deniedBy: string[] }).deniedBy, ['CiliumNetworkPolicy/shop/catalog-read-only']);
  assert.equal((byUrl('/shop.Catalog/GetItem').at(-1)!.ingress as { allowedBy: string[] }).allowedBy[0], 'CiliumNetworkPolicy/shop/catalog-read-only');
});
