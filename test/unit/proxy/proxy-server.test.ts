// SPDX-License-Identifier: Apache-2.0
// `membrane proxy` pieces on loopback (no datapath): the control API and the persisted policy,
// flow reports to the agent socket (bounded when the agent is away), the connection bound.
import { DEFAULT_SETTINGS } from '../../../src/config.ts';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ProxyServer } from '../../../proxy/server.ts';
import { AgentFlowReporter } from '../../../proxy/core/flow-reporter.ts';
import type { L7PolicySnapshot } from '../../../src/l7/policy.ts';

const POLICY = 'CiliumNetworkPolicy/prod/local';
const snapshot = (revision: number, globalAudit = false): L7PolicySnapshot => ({
  revision,
  globalAudit,
  endpoints: [
    {
      ref: 'prod/local',
      ips: ['127.0.0.1'],
      identity: 2000,
      audit: false,
      ingressEnforced: true,
      egressEnforced: false,
      egress: [],
      ingress: [{ proto: 6, port: 0, endPort: 0, rules: [{ peers: 'any', parser: 'http', http: [{ rule: { path: '/ok.*' }, origin: POLICY }], dns: [], kafka: [], wildcardL7: [], derivedFrom: [POLICY] }] }],
    },
  ],
});
const SETTINGS = { ...DEFAULT_SETTINGS, proxyMaxConnections: 3, proxyHeaderTimeoutMs: 2000, proxyIdleTimeoutMs: 5000, proxyMaxHeaderBytes: 8192 };

function control(sock: string, method: string, p: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, method, path: p, agent: false, headers: { 'x-membrane-agent-socket': path.join(path.dirname(sock), 'agent.sock') } }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function get(port: number, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      })
      .on('error', reject);
  });
}

describe('membrane proxy on loopback', () => {
  let dir: string;
  let upstream: http.Server;
  let agent: http.Server;
  const reported: Array<Record<string, any>> = [];
  let upstreamPort = 0;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mbr-proxy-'));
    upstream = http.createServer((req, res) => res.end(`upstream ${req.url}`));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    upstreamPort = (upstream.address() as net.AddressInfo).port;
    agent = http.createServer((req, res) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => {
        for (const l of b.split('\n').filter(Boolean)) reported.push(JSON.parse(l) as Record<string, any>);
        res.end('{}');
      });
    });
    await new Promise<void>((r) => agent.listen(path.join(dir, 'agent.sock'), () => r()));
  });
  after(async () => {
    upstream.close();
    agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = () =>
    ProxyServer.start({ stateDir: dir, bpfRoot: path.join(dir, 'no-bpf'), settings: SETTINGS, httpPort: 0, plainListener: true, upstream: { connect: () => net.connect(upstreamPort, '127.0.0.1') }, log: () => {} });

  test('policy arrives over the control socket, is enforced, and survives a proxy restart', async () => {
    let p = await start();
    try {
      assert.equal((await control(p.controlSocket, 'PUT', '/v1/policy', '{"revision": "x"}')).status, 400);
      assert.equal((await control(p.controlSocket, 'PUT', '/v1/policy', JSON.stringify(snapshot(7)))).status, 200);
      assert.deepEqual(await get(p.httpPort, '/ok/1'), { status: 200, body: 'upstream /ok/1' });
      assert.deepEqual(await get(p.httpPort, '/nope'), { status: 403, body: 'Access denied\r\n' });
    } finally {
      await p.stop();
    }
    p = await start();
    try {
      const st = JSON.parse((await control(p.controlSocket, 'GET', '/v1/status')).body) as Record<string, unknown>;
      assert.equal(st.revision, 7, 'the last policy is loaded at start');
      assert.equal(st.agentSocket, path.join(dir, 'agent.sock'));
      assert.equal((await get(p.httpPort, '/nope')).status, 403);
    } finally {
      await p.stop();
    }
  });

  test('every request is reported to the agent socket as one L7 flow', async () => {
    const p = await start();
    try {
      reported.length = 0;
      await get(p.httpPort, '/ok/flow');
      await get(p.httpPort, '/denied/flow');
      await get(p.httpPort, '/ok/../flow');
      const urls = ['/ok/flow', '/denied/flow', '/ok/../flow'];
      for (let i = 0; i < 250 && !urls.every((u) => reported.some((f) => f.l7.url === u)); i++) await new Promise((r) => setTimeout(r, 20));
      const ok = reported.find((f) => f.l7.url === '/ok/flow');
      const denied = reported.find((f) => f.l7.url === '/denied/flow');
      assert.equal(ok?.verdict, 'FORWARDED');
      assert.deepEqual(ok?.ingress.allowedBy, [POLICY]);
      assert.equal(ok?.destination.name, 'local');
      assert.equal(denied?.verdict, 'DROPPED');
      assert.equal(denied?.l7.code, 403);
      assert.deepEqual(denied?.ingress.deniedBy, [POLICY]);
      const bad = reported.find((f) => f.l7.url === '/ok/../flow');
      assert.equal(bad?.verdict, 'DROPPED');
      assert.equal(bad?.l7.code, 400);
      assert.equal(bad?.dropReason, 'INVALID_PACKET_DROPPED');
      assert.match(bad?.ingress.reason, /refused by the proxy before policy: dot-segment/);
    } finally {
      await p.stop();
    }
  });

  test('connections beyond proxyMaxConnections are refused; the others are served', async () => {
    const p = await start();
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect(p.httpPort, '127.0.0.1');
        s.on('error', () => {});
        socks.push(s);
        await new Promise((r) => s.once('connect', r));
      }
      await new Promise((r) => setTimeout(r, 50));
      const extra = net.connect(p.httpPort, '127.0.0.1');
      const closed = await new Promise<string>((resolve) => {
        extra.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        extra.on('close', () => resolve('closed'));
        extra.on('connect', () => extra.write('GET /ok HTTP/1.1\r\nHost: a\r\n\r\n'));
        extra.on('data', () => resolve('answered'));
      });
      assert.notEqual(closed, 'answered');
      assert.equal(p.refused, 1);
    } finally {
      for (const s of socks) s.destroy();
      await p.stop();
    }
  });
});

test('flow reports wait in a bounded buffer while the agent is unreachable; requests never wait', () => {
  const r = new AgentFlowReporter({ agentSocket: '/nonexistent/agent.sock', endpoints: { endpointOf: () => undefined }, maxBuffered: 5 });
  const ctx = { client: { ip: '10.0.0.1', port: 1, identity: 2 }, server: { ip: '10.0.0.2', port: 80, identity: 2 }, proxyPort: 15001, proto: 6 };
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) r.report(ctx, { type: 'http', method: 'GET', url: `/${i}`, protocol: 'HTTP/1.1', code: 200 }, { forward: true, verdict: 'allowed' }, 1);
  assert.ok(performance.now() - t0 < 50);
  assert.equal(r.pending, 5);
  assert.equal(r.dropped, 15);
  r.close();
});

test('the proxy listens on the port the datapath redirects HTTP to', async () => {
  const { PROXY_PORTS } = await import('../../../src/endpoint/manager.ts');
  const { PROXY_HTTP_PORT } = await import('../../../proxy/server.ts');
  assert.equal(PROXY_HTTP_PORT, PROXY_PORTS.http);
});
