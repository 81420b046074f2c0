// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/trace-command
 *
 * `membrane policy trace` (DESIGN §3.2): the offline verdict of one flow, with the rules behind
 * it, on both sides and down to L7. Exit 0 for any verdict, 2 for bad input.
 */
import { loadPolicyPaths } from '../api/load.ts';
import { formatProblem } from '../api/types.ts';
import { readEndpointsFile, EndpointsFileError, DEFAULT_GATEWAY, type EndpointsFile } from '../endpoint/endpoints-file.ts';
import { buildEngine } from '../endpoint/standalone.ts';
import { parseIp } from '../labels/cidr.ts';
import { kafkaApiKeyFromName } from '../l7/kafka.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import { traceFlow, type FlowPeer, type TraceInput, type TraceResult, type TraceSide } from '../policy/trace.ts';
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, protoName } from '../policy/types.ts';
import { parseArgs, one, UsageError } from './args.ts';
import type { CliIo } from './io.ts';

const PROTOS: Record<string, number> = { TCP: PROTO_TCP, UDP: PROTO_UDP, SCTP: PROTO_SCTP, ICMP: PROTO_ICMP, ICMPV6: PROTO_ICMPV6 };

/** Parses `N[/PROTO]`. */
export function parsePortSpec(spec: string): { proto: number; port: number } {
  const [p, proto = 'TCP'] = spec.split('/');
  const protoNum = PROTOS[proto.toUpperCase()];
  if (protoNum === undefined) throw new UsageError(`--port: unknown protocol '${proto}' (TCP, UDP, SCTP, ICMP, ICMPv6)`);
  if (!/^\d+$/.test(p ?? '')) throw new UsageError(`--port: '${p}' is not a number`);
  const port = Number(p);
  const max = protoNum === PROTO_ICMP || protoNum === PROTO_ICMPV6 ? 255 : 65535;
  if (port > max) throw new UsageError(`--port: ${port} is out of range (0..${max})`);
  return { proto: protoNum, port };
}

function resolvePeer(engine: PolicyEngine, ref: string, flag: string): FlowPeer {
  if (ref === 'host') return { kind: 'host' };
  if (parseIp(ref)) {
    const ep = engine.endpointByIp(ref);
    if (ep) return { kind: 'endpoint', endpoint: ep };
    if (engine.isHostIp(ref)) return { kind: 'host' };
    return { kind: 'ip', ip: ref };
  }
  const full = ref.includes('/') ? ref : `default/${ref}`;
  const ep = engine.endpoint(full);
  if (!ep) throw new UsageError(`${flag}: no endpoint '${ref}' in the endpoints file (use namespace/name, an IP address, or host)`);
  return { kind: 'endpoint', endpoint: ep };
}

function sideJson(s: TraceSide) {
  return { enforced: s.enforced, verdict: s.verdict, redirected: s.redirected, l7: s.l7, allowedBy: s.allowedBy, deniedBy: s.deniedBy, reason: s.reason };
}

function describe(engine: PolicyEngine, p: FlowPeer, identity: number): string {
  if (p.kind === 'endpoint') return `${p.endpoint.ref} (identity ${identity}, ${p.endpoint.spec.ips.join(', ') || 'no address'})`;
  if (p.kind === 'host') return `host (identity ${identity})`;
  const id = engine.identityOfIp(p.ip);
  return `${p.ip} (identity ${id}${id === 2 ? ', world' : ''})`;
}

function human(engine: PolicyEngine, input: TraceInput, r: TraceResult, l7text: string): string {
  const lines: string[] = [];
  lines.push(`Flow: ${describe(engine, input.from, r.sourceIdentity)} -> ${describe(engine, input.to, r.destinationIdentity)} ${protoName(input.proto)}/${input.port}${l7text}`);
  for (const [name, side] of [['Egress', r.egress], ['Ingress', r.ingress]] as const) {
    lines.push(`${name}:`);
    for (const s of side.steps) lines.push(`  ${s}`);
    lines.push(`  => ${side.verdict.toUpperCase()}${side.enforced ? '' : ' (not enforced)'}: ${side.reason}`);
  }
  lines.push(`Verdict: ${r.verdict.toUpperCase()}`);
  return lines.join('\n') + '\n';
}

/**
 * @param argv arguments after `policy trace`
 * @returns 0 for any verdict, 2 for bad input
 */
export async function run(argv: string[], io: CliIo): Promise<number> {
  try {
    const args = parseArgs(argv, {
      values: ['endpoints', 'from', 'to', 'port', 'fqdn', 'http', 'http-host', 'dns', 'kafka', 'kafka-client-id', 'kafka-api-version'],
      repeatable: ['policies', 'http-header'],
      flags: ['audit', 'json'],
    });
    if (args.positional.length) throw new UsageError(`unexpected argument '${args.positional[0]}'`);
    const policyPaths = args.values.get('policies') ?? [];
    if (policyPaths.length === 0) throw new UsageError('--policies PATH is required');
    for (const f of ['from', 'to', 'port']) if (!one(args, f)) throw new UsageError(`--${f} is required`);
    const { proto, port } = parsePortSpec(one(args, 'port')!);

    const loaded = loadPolicyPaths(policyPaths);
    const errors = loaded.problems.filter((p) => p.severity === 'error');
    for (const p of loaded.problems.filter((p) => p.severity === 'warning')) io.err(`warning: ${formatProblem(p)}\n`);
    if (errors.length) {
      for (const p of errors) io.err(`${formatProblem(p)}\n`);
      return 2;
    }
    const epFile = one(args, 'endpoints');
    const endpoints: EndpointsFile = epFile ? readEndpointsFile(epFile) : { file: '', gateway: DEFAULT_GATEWAY, namespaces: [], endpoints: [] };
    const engine = buildEngine(endpoints, loaded.rules);
    const to = one(args, 'to')!;
    const fqdn = one(args, 'fqdn');
    if (fqdn !== undefined) {
      if (!parseIp(to)) throw new UsageError('--fqdn needs --to to be an IP address');
      engine.learnFqdn(fqdn, [to]);
    }
    const input: TraceInput = {
      from: resolvePeer(engine, one(args, 'from')!, '--from'),
      to: resolvePeer(engine, to, '--to'),
      proto,
      port,
      audit: args.flags.has('audit'),
    };
    let l7text = '';
    const http = one(args, 'http');
    if (http !== undefined) {
      const m = /^(\S+)\s+(\S+)$/.exec(http.trim());
      if (!m) throw new UsageError(`--http: expected 'METHOD PATH', got '${http}'`);
      const headers: Array<[string, string]> = (args.values.get('http-header') ?? []).map((h) => {
        const i = h.indexOf(':');
        if (i <= 0) throw new UsageError(`--http-header: expected 'Name: value', got '${h}'`);
        return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
      });
      const host = one(args, 'http-host');
      input.http = { method: m[1]!, path: m[2]!, host, headers };
      l7text = ` [HTTP ${m[1]} ${m[2]}${host ? ` host ${host}` : ''}]`;
    } else if (args.values.has('http-header') || args.values.has('http-host')) {
      throw new UsageError('--http-host and --http-header need --http');
    }
    const dns = one(args, 'dns');
    if (dns !== undefined) {
      input.dns = dns;
      l7text += ` [DNS ${dns}]`;
    }
    const kafka = one(args, 'kafka');
    if (kafka !== undefined) {
      const [key, topics] = kafka.trim().split(/\s+/, 2);
      const apiKey = /^\d+$/.test(key ?? '') ? Number(key) : kafkaApiKeyFromName(key ?? '');
      if (apiKey === null || apiKey === undefined || Number.isNaN(apiKey)) throw new UsageError(`--kafka: unknown API key '${key}'`);
      const v = one(args, 'kafka-api-version');
      if (v !== undefined && !/^\d+$/.test(v)) throw new UsageError(`--kafka-api-version: '${v}' is not a number`);
      input.kafka = {
        apiKey,
        apiVersion: v === undefined ? null : Number(v),
        clientId: one(args, 'kafka-client-id') ?? null,
        topics: topics ? topics.split(',').filter(Boolean) : [],
      };
      l7text += ` [Kafka ${kafka}]`;
    } else if (args.values.has('kafka-client-id') || args.values.has('kafka-api-version')) {
      throw new UsageError('--kafka-client-id and --kafka-api-version need --kafka');
    }
    const result = traceFlow(engine, input);
    if (args.flags.has('json')) {
      io.out(JSON.stringify({ verdict: result.verdict, egress: sideJson(result.egress), ingress: sideJson(result.ingress) }) + '\n');
    } else {
      io.out(human(engine, input, result, l7text));
    }
    return 0;
  } catch (e) {
    if (e instanceof EndpointsFileError) {
      for (const p of e.problems) io.err(`${p}\n`);
      return 2;
    }
    const err = e as Error & { code?: string };
    io.err(`membrane policy trace: ${err.message}\n`);
    return 2;
  }
}
