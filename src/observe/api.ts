// SPDX-License-Identifier: Apache-2.0
/**
 * @module observe/api
 *
 * The agent's local API: HTTP/1.1 over a UNIX socket (default /run/membrane/agent.sock).
 *   GET /v1/status                                    → status JSON (DESIGN §3.4)
 *   GET /v1/flows?last=N&verdict=V&from=REF&to=REF     → flows, one JSON object per line
 *   GET /v1/flows?follow=1&…                          → the same, then new flows as they come
 *   POST /v1/flows  (one JSON record per line)          ← L7 flows reported by `membrane proxy`
 *   POST /v1/fqdn   {learn: [{name, ips}], forget: [...]} ← the DNS proxy's cache changes; answers
 *                                                        {fqdn: table} once the maps are programmed
 * `membrane status` and `membrane observe` are its clients and work from any namespace.
 */
import http from 'node:http';
import { isIP } from 'node:net';
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { FlowFilter, FlowRecord, RawIngest } from './flows.ts';
import { flowMatches } from './flows.ts';

export const DEFAULT_SOCKET = '/run/membrane/agent.sock';

export interface ApiHandlers {
  status(): unknown;
  flows(last: number, filter: FlowFilter): FlowRecord[];
  subscribe(fn: (f: FlowRecord) => void): () => void;
  /**
   * Adds flows reported by the proxy: a POST body's chunks as received, JSON records one per line
   * (checked when read); lines may span chunks. The chunks are the handler's to keep.
   * @returns lines taken (they start with `{`) and other non-blank lines rejected
   */
  ingest?(body: readonly Buffer[]): RawIngest;
  /** Applies DNS cache changes reported by the proxy; resolves with what to answer. */
  fqdn?(update: FqdnUpdateBody): Promise<unknown>;
}

export interface FqdnUpdateBody {
  learn: Array<{ name: string; ips: string[] }>;
  forget: Array<{ name: string; ips: string[] }>;
}

/** Checks a POST /v1/fqdn body. @returns the problem, or null */
export function fqdnUpdateProblem(x: unknown): string | null {
  const o = x as Record<string, unknown> | null;
  if (!o || typeof o !== 'object') return 'not an object';
  for (const k of ['learn', 'forget'] as const) {
    const list = o[k];
    if (!Array.isArray(list)) return `${k}: must be a list`;
    for (const [i, e] of list.entries()) {
      const r = e as Record<string, unknown> | null;
      if (!r || typeof r.name !== 'string' || r.name.length > 255 || !Array.isArray(r.ips)) return `${k}[${i}]: needs name and ips`;
      if (r.ips.some((ip) => typeof ip !== 'string' || isIP(ip) === 0)) return `${k}[${i}].ips: not IP addresses`;
    }
  }
  return null;
}


/**
 * Serves the API on a UNIX socket (a stale socket file from a killed agent is replaced).
 * @returns the server; close it to stop
 */
export async function startApiServer(socketPath: string, h: ApiHandlers): Promise<http.Server> {
  mkdirSync(path.dirname(socketPath), { recursive: true });
  if (existsSync(socketPath)) unlinkSync(socketPath);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    try {
      if (req.method === 'GET' && url.pathname === '/v1/status') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(h.status()));
        return;
      }
      if (req.method === 'GET' && url.pathname === '/v1/flows') {
        const filter: FlowFilter = {
          verdict: url.searchParams.get('verdict') ?? undefined,
          from: url.searchParams.get('from') ?? undefined,
          to: url.searchParams.get('to') ?? undefined,
        };
        const lastParam = url.searchParams.get('last');
        const follow = url.searchParams.get('follow') === '1';
        const last = lastParam !== null ? Math.max(0, Number(lastParam) || 0) : follow ? 0 : Number.MAX_SAFE_INTEGER;
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        for (const f of h.flows(last, filter)) res.write(JSON.stringify(f) + '\n');
        if (!follow) {
          res.end();
          return;
        }
        res.flushHeaders();
        const unsubscribe = h.subscribe((f) => {
          if (flowMatches(f, filter)) res.write(JSON.stringify(f) + '\n');
        });
        req.on('close', unsubscribe);
        return;
      }
      if (req.method === 'POST' && url.pathname === '/v1/flows' && h.ingest) {
        const chunks: Buffer[] = [];
        let size = 0;
        req.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= 16 << 20) chunks.push(c);
        });
        req.on('end', () => {
          if (size > 16 << 20) {
            res.writeHead(413, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ error: 'too large' }));
            return;
          }
          // the chunks as they came: no concatenated copy, no string (the store keeps bytes)
          const { accepted, rejected } = h.ingest!(chunks);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ accepted, rejected }));
        });
        return;
      }
      if (req.method === 'POST' && url.pathname === '/v1/fqdn' && h.fqdn) {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const send = (code: number, doc: unknown) => {
            res.writeHead(code, { 'content-type': 'application/json' });
            res.end(JSON.stringify(doc));
          };
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch (e) {
            return send(400, { error: `not JSON: ${(e as Error).message}` });
          }
          const problem = fqdnUpdateProblem(body);
          if (problem) return send(400, { error: problem });
          h.fqdn!(body as FqdnUpdateBody).then(
            (doc) => send(200, doc),
            (e: Error) => send(500, { error: e.message }),
          );
        });
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `no route ${req.method} ${url.pathname}` }));
    } catch (e) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: (e as Error).message }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}

/** A GET on the agent socket. @throws when the agent cannot be reached */
export function apiGet(socketPath: string, p: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: p, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** Streams lines from a GET on the agent socket until the connection closes or `signal` aborts. */
export function apiStream(socketPath: string, p: string, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: p, signal }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    req.on('error', (e) => ((e as { name?: string }).name === 'AbortError' ? resolve() : reject(e)));
  });
}
