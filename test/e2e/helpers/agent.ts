// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers/agent
 *
 * Driving a standalone `membrane agent` inside a test node (DESIGN §3.4), and loops of TCP
 * connections that count every attempt with its time (for "no enforcement gap" checks).
 *
 * Each agent gets its own `--bpf-root` (`/sys/fs/bpf/membrane-test-<pid>-<n>`), `--socket` and
 * `--state-dir` (in the node's temp dir), and registers `membrane cleanup` for them as a
 * cleanup step of the node, so pins and attached programs go away with the node.
 *
 * @example
 * const agent = await startAgent(node, { policies: dir });
 * await agent.waitReady();
 * const st = await agent.status(); // { code: 0, json: { ready: true, policyRevision: 1, … } }
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnInNs, type CmdResult, type NsProcess } from './ns.ts';
import type { NodeTopology } from './topology.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The connection loop script (see its header). */
export const LOOP_SCRIPT = path.join(here, 'traffic', 'loop.mjs');

/** An entry of `errors` in `membrane status --json`. */
export interface StatusError {
  file: string;
  line: number;
  object?: string;
  field?: string;
  message: string;
}

/** An entry of `endpoints` in `membrane status --json`. */
export interface StatusEndpoint {
  namespace: string;
  name: string;
  identity: number;
  ips: string[];
  interface: string;
  epId: number;
  enforced: boolean;
  policyRevision: number;
  error?: string;
  [k: string]: unknown;
}

/** `membrane status --json`. */
export interface AgentStatus {
  ready: boolean;
  policyRevision: number;
  endpoints: StatusEndpoint[];
  errors: StatusError[];
  [k: string]: unknown;
}

let agentCounter = 0;

/**
 * GET on `membrane proxy`'s control socket (`<state-dir>/proxy.sock`), e.g. `/v1/status`.
 * @returns the JSON document, or null when the proxy does not answer 200 with JSON
 */
export function proxyGet(stateDir: string, p = '/v1/status'): Promise<Record<string, unknown> | null> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath: path.join(stateDir, 'proxy.sock'), path: p, timeout: 1000 }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 ? (JSON.parse(b) as Record<string, unknown>) : null);
        } catch {
          resolve(null);
        }
      });
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => req.destroy());
  });
}

/** Paths an agent of a node uses. */
export interface AgentPaths {
  bpfRoot: string;
  socket: string;
  stateDir: string;
}

/**
 * Fresh, unique paths for an agent of `node`, with `membrane cleanup` for them registered on
 * the node (it also removes the bpf root directory if anything is left in it that is ours).
 */
export function agentPaths(node: NodeTopology): AgentPaths {
  const n = ++agentCounter;
  const p: AgentPaths = {
    bpfRoot: `/sys/fs/bpf/membrane-test-${process.pid}-${n}`,
    socket: path.join(node.dir, `agent${n}.sock`),
    stateDir: path.join(node.dir, `state${n}`),
  };
  mkdirSync(p.stateDir, { recursive: true });
  node.onCleanup(async () => {
    const r = await node.membrane(['cleanup', '--bpf-root', p.bpfRoot, '--state-dir', p.stateDir, '--endpoints', node.endpointsFile]);
    if (r.code !== 0) process.stderr.write(`membrane cleanup (${p.bpfRoot}) exited ${r.code}: ${r.stderr}\n`);
    if (existsSync(p.bpfRoot) && readdirSync(p.bpfRoot).length === 0) rmdirSync(p.bpfRoot);
  });
  return p;
}

/** A running (or killed) agent and the CLI commands that talk to it. */
export class AgentHandle {
  readonly node: NodeTopology;
  readonly paths: AgentPaths;
  readonly args: string[];
  proc: NsProcess;

  constructor(node: NodeTopology, paths: AgentPaths, args: string[], proc: NsProcess) {
    this.node = node;
    this.paths = paths;
    this.args = args;
    this.proc = proc;
  }

  /** `membrane status --json --socket …`: exit code and the parsed document (if any). */
  async status(): Promise<{ code: number; json?: AgentStatus; stderr: string }> {
    const r = await this.node.membrane(['status', '--socket', this.paths.socket, '--json']);
    let json: AgentStatus | undefined;
    try {
      json = JSON.parse(r.stdout) as AgentStatus;
    } catch {
      /* none */
    }
    return { code: r.code, ...(json ? { json } : {}), stderr: r.stderr };
  }

  /** `membrane observe --socket … ARGS` (any further arguments, e.g. --json, --last 5). */
  observe(args: readonly string[] = []): Promise<CmdResult> {
    return this.node.membrane(['observe', '--socket', this.paths.socket, ...args]);
  }

  /** The flows of `observe --json ARGS`, parsed. */
  async flows(args: readonly string[] = []): Promise<Array<Record<string, unknown>>> {
    const r = await this.observe(['--json', ...args]);
    if (r.code !== 0) throw new Error(`membrane observe exited ${r.code}: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /**
   * Polls `membrane status` until `pred` holds.
   * @returns the status that satisfied it
   * @throws Error with the last status and the agent's stderr on timeout or when the agent exits
   */
  async waitStatus(pred: (s: AgentStatus, code: number) => boolean, what: string, timeoutMs = 15_000): Promise<AgentStatus> {
    const deadline = Date.now() + timeoutMs;
    let last: Awaited<ReturnType<AgentHandle['status']>> | undefined;
    let exited = false;
    void this.proc.exited.then(() => (exited = true));
    while (Date.now() < deadline) {
      last = await this.status();
      if (last.json && last.code !== 1 && pred(last.json, last.code)) return last.json;
      if (exited) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `agent: ${exited ? 'exited' : 'timed out'} waiting for ${what}; last status (exit ${last?.code}): ${JSON.stringify(last?.json)} ${last?.stderr ?? ''}\nagent stderr:\n${this.proc.stderr}`,
    );
  }

  /** Waits for exit 0 and `ready: true`. */
  waitReady(timeoutMs = 20_000): Promise<AgentStatus> {
    return this.waitStatus((s, code) => code === 0 && s.ready === true, 'ready', timeoutMs);
  }

  /** `kill -9` of the agent; waits for it to be gone. */
  async kill9(): Promise<void> {
    await this.proc.kill('SIGKILL');
  }

  /** Starts a new agent process with the same arguments and paths (a restart). */
  restart(): NsProcess {
    this.proc = this.node.spawnMembrane(this.args);
    return this.proc;
  }

  /** The agent's endpoint entry in status for `ref` (`ns/name`). */
  static endpointOf(s: AgentStatus, ref: string): StatusEndpoint | undefined {
    return s.endpoints.find((e) => `${e.namespace}/${e.name}` === ref);
  }
}

/** Options of {@link startAgent}. */
export interface StartAgentOptions {
  /** The policies path(s). */
  policies: string | string[];
  /** Extra arguments (e.g. `--uplink X`). */
  extraArgs?: string[];
  /** Reuse these paths (default: fresh ones from {@link agentPaths}). */
  paths?: AgentPaths;
}

/**
 * Starts `membrane agent` inside the node with its own bpf root, socket and state dir (the
 * node's cleanup runs `membrane cleanup` for them). Does not wait: call `waitReady()`.
 */
export function startAgent(node: NodeTopology, opts: StartAgentOptions): AgentHandle {
  const paths = opts.paths ?? agentPaths(node);
  const args = ['agent', '--endpoints', node.endpointsFile, '--socket', paths.socket, '--state-dir', paths.stateDir, '--bpf-root', paths.bpfRoot];
  for (const p of Array.isArray(opts.policies) ? opts.policies : [opts.policies]) args.push('--policies', p);
  args.push(...(opts.extraArgs ?? []));
  return new AgentHandle(node, paths, args, node.spawnMembrane(args));
}

/** One connection attempt of a {@link ConnLoop}. */
export interface Attempt {
  /** Start and end, wall clock ms. */
  t: number;
  e: number;
  r: 'ok' | 'timeout' | 'refused' | 'reset' | 'unreachable' | 'error';
  /** The handshake completed (the SYN got through). */
  c: boolean;
  err?: string;
}

/** A running loop of TCP connections from a namespace (traffic/loop.mjs). */
export interface ConnLoop {
  /** Attempts finished so far. */
  attempts(): Attempt[];
  /** Stops it after the attempts in flight and returns every attempt. */
  stop(): Promise<Attempt[]>;
}

/**
 * Starts connecting to HOST:PORT from NS over and over (see traffic/loop.mjs).
 * @param opts timeoutMs per attempt (default 1000), intervalMs between attempts of a worker
 *   (default 0), concurrency (default 1)
 */
export async function startLoop(
  ns: string,
  host: string,
  port: number,
  opts: { timeoutMs?: number; intervalMs?: number; concurrency?: number } = {},
): Promise<ConnLoop> {
  const proc = spawnInNs(ns, process.execPath, [
    LOOP_SCRIPT,
    host,
    String(port),
    '--timeout',
    String(opts.timeoutMs ?? 1000),
    '--interval',
    String(opts.intervalMs ?? 0),
    '--concurrency',
    String(opts.concurrency ?? 1),
  ]);
  await proc.waitFor(/"started"/);
  const parse = (): Attempt[] =>
    proc.stdout
      .split('\n')
      .filter((l) => l.startsWith('{"t"'))
      .map((l) => JSON.parse(l) as Attempt);
  return {
    attempts: parse,
    async stop() {
      const r = await proc.kill('SIGTERM', 5000);
      if (!/"done":true/.test(proc.stdout)) throw new Error(`loop.mjs ${host}:${port} in ${ns} ended badly (${JSON.stringify(r)}): ${proc.stderr}`);
      return parse();
    },
  };
}

/** Counts of a set of attempts. */
export function summarize(attempts: Attempt[]): { total: number; ok: number; connected: number; failed: Attempt[] } {
  return {
    total: attempts.length,
    ok: attempts.filter((a) => a.r === 'ok').length,
    connected: attempts.filter((a) => a.c).length,
    failed: attempts.filter((a) => a.r !== 'ok'),
  };
}
