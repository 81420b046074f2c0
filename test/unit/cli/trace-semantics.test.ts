// SPDX-License-Identifier: Apache-2.0
/**
 * Edge cases of the Cilium semantics (reference §2, §3, §4, §5, §9), driven through
 * `membrane policy trace --json` on small inline policies, so each case reads like a scenario.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../../../src/cli/trace-command.ts';
import { captureIo } from '../../../src/cli/io.ts';
import { splitArgs } from '../../helpers/golden.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'mbr-sem-'));
const endpoints = path.join(dir, 'endpoints.yaml');
writeFileSync(
  endpoints,
  `namespaces:
  - {name: a, labels: {env: prod}}
  - {name: b, labels: {env: dev}}
endpoints:
  - {name: client, namespace: a, labels: {app: client, env: prod}, ips: [10.0.1.1]}
  - {name: server, namespace: a, labels: {app: server}, ips: [10.0.1.2], ports: {web: 8080, dns: {port: 53, protocol: UDP}}}
  - {name: other, namespace: b, labels: {app: client}, ips: [10.0.2.1]}
  - {name: lonely, namespace: a, labels: {app: lonely}, ips: [10.0.1.3]}
`,
);
let n = 0;

async function trace(policy: string, args: string): Promise<{ code: number; json: any; stderr: string }> {
  const file = path.join(dir, `p${n++}.yaml`);
  writeFileSync(file, policy);
  const io = captureIo();
  const code = await run(['--policies', file, '--endpoints', endpoints, ...splitArgs(args), '--json'], io);
  return { code, json: io.stdout ? JSON.parse(io.stdout) : null, stderr: io.stderr };
}

const cnp = (spec: string, ns = 'a', name = 'p') => `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n${spec}`;
const ccnp = (spec: string, name = 'c') => `apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: ${name}}\nspec:\n${spec}`;
const np = (spec: string, ns = 'a', name = 'n') => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n${spec}`;
const SERVER = '  endpointSelector: {matchLabels: {app: server}}\n';
const CLIENT = '  endpointSelector: {matchLabels: {app: client}}\n';

async function verdict(policy: string, args: string): Promise<string> {
  const r = await trace(policy, args);
  assert.equal(r.code, 0, r.stderr);
  return r.json.verdict;
}

describe('§2.3/§2.4 default deny and empty rules', () => {
  test('ingress: [{}] denies all ingress', async () => {
    assert.equal(await verdict(cnp(SERVER + '  ingress: [{}]\n'), '--from a/client --to a/server --port 80'), 'denied');
  });
  test('fromEndpoints: [] selects nothing but still puts the subject in default deny', async () => {
    assert.equal(await verdict(cnp(SERVER + '  ingress:\n  - fromEndpoints: []\n'), '--from a/client --to a/server --port 80'), 'denied');
  });
  test('toPorts without an L3 field selects every peer, world and host included', async () => {
    const p = cnp(SERVER + '  ingress:\n  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 81'), 'denied');
  });
  test('an egress-only policy leaves ingress open', async () => {
    const r = await trace(cnp(SERVER + '  egress: [{}]\n'), '--from a/client --to a/server --port 80');
    assert.equal(r.json.ingress.enforced, false);
    assert.equal(r.json.verdict, 'allowed');
  });
  test('one rule with enableDefaultDeny and one without: default deny wins', async () => {
    const p = cnp(SERVER + '  enableDefaultDeny: {ingress: false}\n  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: lonely}}]\n') + '---\n' + cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n', 'a', 'q');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'denied');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from a/lonely --to a/server --port 80'), 'denied');
  });
  test('allow-localhost: the node reaches an ingress-default-deny endpoint, unless denied', async () => {
    assert.equal(await verdict(cnp(SERVER + '  ingress: [{}]\n'), '--from host --to a/server --port 80'), 'allowed');
    const d = cnp(SERVER + '  ingress: [{}]\n  ingressDeny:\n  - fromEntities: [host]\n');
    assert.equal(await verdict(d, '--from host --to a/server --port 80'), 'denied');
  });
});

describe('§2.1/§2.4 peer selection and namespaces', () => {
  test('CNP fromEndpoints [{}] = pods of the policy namespace only', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints: [{}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'denied');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'denied');
  });
  test('CCNP fromEndpoints [{}] = any pod in any namespace, not world', async () => {
    const p = ccnp(SERVER + '  ingress:\n  - fromEndpoints: [{}]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'denied');
  });
  test('an explicit namespace label selects another namespace', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: b}}]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'denied');
  });
  test('namespace labels select pods of any namespace carrying them', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.env: dev}}]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'denied');
  });
  test('kubernetes.io/metadata.name is a namespace label (DESIGN §2)', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name: b}}]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
  });
  test('matchExpressions NotIn on the namespace suppresses injection', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchExpressions: [{key: k8s:io.kubernetes.pod.namespace, operator: NotIn, values: [a]}]}]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'denied');
  });
  test('a reserved: key in fromEndpoints is not namespace-scoped', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {"reserved:world": ""}}]\n');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'allowed');
  });
  test('matchLabels and matchExpressions AND; selectors in a list OR', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints:\n    - {matchLabels: {app: client}, matchExpressions: [{key: env, operator: In, values: [prod]}]}\n    - {matchLabels: {app: lonely}}\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from a/lonely --to a/server --port 80'), 'allowed');
  });
});

describe('§1.6/§2.10 entities and CIDR', () => {
  test('world covers outside addresses and CIDR identities, not pods or the host', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEntities: [world]\n') + '---\n' + cnp(CLIENT + '  egress:\n  - toCIDR: [5.0.0.0/8]\n', 'a', 'q');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from 5.1.1.1 --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'denied');
  });
  test('cluster covers pods of every namespace and the host, not world', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEntities: [cluster]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'denied');
  });
  test('all covers everything', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEntities: [all]\n');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
  });
  test('0.0.0.0/0 is world: pods are not matched', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toCIDR: [0.0.0.0/0]\n');
    assert.equal(await verdict(p, '--from a/client --to 9.9.9.9 --port 443'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 443'), 'denied');
  });
  test('a CIDR never matches a pod address inside it', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toCIDR: [10.0.0.0/8]\n');
    assert.equal(await verdict(p, '--from a/client --to 10.9.9.9 --port 443'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to 10.0.1.2 --port 443'), 'denied');
  });
  test('a more specific CIDR from another policy does not hide containment', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toCIDR: [20.0.0.0/8]\n') + '---\n' + cnp('  endpointSelector: {matchLabels: {app: lonely}}\n  egress:\n  - toCIDR: [20.1.1.0/24]\n', 'a', 'q');
    assert.equal(await verdict(p, '--from a/client --to 20.1.1.5 --port 443'), 'allowed');
    assert.equal(await verdict(p, '--from a/lonely --to 20.2.0.1 --port 443'), 'denied');
  });
  test('except carves out a sub-prefix', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toCIDRSet: [{cidr: 20.0.0.0/8, except: [20.5.0.0/16]}]\n');
    assert.equal(await verdict(p, '--from a/client --to 20.5.1.1 --port 443'), 'denied');
    assert.equal(await verdict(p, '--from a/client --to 20.6.1.1 --port 443'), 'allowed');
  });
});

describe('§2.5 deny precedence by coverage', () => {
  const allowAll = SERVER + '  ingress:\n  - fromEntities: [all]\n';
  test('a deny on a peer at L3 denies every port for it', async () => {
    const p = cnp(allowAll + '  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 443'), 'denied');
    assert.equal(await verdict(p, '--from a/lonely --to a/server --port 443'), 'allowed');
  });
  test('a port deny leaves the other ports of the same peer allowed (docs table)', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}, {port: "81", protocol: TCP}]}]\n  ingressDeny:\n  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'denied');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 81'), 'allowed');
  });
  test('a deny range covers an allow inside it', async () => {
    const p = cnp(allowAll + '  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "1000", endPort: 2000, protocol: TCP}]}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 1500'), 'denied');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 2001'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 1500/UDP'), 'allowed');
  });
  test('a deny in one policy beats an allow in another (CNP vs NetworkPolicy)', async () => {
    const p = np('  podSelector: {matchLabels: {app: server}}\n  ingress: [{}]\n') + '---\n' + cnp(SERVER + '  ingressDeny:\n  - fromEntities: [world]\n');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'denied');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'allowed');
  });
});

describe('§2.6/§2.7 merging and L7 wildcarding', () => {
  const http = (sel: string) => `  - fromEndpoints: [${sel}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: /ok}]}}]\n`;
  test('an L4-only rule for all peers makes L7 rules of a narrower rule non-restrictive', async () => {
    const p = cnp(SERVER + '  ingress:\n' + http('{matchLabels: {app: client}}') + '  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n');
    const r = await trace(p, "--from a/client --to a/server --port 80 --http 'GET /nope'");
    assert.equal(r.json.verdict, 'allowed');
    assert.equal(r.json.ingress.redirected, true);
  });
  test('same selector, one rule with HTTP and one without: wildcard L7 (allowed, still redirected)', async () => {
    const p = cnp(SERVER + '  ingress:\n' + http('{matchLabels: {app: client}}') + '  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n');
    const r = await trace(p, "--from a/client --to a/server --port 80 --http 'DELETE /x'");
    assert.equal(r.json.verdict, 'allowed');
    assert.equal(r.json.ingress.redirected, true);
  });
  test('HTTP rules only: a non-matching request is denied at L7', async () => {
    const p = cnp(SERVER + '  ingress:\n' + http('{matchLabels: {app: client}}'));
    assert.equal((await trace(p, "--from a/client --to a/server --port 80 --http 'GET /nope'")).json.ingress.l7, 'denied');
    assert.equal((await trace(p, "--from a/client --to a/server --port 80 --http 'GET /ok'")).json.ingress.l7, 'allowed');
  });
  test('HTTP and Kafka on the same selector and port cannot be merged: exit 2', async () => {
    const p = cnp(SERVER + '  ingress:\n' + http('{matchLabels: {app: client}}') + '  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {kafka: [{role: produce}]}}]\n');
    const r = await trace(p, '--from a/client --to a/server --port 80');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /conflicting L7 parsers/);
  });
  test('enableDefaultDeny: false makes L7 rules visibility only', async () => {
    const p = cnp(SERVER + '  enableDefaultDeny: {ingress: false}\n  ingress:\n' + http('{matchLabels: {app: client}}'));
    assert.equal(await verdict(p, "--from a/client --to a/server --port 80 --http 'GET /nope'"), 'allowed');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 22'), 'allowed');
  });
  test('host header rule does not match a request without Host (DESIGN §3.2)', async () => {
    const p = cnp(SERVER + '  ingress:\n  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{host: "api\\\\.example\\\\.com"}]}}]\n');
    assert.equal(await verdict(p, "--from a/client --to a/server --port 80 --http 'GET /'"), 'denied');
    assert.equal(await verdict(p, "--from a/client --to a/server --port 80 --http 'GET /' --http-host api.example.com"), 'allowed');
  });
  test('header presence and exact value', async () => {
    const p = cnp(SERVER + '  ingress:\n  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headers: ["X-Token", "X-Mode: strict"]}]}}]\n');
    assert.equal(await verdict(p, "--from a/client --to a/server --port 80 --http 'GET /' --http-header 'x-token: 1' --http-header 'X-Mode: strict'"), 'allowed');
    assert.equal(await verdict(p, "--from a/client --to a/server --port 80 --http 'GET /' --http-header 'X-Mode: strict'"), 'denied');
    assert.equal(await verdict(p, "--from a/client --to a/server --port 80 --http 'GET /' --http-header 'X-Token: 1' --http-header 'X-Mode: lax'"), 'denied');
  });
});

describe('§2.8 ports and protocols', () => {
  test('port 0 means every port of the protocol, not other protocols', async () => {
    const p = cnp(SERVER + '  ingress:\n  - toPorts: [{ports: [{port: "0", protocol: UDP}]}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 9999/UDP'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 9999/TCP'), 'denied');
  });
  test('protocol omitted = ANY = TCP, UDP and SCTP, never ICMP', async () => {
    const p = cnp(SERVER + '  ingress:\n  - toPorts: [{ports: [{port: "7"}]}]\n');
    for (const proto of ['TCP', 'UDP', 'SCTP']) assert.equal(await verdict(p, `--from a/client --to a/server --port 7/${proto}`), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 7/ICMP'), 'denied');
  });
  test('egress named port resolves against the destination identity', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toEndpoints: [{}]\n    toPorts: [{ports: [{port: web}]}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 8080'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/lonely --port 8080'), 'denied', 'lonely has no port named web');
  });
  test('egress named port with no L3 peer: every port of that name on the node (Cilium GetNamedPortsMulti)', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toPorts: [{ports: [{port: web}]}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/lonely --port 8080'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/lonely --port 8081'), 'denied');
  });
  test('ICMPv6 rules do not allow ICMP (v4)', async () => {
    const p = cnp(SERVER + '  ingress:\n  - icmps: [{fields: [{type: 128, family: IPv6}]}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 128/ICMPv6'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 8/ICMP'), 'denied');
  });
});

describe('§2.14 NetworkPolicy', () => {
  test('policyTypes [Egress] leaves ingress open; Egress without rules denies all egress', async () => {
    const p = np('  podSelector: {matchLabels: {app: server}}\n  policyTypes: [Egress]\n');
    const r = await trace(p, '--from a/client --to a/server --port 80');
    assert.equal(r.json.ingress.enforced, false);
    assert.equal(await verdict(p, '--from a/server --to a/client --port 80'), 'denied');
  });
  test('an empty ingress rule allows everything, world included', async () => {
    const p = np('  podSelector: {}\n  ingress: [{}]\n');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'allowed');
  });
  test('namespaceSelector {} = every pod of every namespace, not world', async () => {
    const p = np('  podSelector: {matchLabels: {app: server}}\n  ingress: [{from: [{namespaceSelector: {}}]}]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from 1.2.3.4 --to a/server --port 80'), 'denied');
  });
  test('a port without protocol is TCP', async () => {
    const p = np('  podSelector: {matchLabels: {app: server}}\n  ingress: [{ports: [{port: 53}]}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 53/TCP'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 53/UDP'), 'denied');
  });
  test('namespaceSelector AND podSelector in one peer', async () => {
    const p = np('  podSelector: {matchLabels: {app: server}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {env: dev}}, podSelector: {matchLabels: {app: client}}}]}]\n');
    assert.equal(await verdict(p, '--from b/other --to a/server --port 80'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'denied');
  });
});

describe('§2.12 fromRequires (1.18)', () => {
  test('requirements narrow every fromEndpoints of rules selecting the subject', async () => {
    const p = cnp(SERVER + '  ingress:\n  - fromRequires: [{matchLabels: {env: prod}}]\n') + '---\n' + cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n', 'a', 'q');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80'), 'allowed');
    const q = cnp(SERVER + '  ingress:\n  - fromRequires: [{matchLabels: {env: staging}}]\n') + '---\n' + cnp(SERVER + '  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n', 'a', 'q');
    assert.equal(await verdict(q, '--from a/client --to a/server --port 80'), 'denied');
  });
});

describe('§5 DNS and FQDN', () => {
  const dns = (pattern: string) => `  - toEndpoints: [{matchLabels: {app: server}}]\n    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "${pattern}"}]}}]\n`;
  test('matchPattern "*" allows every name', async () => {
    assert.equal(await verdict(cnp(CLIENT + '  egress:\n' + dns('*')), '--from a/client --to a/server --port 53/UDP --dns anything.at.all'), 'allowed');
  });
  test('toFQDNs matchPattern selects learned IPs of matching names only', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toFQDNs: [{matchPattern: "*.example.com"}]\n');
    assert.equal(await verdict(p, '--from a/client --to 93.1.1.1 --port 443 --fqdn www.example.com'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to 93.1.1.1 --port 443 --fqdn example.com'), 'denied');
    assert.equal(await verdict(p, '--from a/client --to 93.1.1.1 --port 443 --fqdn a.b.example.com'), 'denied');
  });
  test('**. matches one or more labels (DESIGN §2)', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toFQDNs: [{matchPattern: "**.example.com"}]\n');
    assert.equal(await verdict(p, '--from a/client --to 93.1.1.1 --port 443 --fqdn a.b.example.com'), 'allowed');
  });
  test('a CIDR rule still matches an IP learned for a name', async () => {
    const p = cnp(CLIENT + '  egress:\n  - toCIDR: [93.0.0.0/8]\n  - toFQDNs: [{matchName: x.org}]\n');
    assert.equal(await verdict(p, '--from a/client --to 93.1.1.1 --port 443 --fqdn x.org'), 'allowed');
    assert.equal(await verdict(p, '--from a/client --to 93.1.1.1 --port 443 --fqdn y.org'), 'allowed');
  });
});

describe('§4 Kafka', () => {
  const k = (rule: string) => cnp(SERVER + `  ingress:\n  - toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {kafka: [${rule}]}}]\n`);
  test('apiVersion rule without --kafka-api-version does not match', async () => {
    assert.equal(await verdict(k('{apiKey: produce, apiVersion: "3"}'), "--from a/client --to a/server --port 9092 --kafka 'produce t'"), 'denied');
    assert.equal(await verdict(k('{apiKey: produce, apiVersion: "3"}'), "--from a/client --to a/server --port 9092 --kafka 'produce t' --kafka-api-version 3"), 'allowed');
  });
  test('clientID must be equal', async () => {
    assert.equal(await verdict(k('{clientID: app1}'), "--from a/client --to a/server --port 9092 --kafka 'fetch t' --kafka-client-id app1"), 'allowed');
    assert.equal(await verdict(k('{clientID: app1}'), "--from a/client --to a/server --port 9092 --kafka 'fetch t' --kafka-client-id app2"), 'denied');
  });
  test('numeric API keys are accepted', async () => {
    assert.equal(await verdict(k('{role: produce}'), "--from a/client --to a/server --port 9092 --kafka '0 t'"), 'allowed');
  });
});

describe('audit mode', () => {
  test('--audit turns a denial into audit on both layers', async () => {
    const p = cnp(SERVER + '  ingress: [{}]\n');
    assert.equal(await verdict(p, '--from a/client --to a/server --port 80 --audit'), 'audit');
  });
  test('a per-endpoint audit flag in the endpoints file counts', async () => {
    const f = path.join(dir, 'audit-endpoints.yaml');
    writeFileSync(f, 'endpoints:\n  - {name: s, namespace: a, labels: {app: server}, ips: [10.9.0.2], audit: true}\n  - {name: c, namespace: a, labels: {app: client}, ips: [10.9.0.1]}\n');
    const pf = path.join(dir, 'audit-policy.yaml');
    writeFileSync(pf, cnp(SERVER + '  ingress: [{}]\n'));
    const io = captureIo();
    assert.equal(await run(['--policies', pf, '--endpoints', f, '--from', 'a/c', '--to', 'a/s', '--port', '80', '--json'], io), 0);
    assert.equal(JSON.parse(io.stdout).verdict, 'audit');
  });
});
