// SPDX-License-Identifier: Apache-2.0
/**
 * @module endpoint/endpoints-file
 *
 * Reads the standalone endpoints file (DESIGN §3.1): the node's gateway, namespaces with their
 * labels, and endpoints with labels, addresses, named ports, network namespace and audit flag.
 * Errors name the file, line and field.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isMap, isSeq, type Node as YamlNode } from 'yaml';
import { parseIp } from '../labels/cidr.ts';
import type { EndpointSpec, NamedPort } from '../policy/engine.ts';

export interface EndpointEntry extends EndpointSpec {
  /** Network namespace: endpoints with one are plumbed and enforced. */
  netns?: string;
  /** 1-based line of the entry. */
  line: number;
}

export interface EndpointsFile {
  file: string;
  gateway: string;
  namespaces: Array<{ name: string; labels: Record<string, string> }>;
  endpoints: EndpointEntry[];
}

export class EndpointsFileError extends Error {
  readonly code = 'MBR_ERR_ENDPOINTS_FILE';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

export const DEFAULT_GATEWAY = '169.254.1.1';
const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const PORT_NAME_RE = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Reads and validates an endpoints file.
 * @param file path
 * @throws EndpointsFileError listing every problem as `file:line: field: message`
 */
export function readEndpointsFile(file: string): EndpointsFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new EndpointsFileError([`${file}:0: cannot read endpoints file: ${(e as Error).message}`]);
  }
  return parseEndpointsText(text, file);
}

/** Parses endpoints-file text (see readEndpointsFile). */
export function parseEndpointsText(text: string, file: string): EndpointsFile {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const problems: string[] = [];
  const lineOf = (n: YamlNode | null | undefined) => (n?.range ? lc.linePos(n.range[0]).line : 0);
  const fail = (n: YamlNode | null | undefined, field: string, msg: string) => problems.push(`${file}:${lineOf(n)}: ${field}: ${msg}`);
  for (const e of doc.errors) problems.push(`${file}:${e.linePos?.[0]?.line ?? 0}: YAML syntax error: ${e.message.split('\n')[0]}`);
  if (problems.length) throw new EndpointsFileError(problems);
  const out: EndpointsFile = { file, gateway: DEFAULT_GATEWAY, namespaces: [], endpoints: [] };
  const root = doc.contents;
  if (root === null || root === undefined) return out;
  if (!isMap(root)) throw new EndpointsFileError([`${file}:${lineOf(root as YamlNode)}: the endpoints file must be a mapping`]);
  const get = (m: YamlNode, key: string): YamlNode | undefined => (isMap(m) ? (m.get(key, true) as YamlNode | undefined) : undefined);
  const known = (m: YamlNode, keys: string[], path: string) => {
    if (!isMap(m)) return;
    for (const item of m.items) {
      const k = String((item.key as { value?: unknown })?.value ?? item.key);
      if (!keys.includes(k)) fail(item.key as YamlNode, path ? `${path}.${k}` : k, 'unknown field');
    }
  };
  known(root, ['node', 'namespaces', 'endpoints'], '');
  const str = (n: YamlNode | undefined, field: string): string | undefined => {
    if (n === undefined) return undefined;
    const v = (n as { value?: unknown }).value;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    fail(n, field, 'must be a string');
    return undefined;
  };
  const labelsOf = (n: YamlNode | undefined, field: string): Record<string, string> => {
    const labels: Record<string, string> = {};
    if (n === undefined || (n as { value?: unknown }).value === null) return labels;
    if (!isMap(n)) {
      fail(n, field, 'must be a mapping of label key to value');
      return labels;
    }
    for (const item of n.items) {
      const k = String((item.key as { value?: unknown })?.value ?? '');
      const v = str(item.value as YamlNode, `${field}.${k}`);
      if (v !== undefined) labels[k] = v;
    }
    return labels;
  };

  const node = get(root, 'node');
  if (node) {
    known(node, ['gateway'], 'node');
    const gw = str(get(node, 'gateway'), 'node.gateway');
    if (gw !== undefined) {
      if (parseIp(gw)?.family !== 4) fail(get(node, 'gateway'), 'node.gateway', `'${gw}' is not an IPv4 address`);
      else out.gateway = gw;
    }
  }
  const nss = get(root, 'namespaces');
  if (nss && (nss as { value?: unknown }).value !== null) {
    if (!isSeq(nss)) fail(nss, 'namespaces', 'must be a list');
    else
      nss.items.forEach((item, i) => {
        const f = `namespaces[${i}]`;
        known(item as YamlNode, ['name', 'labels'], f);
        const name = str(get(item as YamlNode, 'name'), `${f}.name`);
        if (!name) return void fail(item as YamlNode, `${f}.name`, 'required');
        out.namespaces.push({ name, labels: labelsOf(get(item as YamlNode, 'labels'), `${f}.labels`) });
      });
  }
  const eps = get(root, 'endpoints');
  const seen = new Map<string, number>();
  if (eps && (eps as { value?: unknown }).value !== null) {
    if (!isSeq(eps)) fail(eps, 'endpoints', 'must be a list');
    else
      eps.items.forEach((item, i) => {
        const f = `endpoints[${i}]`;
        const n = item as YamlNode;
        if (!isMap(n)) return void fail(n, f, 'must be a mapping');
        known(n, ['name', 'namespace', 'labels', 'ips', 'ports', 'netns', 'audit', 'serviceAccount'], f);
        const name = str(get(n, 'name'), `${f}.name`);
        if (!name) return void fail(n, `${f}.name`, 'required');
        if (!NAME_RE.test(name)) fail(get(n, 'name'), `${f}.name`, `'${name}' is not a valid name (lowercase letters, digits, '-')`);
        const namespace = str(get(n, 'namespace'), `${f}.namespace`) ?? 'default';
        const ref = `${namespace}/${name}`;
        if (seen.has(ref)) fail(n, f, `duplicate endpoint ${ref} (also at line ${seen.get(ref)})`);
        seen.set(ref, lineOf(n));
        const ips: string[] = [];
        const ipsNode = get(n, 'ips');
        if (ipsNode && isSeq(ipsNode)) {
          ipsNode.items.forEach((ipn, j) => {
            const ip = str(ipn as YamlNode, `${f}.ips[${j}]`);
            if (ip === undefined) return;
            if (!parseIp(ip)) fail(ipn as YamlNode, `${f}.ips[${j}]`, `'${ip}' is not an IP address`);
            else ips.push(ip);
          });
        } else if (ipsNode) fail(ipsNode, `${f}.ips`, 'must be a list of addresses');
        const namedPorts: Record<string, NamedPort> = {};
        const portsNode = get(n, 'ports');
        if (portsNode && isMap(portsNode)) {
          for (const item of portsNode.items) {
            const pname = String((item.key as { value?: unknown })?.value ?? '').toLowerCase();
            const pf = `${f}.ports.${pname}`;
            if (!PORT_NAME_RE.test(pname) || pname.length > 15) fail(item.key as YamlNode, pf, `'${pname}' is not a valid port name`);
            const v = item.value as YamlNode;
            let port: unknown = (v as { value?: unknown })?.value;
            let protocol = 'TCP';
            if (isMap(v)) {
              known(v, ['port', 'protocol'], pf);
              port = (get(v, 'port') as { value?: unknown } | undefined)?.value;
              protocol = String((get(v, 'protocol') as { value?: unknown } | undefined)?.value ?? 'TCP').toUpperCase();
            }
            if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) fail(v, `${pf}.port`, 'must be a port number 1..65535');
            else if (!['TCP', 'UDP', 'SCTP'].includes(protocol)) fail(v, `${pf}.protocol`, `'${protocol}' must be TCP, UDP or SCTP`);
            else namedPorts[pname] = { port, protocol: protocol as NamedPort['protocol'] };
          }
        } else if (portsNode) fail(portsNode, `${f}.ports`, 'must be a mapping of port name to port');
        const netns = str(get(n, 'netns'), `${f}.netns`);
        if (netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(netns)) fail(get(n, 'netns'), `${f}.netns`, `'${netns}' is not a valid namespace name`);
        const auditNode = get(n, 'audit');
        const audit = (auditNode as { value?: unknown } | undefined)?.value;
        if (auditNode && typeof audit !== 'boolean') fail(auditNode, `${f}.audit`, 'must be true or false');
        out.endpoints.push({
          name,
          namespace,
          labels: labelsOf(get(n, 'labels'), `${f}.labels`),
          ips,
          namedPorts,
          netns,
          audit: audit === true,
          serviceAccount: str(get(n, 'serviceAccount'), `${f}.serviceAccount`),
          line: lineOf(n),
        });
      });
  }
  if (problems.length) throw new EndpointsFileError(problems);
  return out;
}
