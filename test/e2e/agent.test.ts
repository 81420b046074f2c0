// SPDX-License-Identifier: Apache-2.0
/**
 * End-to-end tests of the standalone node agent (DESIGN §3.4, issue "Kernel datapath,
 * standalone agent"): the status/observe contract, incremental edits of the policies and
 * endpoints, no enforcement gap during edits, restart safety under load (kill -9, stale map
 * entries reconciled), fail closed (unmergeable policy, failed attach) and cleanup.
 *
 * Each test has its own node namespace and its own agent (`--bpf-root
 * /sys/fs/bpf/membrane-test-<pid>-<n>`, socket and state dir in the node's temp dir); the
 * node's cleanup runs `membrane cleanup` for it (see helpers/agent.ts).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createNode, REPO_ROOT, requirePrivileges, startServer, tcpRequest, type NodeTopology, type TestEndpoint } from './helpers/index.ts';
import { agentPaths, AgentHandle, startAgent, startLoop, summarize, type AgentStatus, type Attempt } from './helpers/agent.ts';

const FRONTEND = 'prod/frontend';
const BACKEND = 'prod/backend';
const FRONTEND_IP = '10.200.1.10';
const BACKEND_IP = '10.200.1.20';
const ALLOWED = 8080;
const DENIED = 9090;
const OTHER = 7070;

const BASE_ENDPOINTS: TestEndpoint[] = [
  { name: 'frontend', namespace: 'prod', labels: { app: 'frontend', role: 'frontend' }, ips: [FRONTEND_IP] },
  { name: 'backend', namespace: 'prod', labels: { app: 'backend' }, ips: [BACKEND_IP] },
];
const NAMESPACES = [{ name: 'prod', labels: { env: 'prod' } }];

/** The top-level fields of an `observe --json` line and of a SIDE (DESIGN §3.4). */
const FLOW_KEYS = ['destination', 'dropReason', 'egress', 'ingress', 'l7', 'protocol', 'source', 'time', 'verdict'];
const PEER_KEYS = ['identity', 'ip', 'name', 'namespace', 'port'];
const SIDE_KEYS = ['allowedBy', 'deniedBy', 'enforced', 'reason', 'verdict'];

/** A CiliumNetworkPolicy selecting `app: <app>` with one ingress rule per entry. */
function cnp(name: string, app: string, rules: Array<{ from: Record<string, string>; ports: number[]; l7?: string }>): string {
  const lines = ['apiVersion: cilium.io/v2', 'kind: CiliumNetworkPolicy', `metadata: {name: ${name}, namespace: prod}`, 'spec:', `  endpointSelector: {matchLabels: {app: ${app}}}`, '  ingress:'];
  for (const r of rules) {
    const from = Object.entries(r.from)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    lines.push(`  - fromEndpoints: [{matchLabels: {${from}}}]`);
    lines.push('    toPorts:');
    lines.push(`    - ports: [${r.ports.map((p) => `{port: "${p}", protocol: TCP}`).join(', ')}]`);
    if (r.l7) lines.push(`      rules: ${r.l7}`);
  }
  return lines.join('\n') + '\n';
}

/** The base policy: frontend may reach backend on ALLOWED (and `extra` ports). */
const basePolicy = (extra: number[] = []) => cnp('be', 'backend', [{ from: { role: 'frontend' }, ports: [ALLOWED, ...extra] }]);

/** Writes a policy file as editors do: a temp file in the same directory, then rename. */
function writePolicy(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.swp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
  return file;
}

interface Setup {
  node: NodeTopology;
  policyDir: string;
}

/** A node with frontend and backend plumbed, a policies directory holding `policies`, and servers on backend. */
async function setup(t: TestContext, tag: string, policies: Record<string, string>, opts: { extra?: TestEndpoint[] } = {}): Promise<Setup> {
  const node = await createNode(tag, { t });
  node.writeEndpoints([...BASE_ENDPOINTS, ...(opts.extra ?? [])], { namespaces: NAMESPACES });
  await node.up();
  const policyDir = path.join(node.dir, 'policies');
  mkdirSync(policyDir);
  for (const [name, text] of Object.entries(policies)) writePolicy(policyDir, name, text);
  await startServer(node.pod(BACKEND), { tcp: [ALLOWED, DENIED, OTHER] });
  return { node, policyDir };
}

/** Starts the agent and registers killing it (before `membrane cleanup`) on the node. */
async function agentFor(s: Setup, extraArgs: string[] = []): Promise<AgentHandle> {
  const agent = startAgent(s.node, { policies: s.policyDir, extraArgs });
  s.node.onCleanup(async () => {
    await agent.proc.kill('SIGKILL');
  });
  return agent;
}

const conn = async (s: Setup, to: string, port: number, from = FRONTEND, timeoutMs = 500) =>
  (await tcpRequest(s.node.pod(from), s.node.ipOf(to), port, { timeoutMs })).result;

/** Asserts the verdicts of frontend → backend on the given ports. */
async function expectTraffic(s: Setup, want: Record<number, 'ok' | 'drop'>, what: string): Promise<void> {
  for (const [port, v] of Object.entries(want)) {
    const r = await conn(s, BACKEND, Number(port));
    if (v === 'ok') assert.equal(r, 'ok', `${what}: frontend -> backend:${port} should connect`);
    else assert.equal(r, 'timeout', `${what}: frontend -> backend:${port} should be dropped`);
  }
}

/** tc filters (program ids) on a hook of an interface in the node namespace. */
async function tcFilters(node: NodeTopology, ifname: string, dir: 'ingress' | 'egress'): Promise<number[]> {
  const r = await node.exec('tc', ['filter', 'show', 'dev', ifname, dir]);
  if (r.code !== 0) {
    if (/Cannot find device|No such device/.test(r.stderr)) return [];
    throw new Error(`tc filter show dev ${ifname} ${dir}: ${r.stderr}`);
  }
  return [...r.stdout.matchAll(/\bid (\d+)/g)].map((m) => Number(m[1]));
}

/** Runs a datapath snippet (ESM, top-level await; `dp` is src/datapath/index.ts) in a child inside the node namespace. */
async function datapathSnippet(node: NodeTopology, body: string): Promise<string> {
  const code = `const dp = await import(${JSON.stringify(path.join(REPO_ROOT, 'src', 'datapath', 'index.ts'))});\n${body}`;
  const r = await node.exec(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: REPO_ROOT });
  assert.equal(r.code, 0, `datapath snippet failed: ${r.stderr}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function endpointOf(s: AgentStatus, ref: string) {
  const e = AgentHandle.endpointOf(s, ref);
  assert.ok(e, `status lists ${ref}: ${JSON.stringify(s.endpoints)}`);
  return e;
}

// ─────────────────────────────────────────────────────────────────────────────────────────

test('status and observe follow the DESIGN §3.4 contract', async (t) => {
  if (!requirePrivileges(t)) return;
  const s = await setup(t, 'ct', { 'be.yaml': basePolicy() });
  const paths = agentPaths(s.node);

  // 1 when the agent cannot be reached
  const before = await s.node.membrane(['status', '--socket', paths.socket, '--json']);
  assert.equal(before.code, 1, `status before the agent runs: ${before.stdout} ${before.stderr}`);
  assert.equal((await s.node.membrane(['status', '--socket', paths.socket])).code, 1);

  const agent = startAgent(s.node, { policies: s.policyDir, paths });
  s.node.onCleanup(async () => {
    await agent.proc.kill('SIGKILL');
  });
  const st = await agent.waitReady();
  assert.equal(st.ready, true);
  assert.equal(typeof st.policyRevision, 'number');
  assert.ok(Number.isInteger(st.policyRevision) && st.policyRevision >= 1, `policyRevision ${st.policyRevision}`);
  assert.deepEqual(st.errors, []);
  for (const ref of [FRONTEND, BACKEND]) {
    const e = endpointOf(st, ref);
    assert.equal(e.enforced, true, `${ref} enforced`);
    assert.deepEqual(e.ips, [s.node.ipOf(ref)]);
    assert.equal(e.policyRevision, st.policyRevision);
  }
  const human = await s.node.membrane(['status', '--socket', paths.socket]);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /ready: yes/);

  // one allowed, one default-denied flow (800 ms: a single SYN, no retransmission)
  const ok = await tcpRequest(s.node.pod(FRONTEND), BACKEND_IP, ALLOWED, { timeoutMs: 800 });
  assert.equal(ok.result, 'ok');
  const denied = await tcpRequest(s.node.pod(FRONTEND), BACKEND_IP, DENIED, { timeoutMs: 800 });
  assert.equal(denied.result, 'timeout');

  let flows: Array<Record<string, unknown>> = [];
  const find = (port: number, verdict: string) =>
    flows.find((f) => (f.destination as { port: number }).port === port && f.verdict === verdict && (f.source as { ip: string }).ip === FRONTEND_IP);
  for (let i = 0; i < 30 && !(find(ALLOWED, 'FORWARDED') && find(DENIED, 'DROPPED')); i++) {
    flows = await agent.flows();
    if (!(find(ALLOWED, 'FORWARDED') && find(DENIED, 'DROPPED'))) await sleep(100);
  }
  const fwd = find(ALLOWED, 'FORWARDED');
  const drop = find(DENIED, 'DROPPED');
  assert.ok(fwd, `a FORWARDED flow to ${ALLOWED}: ${JSON.stringify(flows)}`);
  assert.ok(drop, `a DROPPED flow to ${DENIED}: ${JSON.stringify(flows)}`);
  for (const f of [fwd, drop]) {
    assert.deepEqual(Object.keys(f).sort(), FLOW_KEYS, `flow fields: ${JSON.stringify(f)}`);
    assert.deepEqual(Object.keys(f.source as object).sort(), PEER_KEYS);
    assert.deepEqual(Object.keys(f.destination as object).sort(), PEER_KEYS);
    assert.deepEqual(Object.keys(f.egress as object).sort(), SIDE_KEYS);
    assert.deepEqual(Object.keys(f.ingress as object).sort(), SIDE_KEYS);
    assert.ok(!Number.isNaN(Date.parse(f.time as string)), `time ${String(f.time)}`);
    assert.equal(f.protocol, 'TCP');
    assert.equal(f.l7, null);
    assert.deepEqual(f.source, { namespace: 'prod', name: 'frontend', identity: endpointOf(st, FRONTEND).identity, ip: FRONTEND_IP, port: (f.source as { port: number }).port });
    assert.ok(((f.source as { port: number }).port) > 0);
    assert.deepEqual(f.destination, { namespace: 'prod', name: 'backend', identity: endpointOf(st, BACKEND).identity, ip: BACKEND_IP, port: (f.destination as { port: number }).port });
    // frontend has no egress policy
    assert.equal((f.egress as { enforced: boolean }).enforced, false);
  }
  assert.equal((fwd.source as { port: number }).port, ok.localPort);
  assert.equal(fwd.dropReason, null);
  assert.deepEqual(fwd.ingress, { enforced: true, verdict: 'allowed', allowedBy: ['CiliumNetworkPolicy/prod/be'], deniedBy: [], reason: (fwd.ingress as { reason: string }).reason });
  assert.equal(drop.dropReason, 'POLICY_DENIED');
  assert.deepEqual(drop.ingress, { enforced: true, verdict: 'denied', allowedBy: [], deniedBy: [], reason: 'default deny' });

  // filters
  const dropped = await agent.flows(['--verdict', 'DROPPED']);
  assert.ok(dropped.length >= 1 && dropped.every((f) => f.verdict === 'DROPPED'), `--verdict DROPPED: ${JSON.stringify(dropped)}`);
  const forwarded = await agent.flows(['--verdict', 'forwarded']);
  assert.ok(forwarded.length >= 1 && forwarded.every((f) => f.verdict === 'FORWARDED'), `--verdict forwarded: ${JSON.stringify(forwarded)}`);
  const fromFe = await agent.flows(['--from', FRONTEND]);
  assert.ok(fromFe.length >= 2 && fromFe.every((f) => (f.source as { ip: string }).ip === FRONTEND_IP), `--from: ${JSON.stringify(fromFe)}`);
  const toDenied = await agent.flows(['--to', BACKEND_IP, '--verdict', 'DROPPED']);
  assert.ok(toDenied.length >= 1 && toDenied.every((f) => (f.destination as { ip: string }).ip === BACKEND_IP && f.verdict === 'DROPPED'));
  assert.deepEqual(await agent.flows(['--from', BACKEND, '--to', FRONTEND]), [], 'no flow from backend to frontend');
  const last1 = await agent.flows(['--last', '1', '--from', FRONTEND]);
  assert.equal(last1.length, 1, `--last 1: ${JSON.stringify(last1)}`);
  assert.deepEqual(last1[0], fromFe[fromFe.length - 1], '--last 1 is the most recent');
  const readable = await agent.observe(['--from', FRONTEND]);
  assert.equal(readable.code, 0, readable.stderr);
  assert.match(readable.stdout, /prod\/frontend .*-> prod\/backend .*DROPPED \(POLICY_DENIED\)/);

  // --follow streams new flows (and only new ones)
  const followStart = Date.now();
  const follow = s.node.spawnMembrane(['observe', '--socket', paths.socket, '--json', '--follow', '--from', FRONTEND]);
  let streamed: Record<string, unknown> | undefined;
  for (let i = 0; i < 40 && !streamed; i++) {
    const r = await tcpRequest(s.node.pod(FRONTEND), BACKEND_IP, ALLOWED);
    assert.equal(r.result, 'ok');
    await sleep(100);
    const lines = follow.stdout.split('\n').filter((l) => l.trim());
    streamed = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((f) => (f.source as { port: number }).port === r.localPort);
  }
  assert.ok(streamed, `observe --follow streamed nothing; stderr: ${follow.stderr}`);
  assert.ok(Date.parse(streamed.time as string) >= followStart - 1000, 'a new flow, not history');
  assert.deepEqual(Object.keys(streamed).sort(), FLOW_KEYS);
  assert.equal(streamed.verdict, 'FORWARDED');
  await follow.kill();
});

test('edits of the policies and endpoints apply incrementally; invalid edits are refused', async (t) => {
  if (!requirePrivileges(t)) return;
  const newcomer: TestEndpoint = { name: 'newcomer', namespace: 'prod', labels: { app: 'newcomer' }, ips: ['10.200.1.40'] };
  const s = await setup(t, 'ed', {
    'be.yaml': basePolicy(),
    // selects an endpoint that does not exist yet
    'nc.yaml': cnp('nc', 'newcomer', [{ from: { role: 'frontend' }, ports: [ALLOWED] }]),
  });
  const agent = await agentFor(s);
  const st0 = await agent.waitReady();
  const r0 = st0.policyRevision;
  await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'initial');

  // allow a new port
  const file = writePolicy(s.policyDir, 'be.yaml', basePolicy([DENIED]));
  const st1 = await agent.waitStatus((x, code) => x.policyRevision > r0 && code === 0 && x.ready, 'a new revision after allowing a port', 5000);
  assert.deepEqual(st1.errors, []);
  await expectTraffic(s, { [DENIED]: 'ok', [ALLOWED]: 'ok', [OTHER]: 'drop' }, 'after allowing a port');

  // remove it again
  writePolicy(s.policyDir, 'be.yaml', basePolicy());
  const st2 = await agent.waitStatus((x, code) => x.policyRevision > st1.policyRevision && code === 0, 'a new revision after removing the port', 5000);
  await expectTraffic(s, { [DENIED]: 'drop', [ALLOWED]: 'ok' }, 'after removing the port');

  // an invalid edit (typo'd field) that would allow OTHER and drop ALLOWED: refused
  const bad = basePolicy([OTHER]).replace('toPorts:', 'toPort:');
  writePolicy(s.policyDir, 'be.yaml', bad);
  const badLine = bad.split('\n').findIndex((l) => l.includes('toPort:')) + 1;
  const st3 = await agent.waitStatus((x) => x.errors.length > 0, 'the invalid edit to be reported', 5000);
  assert.equal(st3.policyRevision, st2.policyRevision, 'a refused edit does not change the revision');
  assert.equal(st3.ready, true, 'ready refers to the last applied revision');
  const err = st3.errors.find((e) => e.file === file);
  assert.ok(err, `an error for ${file}: ${JSON.stringify(st3.errors)}`);
  assert.equal(err.line, badLine, `line of the typo: ${JSON.stringify(err)}`);
  assert.match(`${err.field ?? ''} ${err.message}`, /toPort/, `the reason names the field: ${JSON.stringify(err)}`);
  await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop', [OTHER]: 'drop' }, 'after the refused edit (previous policy kept)');
  const stillBad = await agent.status();
  assert.equal(stillBad.json?.policyRevision, st2.policyRevision);

  // fixing the file applies and clears the error
  writePolicy(s.policyDir, 'be.yaml', basePolicy([OTHER]));
  const st4 = await agent.waitStatus((x, code) => x.policyRevision > st2.policyRevision && code === 0, 'the fixed edit', 5000);
  assert.deepEqual(st4.errors, []);
  await expectTraffic(s, { [OTHER]: 'ok', [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'after the fixed edit');

  // a new endpoint in the endpoints file, then plumbed: enforced
  s.node.writeEndpoints([...BASE_ENDPOINTS, newcomer], { namespaces: NAMESPACES });
  await s.node.up();
  const st5 = await agent.waitStatus((x, code) => code === 0 && !!AgentHandle.endpointOf(x, 'prod/newcomer')?.enforced, 'the new endpoint to be enforced', 10_000);
  assert.ok(st5.policyRevision > st4.policyRevision, 'the endpoints edit made a new revision');
  assert.equal(endpointOf(st5, 'prod/newcomer').ingressEnforced, true);
  await startServer(s.node.pod('prod/newcomer'), { tcp: [ALLOWED, DENIED] });
  assert.equal(await conn(s, 'prod/newcomer', ALLOWED), 'ok', 'frontend -> newcomer:8080 allowed by nc');
  assert.equal(await conn(s, 'prod/newcomer', DENIED), 'timeout', 'frontend -> newcomer:9090 dropped');
  assert.equal(await conn(s, BACKEND, ALLOWED, 'prod/newcomer'), 'timeout', 'newcomer is not frontend: backend drops it');
  await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'backend after the endpoints edit');
});

const ENDPOINTS_EDIT = '(endpoints file)';

test('no enforcement gap while policies and endpoints are edited under load', async (t) => {
  if (!requirePrivileges(t)) return;
  const s = await setup(t, 'gap', { 'be.yaml': basePolicy() });
  const agent = await agentFor(s);
  const st0 = await agent.waitReady();
  const fe = s.node.pod(FRONTEND);
  const allowed = await startLoop(fe, BACKEND_IP, ALLOWED, { timeoutMs: 1000, intervalMs: 2 });
  const denied = await startLoop(fe, BACKEND_IP, DENIED, { timeoutMs: 250, concurrency: 4 });
  await sleep(300);
  let rev = st0.policyRevision;
  const edits: Array<[string, string | null]> = [
    // an unrelated rule on the same endpoint
    ['be.yaml', basePolicy([OTHER])],
    ['be.yaml', basePolicy()],
    // a second policy with the very same allow (same map key, another origin), then the first goes
    ['be2.yaml', cnp('be2', 'backend', [{ from: { role: 'frontend' }, ports: [ALLOWED] }])],
    ['be.yaml', cnp('be', 'backend', [{ from: { role: 'nobody' }, ports: [6060] }])],
    ['be.yaml', basePolicy()],
    ['be2.yaml', null],
    // a policy selecting frontend (its egress becomes enforced), then removed
    ['fe.yaml', 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: fe, namespace: prod}\nspec:\n  endpointSelector: {matchLabels: {app: frontend}}\n  egress:\n  - toEndpoints: [{matchLabels: {app: backend}}]\n    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]\n'],
    ['fe.yaml', null],
    // the endpoints file: a policy-only endpoint backend's policy selects (new identity, new
    // entries for backend; the agent reconciles every endpoint), then it goes again
    [ENDPOINTS_EDIT, 'add'],
    [ENDPOINTS_EDIT, 'remove'],
  ];
  for (const [name, text] of edits) {
    if (name === ENDPOINTS_EDIT) {
      const ghost: TestEndpoint = { name: 'ghost', namespace: 'prod', labels: { role: 'frontend', app: 'ghost' }, ips: ['10.200.1.99'], netns: false };
      s.node.writeEndpoints(text === 'add' ? [...BASE_ENDPOINTS, ghost] : BASE_ENDPOINTS, { namespaces: NAMESPACES });
    } else if (text === null) rmSync(path.join(s.policyDir, name));
    else writePolicy(s.policyDir, name, text);
    const st = await agent.waitStatus((x, code) => x.policyRevision > rev && code === 0, `the edit of ${name}`, 5000);
    rev = st.policyRevision;
    await sleep(150);
  }
  await sleep(300);
  const a = summarize(await allowed.stop());
  const d = summarize(await denied.stop());
  t.diagnostic(`allowed: ${a.ok}/${a.total} ok; denied: ${d.connected}/${d.total} connected; ${edits.length} edits, revision ${st0.policyRevision} -> ${rev}`);
  assert.ok(a.total >= 200, `at least 200 allowed connections (made ${a.total})`);
  assert.deepEqual(a.failed, [], 'every allowed connection succeeded');
  assert.ok(d.total >= 20, `denied probes made: ${d.total}`);
  assert.equal(d.connected, 0, `no denied connection got through: ${JSON.stringify(d.failed.filter((x) => x.c))}`);
  assert.ok(d.failed.every((x) => x.r === 'timeout'), 'denied probes are dropped (timeout)');
  assert.equal(rev - st0.policyRevision, edits.length, 'one revision per edit');
});

test('restart safety: kill -9 keeps enforcement; a restart reuses pins, swaps programs, removes stale entries', async (t) => {
  if (!requirePrivileges(t)) return;
  const s = await setup(t, 'rs', { 'be.yaml': basePolicy() });
  const agent = await agentFor(s);
  const st0 = await agent.waitReady();
  const be = endpointOf(st0, BACKEND);
  const fe = endpointOf(st0, FRONTEND);
  const progsBefore = { in: await tcFilters(s.node, fe.interface, 'ingress'), out: await tcFilters(s.node, fe.interface, 'egress') };
  assert.equal(progsBefore.in.length, 1, `one program on ${fe.interface} ingress`);
  const pod = s.node.pod(FRONTEND);
  const allowed = await startLoop(pod, BACKEND_IP, ALLOWED, { timeoutMs: 1000, intervalMs: 2 });
  const denied = await startLoop(pod, BACKEND_IP, DENIED, { timeoutMs: 250, concurrency: 2 });
  await sleep(400);

  // kill -9: enforcement stays, pins stay
  await agent.kill9();
  assert.equal((await agent.status()).code, 1, 'status: unreachable after kill -9');
  const pins = readdirSync(agent.paths.bpfRoot);
  for (const m of ['mbr_policy_v1', 'mbr_ipcache_v1', 'mbr_endpoint_v1']) assert.ok(pins.some((p) => p === m), `${m} still pinned: ${pins.join(' ')}`);
  assert.deepEqual(await tcFilters(s.node, fe.interface, 'ingress'), progsBefore.in, 'programs stay attached');
  await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'agent dead');
  await sleep(300);

  // a stale entry the restarted agent must remove: it would allow DENIED
  const staleStart = Date.now();
  const listed = await datapathSnippet(
    s.node,
    `const pm = dp.PolicyMap.open(${JSON.stringify(agent.paths.bpfRoot)});
pm.upsert({ epId: ${be.epId}, identity: 0, egress: false, proto: 6, port: ${DENIED}, portPrefixLen: 16, deny: false, proxyPort: 0, cookie: 0 });
console.log(JSON.stringify(pm.list(${be.epId})));`,
  );
  assert.match(listed, new RegExp(`"port":${DENIED}`), 'the stale entry is in the map');
  assert.equal(await conn(s, BACKEND, DENIED), 'ok', 'the injected stale entry is effective');

  // restart with the same paths
  agent.restart();
  const st1 = await agent.waitReady();
  const staleEnd = Date.now();
  assert.ok(st1.policyRevision >= 1);
  await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'after the restart');
  const after = await datapathSnippet(s.node, `console.log(JSON.stringify(dp.PolicyMap.open(${JSON.stringify(agent.paths.bpfRoot)}).list(${be.epId})));`);
  assert.doesNotMatch(after, new RegExp(`"identity":0,"egress":false,"proto":6,"port":${DENIED}`), `stale entry removed: ${after}`);
  assert.equal(endpointOf(st1, BACKEND).epId, be.epId, 'endpoint ids survive the restart');
  assert.match(agent.proc.stderr, /reused \d+ pinned maps/, 'the restarted agent reused the pins');
  const progsAfter = { in: await tcFilters(s.node, fe.interface, 'ingress'), out: await tcFilters(s.node, fe.interface, 'egress') };
  assert.equal(progsAfter.in.length, 1, 'still exactly one program on ingress');
  assert.equal(progsAfter.out.length, 1, 'still exactly one program on egress');
  assert.notDeepEqual(progsAfter.in, progsBefore.in, 'the program was replaced by the new agent');
  await sleep(400);

  const all = await allowed.stop();
  const probes = await denied.stop();
  const a = summarize(all);
  const outside = probes.filter((p: Attempt) => p.e < staleStart || p.t > staleEnd);
  const inside = probes.filter((p: Attempt) => !(p.e < staleStart || p.t > staleEnd));
  t.diagnostic(
    `allowed: ${a.ok}/${a.total} ok; denied probes outside the stale window: ${outside.filter((p) => p.c).length}/${outside.length} connected; inside: ${inside.filter((p) => p.c).length}/${inside.length}; stale window ${staleEnd - staleStart} ms`,
  );
  assert.ok(a.total >= 200, `allowed connections made: ${a.total}`);
  assert.deepEqual(a.failed, [], 'no allowed connection failed across kill -9 and restart');
  assert.ok(outside.length >= 10, `denied probes outside the stale window: ${outside.length}`);
  assert.deepEqual(outside.filter((p) => p.c), [], 'no denied connection got through outside the injected stale window');
});

test('fail closed: an unmergeable policy keeps the previous one; at start it denies; a failed attach names interface and step', async (t) => {
  if (!requirePrivileges(t)) return;
  // two rules with the same peer and port but different L7 parsers (reference §2.6)
  const conflict = [
    cnp('l7-http', 'backend', [{ from: { role: 'frontend' }, ports: [9092], l7: '{http: [{method: GET}]}' }]),
    cnp('l7-kafka', 'backend', [{ from: { role: 'frontend' }, ports: [9092], l7: '{kafka: [{topic: orders}]}' }]),
  ].join('---\n');

  // (a) as an edit
  await t.test('edit', async (t2) => {
    const s = await setup(t2, 'fce', { 'be.yaml': basePolicy() });
    const agent = await agentFor(s);
    const st0 = await agent.waitReady();
    writePolicy(s.policyDir, 'l7.yaml', conflict);
    const st1 = await agent.waitStatus((x) => x.policyRevision > st0.policyRevision, 'the conflicting edit', 5000);
    const code = (await agent.status()).code;
    assert.equal(code, 3, 'not ready: backend is not on the current revision');
    assert.equal(st1.ready, false);
    const err = st1.errors.find((e) => e.object === BACKEND);
    assert.ok(err, `status names ${BACKEND}: ${JSON.stringify(st1.errors)}`);
    assert.match(err.message, /conflicting L7 parsers/);
    const be = endpointOf(st1, BACKEND);
    assert.equal(be.enforced, false);
    assert.match(be.error ?? '', /conflicting L7 parsers/);
    assert.equal(endpointOf(st1, FRONTEND).enforced, true, 'other endpoints are not affected');
    await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop', 9092: 'drop' }, 'previous policy kept');
    // removing the conflict recovers
    rmSync(path.join(s.policyDir, 'l7.yaml'));
    const st2 = await agent.waitReady();
    assert.ok(st2.policyRevision > st1.policyRevision);
    assert.deepEqual(st2.errors, []);
    await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'after the conflict was removed');
  });

  // (b) at start, for an endpoint that never had a policy
  await t.test('start', async (t2) => {
    const s = await setup(t2, 'fcs', { 'be.yaml': basePolicy(), 'l7.yaml': conflict });
    await startServer(s.node.pod(FRONTEND), { tcp: [ALLOWED] });
    const agent = await agentFor(s);
    const st = await agent.waitStatus((x, code) => code === 3 && x.endpoints.length === 2, 'a not-ready status', 15_000);
    assert.equal(st.ready, false);
    const err = st.errors.find((e) => e.object === BACKEND);
    assert.ok(err, `status says why: ${JSON.stringify(st.errors)}`);
    assert.match(err.message, /conflicting L7 parsers/);
    assert.equal(endpointOf(st, BACKEND).enforced, false);
    assert.equal(endpointOf(st, FRONTEND).enforced, true);
    // never wide open
    for (const port of [ALLOWED, DENIED, 9092]) assert.notEqual(await conn(s, BACKEND, port), 'ok', `frontend -> backend:${port} must not connect`);
    assert.notEqual(await conn(s, FRONTEND, ALLOWED, BACKEND), 'ok', 'backend -> frontend must not connect');
    // fixing the policy makes it ready with its policy
    rmSync(path.join(s.policyDir, 'l7.yaml'));
    await agent.waitReady();
    await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'after the conflict was removed');
  });

  // (c) a failed attach
  await t.test('attach failure', async (t2) => {
    const s = await setup(t2, 'fca', { 'be.yaml': basePolicy() });
    const paths = agentPaths(s.node);
    const r = await s.node.membrane(
      ['agent', '--policies', s.policyDir, '--endpoints', s.node.endpointsFile, '--socket', paths.socket, '--state-dir', paths.stateDir, '--bpf-root', paths.bpfRoot, '--uplink', 'nosuch0'],
      { timeoutMs: 20_000 },
    );
    assert.ok(!r.timedOut, 'the agent exits');
    assert.notEqual(r.code, 0, 'exit status');
    assert.match(r.stderr, /nosuch0/, `names the interface: ${r.stderr}`);
    assert.match(r.stderr, /if_nametoindex|bpf_tc_hook_create|bpf_tc_attach|attach/, `names the step: ${r.stderr}`);
    // nothing half-programmed: no pins, no program on the endpoints' interfaces
    assert.ok(!existsSync(paths.bpfRoot) || readdirSync(paths.bpfRoot).length === 0, `no pins under ${paths.bpfRoot}`);
    const veths = (await s.node.ipJson<{ ifname: string }>(['link', 'show'])).filter((l) => l.ifname.startsWith('mbr'));
    assert.equal(veths.length, 2, 'two endpoint veths');
    for (const l of veths) {
      assert.deepEqual(await tcFilters(s.node, l.ifname, 'ingress'), [], `no program left on ${l.ifname} ingress`);
      assert.deepEqual(await tcFilters(s.node, l.ifname, 'egress'), [], `no program left on ${l.ifname} egress`);
    }
    await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'ok' }, 'no enforcement was half-installed');
  });
});

test('membrane cleanup removes pins and programs', async (t) => {
  if (!requirePrivileges(t)) return;
  const s = await setup(t, 'cl', { 'be.yaml': basePolicy() });
  // an uplink inside the node namespace (a veth pair with both ends there: nothing leaves)
  const node = s.node;
  const upl = `mbtu${process.pid % 100000}`;
  const add = await node.exec('ip', ['link', 'add', upl, 'type', 'veth', 'peer', 'name', `${upl}p`]);
  assert.equal(add.code, 0, add.stderr);
  const agent = await agentFor(s, ['--uplink', upl]);
  const st = await agent.waitReady();
  const ifaces = st.endpoints.map((e) => e.interface);
  assert.equal(ifaces.length, 2);
  for (const i of [...ifaces]) assert.equal((await tcFilters(node, i, 'ingress')).length, 1, `program on ${i}`);
  assert.equal((await tcFilters(node, upl, 'ingress')).length, 1, 'program on the uplink');
  await agent.proc.kill('SIGTERM');
  // SIGTERM leaves enforcement in place
  for (const i of ifaces) assert.equal((await tcFilters(node, i, 'ingress')).length, 1, `program still on ${i} after SIGTERM`);
  await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'drop' }, 'after SIGTERM');

  const r = await node.membrane(['cleanup', '--bpf-root', agent.paths.bpfRoot, '--state-dir', agent.paths.stateDir, '--endpoints', node.endpointsFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!existsSync(agent.paths.bpfRoot) || readdirSync(agent.paths.bpfRoot).length === 0, `no pins left: ${existsSync(agent.paths.bpfRoot) ? readdirSync(agent.paths.bpfRoot).join(' ') : ''}`);
  for (const i of [...ifaces, upl]) {
    assert.deepEqual(await tcFilters(node, i, 'ingress'), [], `no filter on ${i} ingress`);
    assert.deepEqual(await tcFilters(node, i, 'egress'), [], `no filter on ${i} egress`);
  }
  await expectTraffic(s, { [ALLOWED]: 'ok', [DENIED]: 'ok' }, 'after cleanup nothing enforces');
  const again = await node.membrane(['cleanup', '--bpf-root', agent.paths.bpfRoot, '--state-dir', agent.paths.stateDir, '--endpoints', node.endpointsFile]);
  assert.equal(again.code, 0, `cleanup is idempotent: ${again.stderr}`);
});
