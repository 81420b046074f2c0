// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/endpoint
 *
 * `membrane endpoint up|down` (DESIGN §3.4) against real namespaces and veths, through the
 * real CLI run inside a node namespace. No BPF programs: pods reach each other by plain
 * routing through the node. Privileged: skipped with a reason when not root (failing under CI).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hostIfname } from '../../src/endpoint/plumbing.ts';
import {
  createNode,
  httpRequest,
  inNs,
  ipJson,
  ping,
  privilegedSkip,
  REPO_ROOT,
  requirePrivileges,
  runCmd,
  startServer,
  tcpRequest,
  udpRequest,
  type NodeTopology,
  type TestEndpoint,
  type TrafficServer,
} from './helpers/index.ts';

const GATEWAY = '169.254.1.1';

const ENDPOINTS: TestEndpoint[] = [
  { name: 'frontend', namespace: 'prod', labels: { app: 'frontend' }, ips: ['10.200.1.10', 'fd00:200::10'] },
  { name: 'backend', namespace: 'prod', labels: { app: 'backend' }, ips: ['10.200.1.20', '10.200.1.21'], ports: { http: 80 } },
  { name: 'db', labels: { app: 'db' }, ips: ['10.200.2.30'] },
  { name: 'planned', labels: { app: 'planned' }, ips: ['10.200.3.40'], netns: false },
];

interface Link {
  ifindex: number;
  ifname: string;
  flags: string[];
  address?: string;
  link_index?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}
interface Route {
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
}

const v4 = (l: Link | undefined) => (l?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`).sort();

async function netnsNames(): Promise<string[]> {
  const r = await runCmd('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

/** A comparable picture of the node and its pods: links, IPv4 addresses, IPv4 routes. */
async function snapshot(node: NodeTopology): Promise<unknown> {
  const view = async (ns: string) => {
    const links = await ipJson<Link>(ns, ['addr', 'show']);
    const routes = await ipJson<Route>(ns, ['-4', 'route', 'show', 'table', 'all']);
    return {
      links: links.map((l) => ({ ifname: l.ifname, ifindex: l.ifindex, peer: l.link_index, up: l.flags.includes('UP'), v4: v4(l) })),
      routes: routes.map((r) => JSON.stringify(r)).sort(),
    };
  };
  const out: Record<string, unknown> = { node: await view(node.name) };
  for (const ep of node.endpoints) if (ep.netns) out[ep.ref] = await view(ep.netns);
  return out;
}

describe('membrane endpoint up/down', { skip: privilegedSkip() }, () => {
  let node: NodeTopology;
  let server: TrafficServer | undefined;

  before(async () => {
    if (!requirePrivileges()) return;
    node = await createNode('ep');
    node.writeEndpoints(ENDPOINTS, { namespaces: [{ name: 'prod', labels: { env: 'prod' } }] });
  });
  after(async () => {
    await server?.stop();
    await node?.cleanup();
  });

  test('up creates pod namespaces, veths, addresses and routes', async () => {
    const r = await node.up();
    assert.match(r.stdout, new RegExp(`node: ip addr add ${GATEWAY}/32 dev lo`));
    assert.match(r.stdout, /prod\/frontend: created mbr[0-9a-f]{11} <-> /);
    assert.match(r.stdout, /note: IPv6 fd00:200::10 not plumbed/);

    // Node: gateway /32 on lo (up), forwarding on in the node namespace only.
    const [lo] = await node.ipJson<Link>(['addr', 'show', 'dev', 'lo']);
    assert.ok(lo!.flags.includes('UP'));
    assert.ok(v4(lo).includes(`${GATEWAY}/32`), JSON.stringify(lo));
    assert.equal((await node.exec('cat', ['/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '1');

    const names = await netnsNames();
    const nodeRoutes = await node.ipJson<Route>(['-4', 'route', 'show']);
    assert.equal(nodeRoutes.find((x) => x.dst === 'default'), undefined, 'the node namespace has no route out');
    for (const spec of ENDPOINTS) {
      const ep = node.endpoint(`${spec.namespace ?? 'default'}/${spec.name}`);
      const ifname = hostIfname(ep);
      if (!ep.netns) {
        assert.deepEqual(await node.ipJson(['link', 'show', 'type', 'veth']).then((l) => l.filter((x) => x.ifname === ifname)), []);
        continue;
      }
      assert.ok(names.includes(ep.netns), `netns ${ep.netns} exists`);
      const [host] = await node.ipJson<Link>(['-d', 'link', 'show', 'dev', ifname]);
      assert.equal(host!.linkinfo?.info_kind, 'veth');
      assert.ok(host!.flags.includes('UP'), `${ifname} is up`);
      const [eth0] = await ipJson<Link>(ep.netns, ['-d', 'addr', 'show', 'dev', 'eth0']);
      assert.equal(eth0!.linkinfo?.info_kind, 'veth');
      assert.equal(eth0!.link_index, host!.ifindex, 'pod eth0 is the peer of the node-side veth');
      assert.equal(host!.link_index, eth0!.ifindex);
      assert.ok(eth0!.flags.includes('UP'));
      const v4ips = ep.ips.filter((a) => !a.includes(':'));
      assert.deepEqual(v4(eth0), v4ips.map((a) => `${a}/32`).sort());
      const [podLo] = await ipJson<Link>(ep.netns, ['link', 'show', 'dev', 'lo']);
      assert.ok(podLo!.flags.includes('UP'), 'pod lo is up');
      const podRoutes = await ipJson<Route>(ep.netns, ['-4', 'route', 'show']);
      assert.deepEqual(
        podRoutes.map((x) => ({ dst: x.dst, gateway: x.gateway, dev: x.dev, scope: x.scope })).sort((a, b) => a.dst.localeCompare(b.dst)),
        [
          { dst: GATEWAY, gateway: undefined, dev: 'eth0', scope: 'link' },
          { dst: 'default', gateway: GATEWAY, dev: 'eth0', scope: undefined },
        ],
      );
      const [gwNeigh] = (await ipJson<{ dst: string; lladdr?: string; state?: string[] }>(ep.netns, ['neigh', 'show', 'dev', 'eth0'])).filter(
        (n) => n.dst === GATEWAY,
      );
      assert.equal(gwNeigh?.lladdr, host!.address, 'the gateway resolves to the node-side veth');
      assert.deepEqual(gwNeigh?.state, ['PERMANENT']);
      const hostRoutes = await node.ipJson<Route>(['-4', 'route', 'show', 'dev', ifname]);
      assert.deepEqual(hostRoutes.map((x) => x.dst).sort(), [...v4ips].sort());
    }
  });

  test('listPlumbed and ifindexOf see the node namespace (not the /sys of the caller)', async () => {
    const script = [
      "import { ifindexOf, listPlumbed } from './src/endpoint/plumbing.ts';",
      "import { readEndpointsFile } from './src/endpoint/endpoints-file.ts';",
      `const list = await listPlumbed(readEndpointsFile(${JSON.stringify(node.endpointsFile)}));`,
      'const out = list.map((p) => ({ ref: `${p.endpoint.namespace}/${p.endpoint.name}`, ifname: p.ifname, ifindex: p.ifindex, again: ifindexOf(p.ifname) }));',
      'process.stdout.write(JSON.stringify(out));',
    ].join('\n');
    const r = await node.exec(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT });
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout) as Array<{ ref: string; ifname: string; ifindex: number; again: number }>;
    const links = await node.ipJson<Link>(['link', 'show']);
    const want = node.endpoints
      .filter((e) => e.netns)
      .map((e) => {
        const ifname = hostIfname(e);
        const ifindex = links.find((l) => l.ifname === ifname)!.ifindex;
        return { ref: e.ref, ifname, ifindex, again: ifindex };
      });
    assert.deepEqual(got, want);
  });

  test('pods reach each other through the node: TCP, UDP, HTTP, ICMP', async () => {
    const front = node.pod('prod/frontend');
    const back = node.pod('prod/backend');
    server = await startServer(back, { tcp: [8080], udp: [5353], http: [80] });
    for (const ip of ['10.200.1.20', '10.200.1.21']) {
      const tcp = await tcpRequest(front, ip, 8080, { send: 'hello\n' });
      assert.equal(tcp.result, 'ok', JSON.stringify(tcp));
      assert.equal(tcp.reply, 'hello\n');
    }
    const udp = await udpRequest(front, '10.200.1.20', 5353, { send: 'dns?' });
    assert.deepEqual([udp.result, udp.reply], ['ok', 'dns?'], JSON.stringify(udp));
    const http = await httpRequest(front, '10.200.1.20', 80, { path: '/hello' });
    assert.equal(http.status, 200, JSON.stringify(http));
    assert.match(JSON.parse(http.body!).remote, /^10\.200\.1\.10:/, 'no NAT: the server sees the pod address');
    assert.equal((await ping(front, '10.200.1.20')).result, 'ok');
    assert.equal((await ping(node.pod('db'), '10.200.1.10')).result, 'ok', 'across prefixes');
    assert.equal((await ping(front, GATEWAY)).result, 'ok', 'the gateway answers');
    // The node itself reaches its pods (allow-localhost needs this path).
    assert.equal((await tcpRequest(node.name, '10.200.1.20', 8080)).result, 'ok');
    // Negative cases come back fast and typed.
    assert.equal((await tcpRequest(front, '10.200.1.20', 8081)).result, 'refused');
    const nowhere = await tcpRequest(front, '10.200.9.9', 8080, { timeoutMs: 500 });
    assert.notEqual(nowhere.result, 'ok', 'an address that is no endpoint is not reachable (no route out of the node)');
    assert.notEqual((await ping(front, '10.200.3.40')).result, 'ok', 'a policy-only endpoint has no interface');
  });

  test('up twice changes nothing', async () => {
    const before = await snapshot(node);
    const r = await node.up();
    assert.doesNotMatch(r.stdout, /: ip |: write /, `no command ran:\n${r.stdout}`);
    for (const ep of node.endpoints) if (ep.netns) assert.match(r.stdout, new RegExp(`${ep.ref}: unchanged `));
    assert.deepEqual(await snapshot(node), before);
  });

  test('up completes half-made plumbing', async () => {
    const back = node.endpoint('prod/backend');
    await server?.stop();
    server = undefined;
    assert.equal((await node.exec('ip', ['link', 'del', hostIfname(back)])).code, 0);
    assert.equal((await inNs(node.pod('db'), 'ip', ['route', 'del', 'default'])).code, 0);
    assert.equal((await inNs(node.pod('prod/frontend'), 'ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'eth0'])).code, 0);
    const r = await node.up();
    assert.match(r.stdout, /prod\/backend: ip link add mbr[0-9a-f]{11} type veth peer name eth0 netns /);
    assert.match(r.stdout, /default\/db: ip -n \S+ route add default via 169\.254\.1\.1 dev eth0/);
    assert.match(r.stdout, /prod\/frontend: ip -n \S+ addr del 10\.99\.0\.1\/24 dev eth0/);
    assert.match(r.stdout, /prod\/backend: completed /);
    server = await startServer(node.pod('prod/backend'), { tcp: [8080] });
    assert.equal((await tcpRequest(node.pod('db'), '10.200.1.21', 8080)).result, 'ok');
  });

  test('bad endpoints file: exit 2 naming file:line:field, nothing changed', async () => {
    const namesBefore = await netnsNames();
    const file = node.writeFile(
      'bad.yaml',
      ['endpoints:', '  - name: web', '    ips: [10.200.1.300]', `    netns: ${node.name}-bad`, '    colour: blue', ''].join('\n'),
    );
    const r = await node.membrane(['endpoint', 'up', '--endpoints', file]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^${file}:3: endpoints\\[0\\]\\.ips\\[0\\]: '10\\.200\\.1\\.300' is not an IP address$`, 'm'));
    assert.match(r.stderr, new RegExp(`^${file}:5: endpoints\\[0\\]\\.colour: unknown field$`, 'm'));
    const missing = await node.membrane(['endpoint', 'up', '--endpoints', `${node.dir}/nope.yaml`]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.yaml:0: cannot read endpoints file/);
    assert.equal((await node.membrane(['endpoint', 'up'])).code, 2, 'missing --endpoints is a usage error');
    // only this node's namespaces: other test runs may add or remove theirs meanwhile
    const mine = (names: string[]) => names.filter((n) => n === node.name || n.startsWith(`${node.name}-`)).sort();
    assert.deepEqual(mine(await netnsNames()), mine(namesBefore));
  });

  test('down removes exactly what up made, twice is fine', async () => {
    await server?.stop();
    server = undefined;
    const r = await node.down();
    assert.match(r.stdout, /prod\/frontend: removed /);
    assert.match(r.stdout, new RegExp(`node: ip addr del ${GATEWAY}/32 dev lo`));
    const names = await netnsNames();
    for (const ep of node.endpoints) if (ep.netns) assert.ok(!names.includes(ep.netns), `${ep.netns} removed`);
    assert.ok(names.includes(node.name), 'the node namespace itself is not endpoint down\'s to remove');
    assert.deepEqual(await node.ipJson(['link', 'show', 'type', 'veth']), []);
    const [lo] = await node.ipJson<Link>(['addr', 'show', 'dev', 'lo']);
    assert.ok(!v4(lo).includes(`${GATEWAY}/32`));
    const again = await node.down();
    assert.match(again.stdout, /prod\/frontend: absent /);
    assert.doesNotMatch(again.stdout, /: ip /);
  });
});

describe('membrane endpoint up failures', { skip: privilegedSkip() }, () => {
  test('a step that fails: exit 1 naming endpoint, interface and step; other endpoints still plumbed', async (t) => {
    if (!requirePrivileges(t)) return;
    const node = await createNode('epf', { t });
    node.writeEndpoints([
      { name: 'web', ips: ['10.200.5.10'] },
      { name: 'ok', ips: ['10.200.5.20'] },
    ]);
    // A pod namespace that already has an eth0 that is not ours (a veth pair wholly inside it).
    const pod = node.pod('web');
    assert.equal((await runCmd('ip', ['netns', 'add', pod])).code, 0);
    assert.equal((await runCmd('ip', ['-n', pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other0'])).code, 0);
    const r = await node.membrane(['endpoint', 'up', '--endpoints', node.endpointsFile]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const ifname = hostIfname({ namespace: 'default', name: 'web' });
    assert.match(
      r.stderr,
      new RegExp(`^endpoint up: default/web: ip link add ${ifname} type veth peer name eth0 netns ${pod}: eth0 already exists in netns ${pod} and is not the peer of ${ifname}$`, 'm'),
    );
    assert.match(r.stdout, /default\/ok: created /);
    assert.equal((await ping(node.pod('ok'), GATEWAY)).result, 'ok');
  });

  test('an endpoint with netns but no IPv4 address: exit 2, nothing changed', async (t) => {
    if (!requirePrivileges(t)) return;
    const node = await createNode('epi', { t });
    node.writeEndpoints([{ name: 'v6only', ips: ['fd00::1'] }]);
    const r = await node.membrane(['endpoint', 'up', '--endpoints', node.endpointsFile]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /endpoints\.yaml:\d+: default\/v6only: ips: an endpoint with netns needs at least one IPv4 address/);
    assert.ok(!(await netnsNames()).includes(node.pod('v6only')));
  });
});

test('the run leaves no namespace behind', { skip: privilegedSkip() }, async (t) => {
  if (!requirePrivileges(t)) return;
  const node = await createNode('epc');
  node.writeEndpoints([{ name: 'x', ips: ['10.200.7.10'] }]);
  await node.up();
  const srv = await startServer(node.pod('x'), { tcp: [0] });
  await node.cleanup();
  const exit = await srv.proc.exited;
  assert.ok(exit.code !== null || exit.signal !== null, 'the server process ended');
  const names = await netnsNames();
  const mine = names.filter((n) => n.startsWith(`mbt${process.pid}`));
  // Nodes tied to earlier tests (t.after) and this one are gone; the first suite's node is
  // removed by its after() hook, which has run by now.
  assert.deepEqual(mine, []);
});
