// SPDX-License-Identifier: Apache-2.0
/**
 * The HTTP/1.1 L7 proxy through the real redirect (DESIGN §3.4, §4), with real peers: a client
 * pod (curl, undici, raw sockets) and a server pod (nginx on :80, a small Node echo/upgrade
 * server on :9000), a standalone agent that starts `membrane proxy` itself, policy with HTTP
 * rules on :80 and :9000 and an L4-only rule on :8080.
 *
 * Every check goes client pod → veth → tc bpf_sk_assign → transparent listener → marked
 * upstream socket → server pod.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  createNode,
  inNs,
  privilegedSkip,
  REPO_ROOT,
  requirePrivileges,
  spawnInNs,
  startServer,
  tcpRequest,
  type NodeTopology,
  type NsProcess,
} from './helpers/index.ts';
import { proxyGet, startAgent, type AgentHandle } from './helpers/agent.ts';

const CLIENT = 'prod/client';
const SERVER = 'prod/server';
const POLICY_NAME = 'CiliumNetworkPolicy/prod/server-http';

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: server-http
  namespace: prod
spec:
  endpointSelector:
    matchLabels:
      app: server
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: client
      toPorts:
        - ports:
            - port: "80"
              protocol: TCP
            - port: "9000"
              protocol: TCP
            - port: "81"
              protocol: TCP
          rules:
            http:
              - method: GET
                path: "/public/.*"
              - method: POST
                path: /upload
              - method: PUT
                path: /echo
              - method: GET
                path: /ws
    - fromEndpoints:
        - matchLabels:
            app: client
      toPorts:
        - ports:
            - port: "8080"
              protocol: TCP
`;

/** Echo (request body streamed back, chunked) and an `Upgrade: echo` that splices. */
const ECHO_SERVER = `
import http from 'node:http';
const handler = (req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-req-te': req.headers['transfer-encoding'] ?? '', 'x-req-cl': req.headers['content-length'] ?? '', 'x-req-expect': req.headers.expect ?? '' });
  req.pipe(res);
};
for (const [host, port] of process.argv.slice(2).map((a) => a.split(':'))) {
  const s = http.createServer(handler);
  s.on('upgrade', (req, sock, head) => {
    sock.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n');
    if (head.length) sock.write(head);
    sock.pipe(sock);
  });
  s.listen(Number(port), host, () => console.log(JSON.stringify({ ready: host + ':' + port })));
}
`;

/** Raw TCP: writes each part (base64) 300 ms apart, prints what came back. */
const RAW_CLIENT = `
import net from 'node:net';
const [host, port, waitMs, ...parts] = process.argv.slice(2);
const chunks = [];
let closed = false;
const s = net.connect(Number(port), host);
s.setTimeout(Number(waitMs));
s.on('data', (d) => chunks.push(d));
s.on('timeout', () => s.destroy());
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code ?? e.message, data: Buffer.concat(chunks).toString('base64'), closed })); process.exit(0); });
s.on('end', () => { closed = true; });
s.on('close', () => console.log(JSON.stringify({ data: Buffer.concat(chunks).toString('base64'), closed })));
s.on('connect', async () => {
  for (const [i, p] of parts.entries()) {
    if (i) await new Promise((r) => setTimeout(r, 300));
    s.write(Buffer.from(p, 'base64'));
  }
});
`;

/** undici keep-alive client: GET the big file and POST 1 MiB bodies, checking hashes. */
const UNDICI_CLIENT = `
import { createHash, randomBytes } from 'node:crypto';
const { Pool } = await import(process.argv[2]);
const [origin, bigSha, rounds] = process.argv.slice(3);
const pool = new Pool(origin, { connections: 1 });
const sha = (b) => createHash('sha256').update(b).digest('hex');
const out = { get: [], post: [] };
for (let i = 0; i < Number(rounds); i++) {
  const g = await pool.request({ path: '/public/big.bin', method: 'GET' });
  const gb = Buffer.from(await g.body.arrayBuffer());
  out.get.push(g.statusCode === 200 && sha(gb) === bigSha);
  const body = randomBytes(1 << 20);
  const p = await pool.request({ path: '/upload', method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  const pb = Buffer.from(await p.body.arrayBuffer());
  out.post.push(p.statusCode === 200 && sha(pb) === sha(body));
}
await pool.close();
console.log(JSON.stringify(out));
`;

/** Requests every 20 ms until SIGTERM (keep-alive, plus a fresh connection every 5th); prints the count. */
const LOOP_CLIENT = `
const { Pool, Client } = await import(process.argv[2]);
const origin = process.argv[3];
const pool = new Pool(origin, { connections: 2 });
let ok = 0; const failed = []; let stop = false;
process.on('SIGTERM', () => { stop = true; });
console.log(JSON.stringify({ started: true }));
for (let i = 0; !stop; i++) {
  const d = i % 5 === 0 ? new Client(origin) : pool;
  try {
    const r = await d.request({ path: '/public/hello.txt', method: 'GET', headersTimeout: 3000, bodyTimeout: 3000 });
    const t = await r.body.text();
    if (r.statusCode === 200 && t === 'hello\\n') ok++; else failed.push(r.statusCode + ' ' + t.slice(0, 40));
  } catch (e) { failed.push(e.code ?? e.message); }
  if (d !== pool) await d.close();
  await new Promise((r) => setTimeout(r, 20));
}
await pool.close();
console.log(JSON.stringify({ done: true, ok, failed }));
`;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Site {
  node: NodeTopology;
  agent: AgentHandle;
  serverIp: string;
  big: Buffer;
  scripts: { raw: string; undici: string; loop: string };
}

const proxyStatus = (stateDir: string) => proxyGet(stateDir, '/v1/status');

async function waitProxy(stateDir: string, minRevision: number, timeoutMs = 15000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, unknown> | null = null;
  while (Date.now() < deadline) {
    last = await proxyStatus(stateDir);
    if (last && Number(last.revision) >= minRevision) return last;
    await sleep(100);
  }
  let log = '';
  try {
    log = readFileSync(path.join(stateDir, 'proxy.log'), 'utf8');
  } catch {
    /* none */
  }
  throw new Error(`proxy not serving revision >= ${minRevision}: ${JSON.stringify(last)}\nproxy.log:\n${log}`);
}

/** A node with client and server pods, nginx + echo server on the server, an agent (and its proxy). */
async function makeSite(tag: string, agentArgs: string[] = []): Promise<Site> {
  const node = await createNode(tag);
  node.writeEndpoints(
    [
      { name: 'client', namespace: 'prod', labels: { app: 'client' }, ips: ['10.200.9.10'] },
      { name: 'server', namespace: 'prod', labels: { app: 'server' }, ips: ['10.200.9.20'] },
    ],
    { namespaces: [{ name: 'prod', labels: { env: 'prod' } }] },
  );
  await node.up();
  const serverIp = node.ipOf(SERVER);
  // nginx
  const ng = path.join(node.dir, 'nginx');
  for (const d of ['www/public', 'www/admin', 'tmp']) mkdirSync(path.join(ng, d), { recursive: true });
  const big = randomBytes(1 << 20);
  writeFileSync(path.join(ng, 'www/public/big.bin'), big);
  writeFileSync(path.join(ng, 'www/public/hello.txt'), 'hello\n');
  writeFileSync(path.join(ng, 'www/admin/secret.txt'), 'secret\n');
  const conf = path.join(ng, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
user root;
worker_processes 1;
pid ${ng}/nginx.pid;
error_log ${ng}/error.log;
events { worker_connections 512; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path ${ng}/tmp/body;
  proxy_temp_path ${ng}/tmp/proxy;
  fastcgi_temp_path ${ng}/tmp/fastcgi;
  uwsgi_temp_path ${ng}/tmp/uwsgi;
  scgi_temp_path ${ng}/tmp/scgi;
  server {
    listen ${serverIp}:80;
    root ${ng}/www;
    location = /upload {
      client_max_body_size 16m;
      proxy_pass http://127.0.0.1:9001;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
    }
    location / { }
  }
  server {
    listen ${serverIp}:81 http2;
    root ${ng}/www;
  }
}
`,
  );
  const nginx = spawnInNs(node.pod(SERVER), 'nginx', ['-c', conf, '-p', ng, '-e', path.join(ng, 'error.log')]);
  const echoFile = node.writeFile('echo-server.mjs', ECHO_SERVER);
  const echo = spawnInNs(node.pod(SERVER), process.execPath, [echoFile, `${serverIp}:9000`, '127.0.0.1:9001']);
  await echo.waitFor(/127\.0\.0\.1:9001/);
  await startServer(node.pod(SERVER), { tcp: [8080] });
  const policyDir = path.join(node.dir, 'policies');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'server-http.yaml'), POLICY);
  const config = node.writeFile('membrane.yaml', 'proxyHeaderTimeoutMs: 1500\nproxyMaxHeaderBytes: 8192\n');
  const agent = startAgent(node, { policies: policyDir, extraArgs: ['--config', config, ...agentArgs] });
  node.onCleanup(async () => {
    await agent.proc.kill('SIGKILL');
    await nginx.kill('SIGTERM');
    await echo.kill('SIGTERM');
  });
  await agent.waitReady();
  await waitProxy(agent.paths.stateDir, 1);
  // nginx answers (directly from the server pod's own namespace)
  for (let i = 0; i < 50; i++) {
    const r = await inNs(node.pod(SERVER), 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${serverIp}/public/hello.txt`]);
    if (r.stdout === '200') break;
    await sleep(100);
  }
  return {
    node,
    agent,
    serverIp,
    big,
    scripts: {
      raw: node.writeFile('raw.mjs', RAW_CLIENT),
      undici: node.writeFile('undici-client.mjs', UNDICI_CLIENT),
      loop: node.writeFile('loop-client.mjs', LOOP_CLIENT),
    },
  };
}

const UNDICI = path.join(REPO_ROOT, 'node_modules', 'undici', 'index.js');

async function curl(site: Site, args: string[], timeoutMs = 10000) {
  return inNs(site.node.pod(CLIENT), 'curl', ['-sS', '--max-time', String(timeoutMs / 1000), ...args], { timeoutMs: timeoutMs + 2000 });
}

/** Raw bytes to HOST:PORT from the client pod; each part written 300 ms after the previous. */
async function raw(site: Site, port: number, parts: Array<string | Buffer>, waitMs = 1500): Promise<{ text: string; closed: boolean; error?: string }> {
  const b64 = parts.map((p) => Buffer.from(p).toString('base64'));
  const r = await inNs(site.node.pod(CLIENT), process.execPath, [site.scripts.raw, site.serverIp, String(port), String(waitMs), ...b64], { timeoutMs: waitMs + 10000 });
  const line = r.stdout.trim().split('\n').pop() ?? '{}';
  const j = JSON.parse(line) as { data: string; closed: boolean; error?: string };
  return { text: Buffer.from(j.data ?? '', 'base64').toString('latin1'), closed: j.closed, ...(j.error ? { error: j.error } : {}) };
}

const statusCodes = (text: string) => [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));

describe('HTTP/1.1 L7 proxy through the real redirect', { skip: privilegedSkip() }, () => {
  let site: Site;

  before(async () => {
    requirePrivileges();
    site = await makeSite('px');
  });
  after(async () => {
    await site?.node.cleanup();
  });

  test('allowed GET and POST reach nginx byte-exact (curl, undici keep-alive)', async () => {
    const hello = await curl(site, [`http://${site.serverIp}/public/hello.txt`]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(hello.stdout, 'hello\n');
    const out = path.join(site.node.dir, 'big.out');
    const big = await curl(site, ['-o', out, '-w', '%{http_code}', `http://${site.serverIp}/public/big.bin`]);
    assert.equal(big.stdout, '200', big.stderr);
    assert.equal(sha256(readFileSync(out)), sha256(site.big), 'the 1 MiB file arrives byte-exact');
    const u = await inNs(site.node.pod(CLIENT), process.execPath, [site.scripts.undici, UNDICI, `http://${site.serverIp}`, sha256(site.big), '3'], { timeoutMs: 30000 });
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(JSON.parse(u.stdout), { get: [true, true, true], post: [true, true, true] });
  });

  test('a denied path gets 403 "Access denied" and the connection stays usable', async () => {
    const c = await curl(site, ['-i', `http://${site.serverIp}/admin/secret.txt`]);
    assert.match(c.stdout, /^HTTP\/1\.1 403/);
    assert.ok(c.stdout.endsWith('\r\n\r\nAccess denied\r\n'), c.stdout);
    const m = await curl(site, ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'DELETE', `http://${site.serverIp}/public/hello.txt`]);
    assert.equal(m.stdout, '403', 'method is part of the rule');
    const r = await raw(site, 80, ['GET /admin/secret.txt HTTP/1.1\r\nHost: s\r\n\r\nGET /public/hello.txt HTTP/1.1\r\nHost: s\r\n\r\n']);
    assert.deepEqual(statusCodes(r.text), [403, 200], r.text);
    assert.match(r.text, /Access denied\r\n[\s\S]*hello\n$/);
  });

  test('pipelined requests are answered in order on one connection', async () => {
    const req = (p: string) => `GET ${p} HTTP/1.1\r\nHost: s\r\n\r\n`;
    const r = await raw(site, 80, [req('/public/hello.txt') + req('/admin/secret.txt') + req('/public/hello.txt') + req('/public/nope')]);
    assert.deepEqual(statusCodes(r.text), [200, 403, 200, 404], r.text);
  });

  test('chunked upload and Expect: 100-continue stream through', async () => {
    const file = path.join(site.node.dir, 'upload.bin');
    const body = randomBytes(300_000);
    writeFileSync(file, body);
    const out = path.join(site.node.dir, 'echo.out');
    const chunked = await curl(site, ['-D', '-', '-o', out, '-X', 'PUT', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, `http://${site.serverIp}:9000/echo`]);
    assert.equal(chunked.code, 0, chunked.stderr);
    assert.match(chunked.stdout, /^HTTP\/1\.1 200/);
    // a proxy may re-frame a body (RFC 9112 §7): chunked, or exactly the body's length when the
    // whole body had arrived before it was forwarded; the bytes are checked below
    assert.match(chunked.stdout, /x-req-te: chunked|x-req-cl: 300000\r?\n/i, 'the upstream got the whole body, framed');
    assert.equal(sha256(readFileSync(out)), sha256(body));
    const cont = await curl(site, ['-v', '-o', out, '-X', 'PUT', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `http://${site.serverIp}:9000/echo`]);
    assert.equal(cont.code, 0, cont.stderr);
    assert.match(cont.stderr, /< HTTP\/1\.1 100 Continue/);
    assert.equal(sha256(readFileSync(out)), sha256(body));
    const denied = await curl(site, ['-v', '-o', out, '-X', 'PUT', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `http://${site.serverIp}:9000/nope`]);
    assert.doesNotMatch(denied.stderr, /100 Continue/);
    assert.match(denied.stderr, /< HTTP\/1\.1 403/);
    // a POST to nginx, chunked
    const ng = await curl(site, ['-o', out, '-w', '%{http_code}', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, `http://${site.serverIp}/upload`]);
    assert.equal(ng.stdout, '200', ng.stderr);
    assert.equal(sha256(readFileSync(out)), sha256(body));
  });

  test('an allowed Upgrade splices the two sockets; a denied one gets 403', async () => {
    const up = await raw(site, 9000, ['GET /ws HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n', 'ping-1', 'ping-2']);
    assert.match(up.text, /^HTTP\/1\.1 101 /);
    assert.ok(up.text.endsWith('\r\n\r\nping-1ping-2'), up.text);
    const no = await raw(site, 9000, ['GET /wsx HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n', 'ping']);
    assert.match(no.text, /^HTTP\/1\.1 403 [\s\S]*Access denied\r\n$/);
  });

  test('request-smuggling shapes and path escapes get 400 and a closed connection', async () => {
    const cases: Record<string, string> = {
      'CL + TE': 'POST /upload HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'duplicate CL': 'POST /upload HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
      'invalid CL': 'POST /upload HTTP/1.1\r\nHost: s\r\nContent-Length: 1x\r\n\r\nx',
      'bad chunk size': 'POST /upload HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n',
      'obs-fold': 'GET /public/hello.txt HTTP/1.1\r\nHost: s\r\nX-A: a\r\n b\r\n\r\n',
      'TE gzip, chunked': 'POST /upload HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
      'two Host': 'GET /public/hello.txt HTTP/1.1\r\nHost: s\r\nHost: t\r\n\r\n',
      'dot-dot': 'GET /public/../admin/secret.txt HTTP/1.1\r\nHost: s\r\n\r\n',
      'encoded dot-dot': 'GET /public/%2e%2E/admin/secret.txt HTTP/1.1\r\nHost: s\r\n\r\n',
      'half-encoded dot-dot': 'GET /public/%2e./admin/secret.txt HTTP/1.1\r\nHost: s\r\n\r\n',
      'encoded slash': 'GET /public%2f..%2fadmin/secret.txt HTTP/1.1\r\nHost: s\r\n\r\n',
      'empty segment': 'GET /public//hello.txt HTTP/1.1\r\nHost: s\r\n\r\n',
      backslash: 'GET /public/..\\admin/secret.txt HTTP/1.1\r\nHost: s\r\n\r\n',
      'absolute-form': 'GET http://s/public/hello.txt HTTP/1.1\r\nHost: s\r\n\r\n',
    };
    const results = await Promise.all(Object.entries(cases).map(async ([name, data]) => [name, await raw(site, 80, [data])] as const));
    for (const [name, r] of results) {
      assert.deepEqual(statusCodes(r.text), [400], `${name}: ${JSON.stringify(r.text)}`);
      assert.ok(r.closed || r.error, `${name}: the connection is closed`);
    }
  });

  test('header limits and slowloris: 431 for a large head, 408 when the head never ends', async () => {
    const bigHead = await raw(site, 80, [`GET /public/hello.txt HTTP/1.1\r\nHost: s\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`]);
    assert.deepEqual(statusCodes(bigHead.text), [431], bigHead.text);
    const t0 = Date.now();
    const slow = await raw(site, 80, ['GET /public/hello.txt HTTP/1.1\r\n', 'Host: s\r\n', 'X-A: 1\r\n'], 6000);
    assert.deepEqual(statusCodes(slow.text), [408], slow.text);
    assert.ok(Date.now() - t0 < 5000, 'closed by the 1.5 s header timeout');
  });

  test('HTTP/2 prior knowledge (the connection preface) goes to the HTTP/2 proxy on the same port', async () => {
    const ok = await curl(site, ['--http2-prior-knowledge', '-sS', '-w', ' %{http_version}', `http://${site.serverIp}:81/public/hello.txt`]);
    assert.equal(ok.stdout, 'hello\n 2', ok.stderr);
    const no = await curl(site, ['--http2-prior-knowledge', '-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://${site.serverIp}:81/admin/secret.txt`]);
    assert.equal(no.stdout, '403', no.stderr);
  });

  test('each request is one L7 flow in `membrane observe --json`, with the deciding policy', async () => {
    await curl(site, [`http://${site.serverIp}/public/hello.txt?flow=1`]);
    await curl(site, [`http://${site.serverIp}/admin/secret.txt?flow=1`]);
    let flows: Array<Record<string, any>> = [];
    for (let i = 0; i < 50; i++) {
      flows = (await site.agent.flows(['--last', '1000'])).filter((f) => f.l7 && /flow=1/.test(String((f.l7 as Record<string, unknown>).url)));
      if (flows.length >= 2) break;
      await sleep(100);
    }
    const ok = flows.find((f) => f.l7.url === '/public/hello.txt?flow=1');
    const denied = flows.find((f) => f.l7.url === '/admin/secret.txt?flow=1');
    assert.ok(ok && denied, JSON.stringify(flows));
    assert.equal(ok.verdict, 'FORWARDED');
    assert.deepEqual({ ...ok.l7, latencyMs: 0 }, { type: 'http', method: 'GET', url: '/public/hello.txt?flow=1', protocol: 'HTTP/1.1', code: 200, host: site.serverIp, latencyMs: 0 });
    assert.deepEqual(ok.ingress.allowedBy, [POLICY_NAME]);
    assert.equal(ok.source.name, 'client');
    assert.equal(ok.destination.name, 'server');
    assert.equal(ok.destination.port, 80);
    assert.equal(denied.verdict, 'DROPPED');
    assert.equal(denied.l7.code, 403);
    assert.deepEqual(denied.ingress.deniedBy, [POLICY_NAME]);
    assert.equal(denied.ingress.verdict, 'denied');
    assert.equal(denied.egress.enforced, false);
  });

  test('agent restart (kill -9, start) while requests flow loses none', async () => {
    const loop: NsProcess = spawnInNs(site.node.pod(CLIENT), process.execPath, [site.scripts.loop, UNDICI, `http://${site.serverIp}`]);
    await loop.waitFor(/"started"/);
    await sleep(700);
    await site.agent.kill9();
    // the proxy keeps enforcing its last policy while the agent is away
    const denied = await curl(site, ['-o', '/dev/null', '-w', '%{http_code}', `http://${site.serverIp}/admin/secret.txt`]);
    assert.equal(denied.stdout, '403');
    await sleep(300);
    site.agent.restart();
    await site.agent.waitReady();
    await sleep(700);
    await loop.kill('SIGTERM', 5000);
    const res = JSON.parse(loop.stdout.trim().split('\n').pop()!) as { ok: number; failed: string[] };
    assert.deepEqual(res.failed, []);
    assert.ok(res.ok > 30, `requests went on (${res.ok})`);
  });

  test('proxy killed: redirected flows drop, non-redirected flows are unaffected', async () => {
    const pid = Number(readFileSync(path.join(site.agent.paths.stateDir, 'proxy.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await sleep(200);
    const c = await curl(site, ['--connect-timeout', '1', '-o', '/dev/null', `http://${site.serverIp}/public/hello.txt`], 3000);
    assert.equal(c.code, 28, `curl times out (exit ${c.code}: ${c.stderr})`);
    const l4 = await tcpRequest(site.node.pod(CLIENT), site.serverIp, 8080, { timeoutMs: 1000 });
    assert.equal(l4.result, 'ok');
  });
});

test('upstream sockets carry SO_MARK = proxyMark(client identity) from the SYN on', async (t) => {
  if (!requirePrivileges(t)) return;
  const node = await createNode('pm', { t });
  // Only packets marked exactly proxyMark(1234) = 0x4d20a00 have a route to 10.88.0.0/24 (into lo,
  // where nothing answers): a marked SYN is sent and times out, an unmarked connect() has no route.
  for (const args of [
    ['rule', 'add', 'fwmark', '0x4d20a00', 'lookup', '100'],
    ['route', 'add', '10.88.0.0/24', 'dev', 'lo', 'table', '100'],
  ]) {
    const r = await node.exec('ip', args);
    assert.equal(r.code, 0, r.stderr);
  }
  const code = `
    const net = await import('node:net');
    const { MarkedUpstreamConnector } = await import(${JSON.stringify(path.join(REPO_ROOT, 'proxy', 'core', 'upstream.ts'))});
    const outcome = (s) => new Promise((resolve) => {
      s.setTimeout(700, () => { s.destroy(); resolve('timeout'); });
      s.on('error', (e) => resolve(e.code));
      s.on('connect', () => resolve('connected'));
    });
    const ctx = { client: { ip: '10.0.0.1', port: 1, identity: 1234 }, server: { ip: '10.88.0.1', port: 7777, identity: 2 }, proxyPort: 15001, proto: 6 };
    const marked = await outcome(new MarkedUpstreamConnector().connect(ctx));
    const plain = await outcome(net.connect(7777, '10.88.0.1'));
    console.log(JSON.stringify({ marked, plain }));`;
  const r = await node.exec(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: REPO_ROOT });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { marked: 'timeout', plain: 'ENETUNREACH' });
});

describe('HTTP/1.1 L7 proxy in audit mode', { skip: privilegedSkip() }, () => {
  let site: Site;

  before(async () => {
    requirePrivileges();
    site = await makeSite('pa', ['--audit']);
  });
  after(async () => {
    await site?.node.cleanup();
  });

  test('`membrane agent --audit` lets a would-be-denied request through, reported AUDIT', async () => {
    const c = await curl(site, [`http://${site.serverIp}/admin/secret.txt?audit=1`]);
    assert.equal(c.stdout, 'secret\n');
    let f: Record<string, any> | undefined;
    for (let i = 0; i < 50 && !f; i++) {
      f = (await site.agent.flows(['--last', '1000'])).find((x) => (x.l7 as Record<string, unknown> | null)?.url === '/admin/secret.txt?audit=1');
      if (!f) await sleep(100);
    }
    assert.ok(f);
    assert.equal(f.verdict, 'AUDIT');
    assert.equal(f.l7.code, 200);
    assert.equal(f.ingress.verdict, 'audit');
    assert.deepEqual(f.ingress.deniedBy, [POLICY_NAME]);
  });
});
