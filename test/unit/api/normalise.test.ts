// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/api/normalise
 *
 * Normalisation of CNP/CCNP into the api/types.ts model (reference §2.1, §2.4, §2.10, §1.6,
 * §1.8, §1.11, §1.2, §2.12).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { LabelRequirement, PeerSelector } from '../../../src/api/types.ts';
import { ccnp, cnp, oneRule, parse, warnings } from './helpers.ts';

const NS = (ns: string): LabelRequirement => ({ key: 'k8s:io.kubernetes.pod.namespace', operator: 'In', values: [ns] });
const NS_EXISTS: LabelRequirement = { key: 'k8s:io.kubernetes.pod.namespace', operator: 'Exists', values: [] };
const CLUSTER: LabelRequirement = { key: 'k8s:io.cilium.k8s.policy.cluster', operator: 'In', values: ['default'] };
const exists = (key: string): LabelRequirement => ({ key, operator: 'Exists', values: [] });
const inn = (key: string, ...values: string[]): LabelRequirement => ({ key, operator: 'In', values });

function reqs(p: PeerSelector): LabelRequirement[] {
  assert.equal(p.type, 'labels');
  return p.type === 'labels' ? p.selector.requirements : [];
}

function ingressPeers(spec: string, opts?: Parameters<typeof cnp>[1]): PeerSelector[] | null {
  return oneRule(cnp(spec, opts)).ingress[0].peers;
}

describe('label keys (§1.5, §2.11)', () => {
  it('keys without a source get any:, matchLabels become In with one value, sorted by key', () => {
    const r = oneRule(cnp('endpointSelector:\n  matchLabels: {zeta: z, app: web}\ningress: [{}]'));
    assert.deepEqual(r.subject.requirements, [inn('any:app', 'web'), inn('any:zeta', 'z'), NS('prod')]);
  });

  it('k8s:, reserved:, any:, container:, unspec:, fqdn: sources are kept; $host is reserved:host', () => {
    const r = oneRule(
      cnp(
        'endpointSelector:\n  matchLabels: {"k8s:a": "1", "reserved:b": "", "container:c": "3", "unspec:d": "4", "fqdn:e": "", "any:f": "6", "$host": ""}\ningress: [{}]',
      ),
    );
    assert.deepEqual(
      r.subject.requirements.map((q) => q.key),
      ['any:f', 'container:c', 'fqdn:e', 'k8s:a', 'k8s:io.kubernetes.pod.namespace', 'reserved:b', 'reserved:host', 'unspec:d'],
    );
  });

  it('matchExpressions keep operators and sorted, deduplicated values', () => {
    const r = oneRule(
      cnp(
        'endpointSelector:\n  matchExpressions:\n  - {key: tier, operator: NotIn, values: [b, a, b]}\n  - {key: x, operator: DoesNotExist}\ningress: [{}]',
      ),
    );
    assert.deepEqual(r.subject.requirements, [
      { key: 'any:tier', operator: 'NotIn', values: ['a', 'b'] },
      { key: 'any:x', operator: 'DoesNotExist', values: [] },
      NS('prod'),
    ]);
  });
});

describe('CNP subject (§2.1 step 1)', () => {
  it('adds the policy namespace', () => {
    const r = oneRule(cnp('endpointSelector: {}\ningress: [{}]'));
    assert.deepEqual(r.subject.requirements, [NS('prod')]);
    assert.equal(r.namespace, 'prod');
    assert.equal(r.origin.ref, 'CiliumNetworkPolicy/prod/p');
  });

  it('a CNP without metadata.namespace is in namespace default (DESIGN §2)', () => {
    const r = oneRule(cnp('endpointSelector: {}\ningress: [{}]', { ns: null }));
    assert.deepEqual(r.subject.requirements, [NS('default')]);
    assert.equal(r.origin.ref, 'CiliumNetworkPolicy/default/p');
  });

  it('a conflicting namespace requirement is dropped with a warning', () => {
    const l = parse(cnp('endpointSelector:\n  matchLabels: {"k8s:io.kubernetes.pod.namespace": other, app: x}\ningress: [{}]'));
    assert.deepEqual(l.rules[0].subject.requirements, [inn('any:app', 'x'), NS('prod')]);
    const w = warnings(l);
    assert.equal(w.length, 1);
    assert.match(w[0].message, /ignored/);
    assert.equal(w[0].field, 'spec.endpointSelector');
  });

  it('the same namespace requirement is kept silently', () => {
    const l = parse(cnp('endpointSelector:\n  matchLabels: {"io.kubernetes.pod.namespace": prod}\ningress: [{}]'));
    assert.deepEqual(l.rules[0].subject.requirements, [NS('prod')]);
    assert.equal(warnings(l).length, 0);
  });

  it('CCNP subject is unchanged and has no namespace', () => {
    const r = oneRule(ccnp('endpointSelector: {matchLabels: {app: x}}\ningress: [{}]'));
    assert.deepEqual(r.subject.requirements, [inn('any:app', 'x')]);
    assert.equal(r.namespace, undefined);
    assert.equal(r.origin.ref, 'CiliumClusterwideNetworkPolicy/p');
  });
});

describe('fromEndpoints/toEndpoints scoping (§2.1 step 2, §2.4)', () => {
  it('CNP: namespace and cluster are added', () => {
    const peers = ingressPeers('endpointSelector: {}\ningress:\n- fromEndpoints: [{matchLabels: {role: fe}}]');
    assert.equal(peers?.length, 1);
    assert.deepEqual(peers?.[0], {
      type: 'labels',
      field: 'endpoints',
      selector: { requirements: [inn('any:role', 'fe'), CLUSTER, NS('prod')] },
    });
  });

  it('CNP: [{}] = all pods of the policy namespace, not world (§2.4)', () => {
    const peers = ingressPeers('endpointSelector: {}\ningress:\n- fromEndpoints: [{}]');
    assert.deepEqual(reqs(peers![0]), [CLUSTER, NS('prod')]);
  });

  it('a reserved: key leaves the selector untouched', () => {
    const peers = ingressPeers('endpointSelector: {}\ningress:\n- fromEndpoints: [{matchLabels: {"reserved:host": ""}}]');
    assert.deepEqual(reqs(peers![0]), [inn('reserved:host', '')]);
  });

  it('a reserved: key in matchExpressions also leaves it untouched', () => {
    const peers = ingressPeers(
      'endpointSelector: {}\ningress:\n- fromEndpoints: [{matchExpressions: [{key: "reserved:world", operator: Exists}]}]',
    );
    assert.deepEqual(reqs(peers![0]), [exists('reserved:world')]);
  });

  it('an explicit namespace key (k8s: or any:, matchLabels or matchExpressions) suppresses namespace injection, cluster still added', () => {
    for (const sel of [
      '{matchLabels: {"k8s:io.kubernetes.pod.namespace": ns2}}',
      '{matchLabels: {"io.kubernetes.pod.namespace": ns2}}',
      '{matchExpressions: [{key: "k8s:io.kubernetes.pod.namespace", operator: In, values: [a, b]}]}',
    ]) {
      const peers = ingressPeers(`endpointSelector: {}\ningress:\n- fromEndpoints: [${sel}]`);
      const keys = reqs(peers![0]).map((r) => `${r.key} ${r.operator} ${r.values.join(',')}`);
      assert.ok(keys.includes('k8s:io.cilium.k8s.policy.cluster In default'), sel);
      assert.ok(!keys.includes('k8s:io.kubernetes.pod.namespace In prod'), sel);
    }
  });

  it('CNP: a namespace-label key (any source) suppresses namespace injection (§2.11)', () => {
    for (const key of ['io.cilium.k8s.namespace.labels.team', 'k8s:io.cilium.k8s.namespace.labels.team']) {
      const peers = ingressPeers(`endpointSelector: {}\ningress:\n- fromEndpoints: [{matchLabels: {"${key}": a}}]`);
      assert.deepEqual(
        reqs(peers![0]).map((r) => r.key),
        [key.includes(':') ? key : `any:${key}`, 'k8s:io.cilium.k8s.policy.cluster'].sort(),
      );
    }
  });

  it('a cluster key (any source) suppresses cluster injection', () => {
    const peers = ingressPeers(
      'endpointSelector: {}\ningress:\n- fromEndpoints: [{matchExpressions: [{key: io.cilium.k8s.policy.cluster, operator: Exists}]}]',
    );
    assert.deepEqual(reqs(peers![0]), [exists('any:io.cilium.k8s.policy.cluster'), NS('prod')]);
  });

  it('CCNP: namespace Exists instead of a namespace value', () => {
    const r = oneRule(ccnp('endpointSelector: {}\ningress:\n- fromEndpoints: [{matchLabels: {name: luke}}]'));
    assert.deepEqual(reqs(r.ingress[0].peers![0]), [inn('any:name', 'luke'), CLUSTER, NS_EXISTS]);
  });

  it('CCNP whose subject selects reserved:init: no namespace Exists (§2.1 step 2)', () => {
    const r = oneRule(ccnp('endpointSelector: {matchLabels: {"reserved:init": ""}}\ningress:\n- fromEndpoints: [{}]'));
    assert.deepEqual(reqs(r.ingress[0].peers![0]), [CLUSTER]);
  });

  it('toEndpoints is scoped the same way', () => {
    const r = oneRule(cnp('endpointSelector: {}\negress:\n- toEndpoints: [{matchLabels: {app: db}}]'));
    assert.deepEqual(reqs(r.egress[0].peers![0]), [inn('any:app', 'db'), CLUSTER, NS('prod')]);
  });

  it('fromEndpoints: [] is peers [] (selects nothing); no L3 field is peers null (§2.4)', () => {
    assert.deepEqual(ingressPeers('endpointSelector: {}\ningress:\n- fromEndpoints: []'), []);
    const r = oneRule(cnp('endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}]}]'));
    assert.equal(r.ingress[0].peers, null);
  });
});

describe('entities (§1.6)', () => {
  const entityPeers = (e: string) => oneRule(cnp(`endpointSelector: {}\negress:\n- toEntities: [${e}]`)).egress[0].peers!;

  it('all is the wildcard selector', () => {
    assert.deepEqual(entityPeers('all'), [{ type: 'labels', field: 'entities', selector: { requirements: [] } }]);
  });

  it('world is world, world-ipv4 and world-ipv6, one selector each, no namespace or cluster', () => {
    assert.deepEqual(entityPeers('world').map(reqs), [
      [exists('reserved:world')],
      [exists('reserved:world-ipv4')],
      [exists('reserved:world-ipv6')],
    ]);
  });

  it('single reserved entities', () => {
    for (const [e, label] of [
      ['host', 'host'],
      ['remote-node', 'remote-node'],
      ['kube-apiserver', 'kube-apiserver'],
      ['ingress', 'ingress'],
      ['init', 'init'],
      ['health', 'health'],
      ['unmanaged', 'unmanaged'],
      ['none', 'none'],
      ['world-ipv4', 'world-ipv4'],
      ['world-ipv6', 'world-ipv6'],
    ]) {
      assert.deepEqual(entityPeers(e).map(reqs), [[exists(`reserved:${label}`)]], e);
    }
  });

  it('cluster: the reserved in-cluster identities plus the local cluster label', () => {
    assert.deepEqual(entityPeers('cluster').map(reqs), [
      [exists('reserved:host')],
      [exists('reserved:remote-node')],
      [exists('reserved:init')],
      [exists('reserved:ingress')],
      [exists('reserved:health')],
      [exists('reserved:unmanaged')],
      [exists('reserved:kube-apiserver')],
      [CLUSTER],
    ]);
  });

  it('cluster-mesh: the same reserved set plus cluster Exists', () => {
    const p = entityPeers('cluster-mesh').map(reqs);
    assert.equal(p.length, 8);
    assert.deepEqual(p[7], [exists('k8s:io.cilium.k8s.policy.cluster')]);
  });

  it('duplicates are removed ([host, cluster])', () => {
    assert.equal(entityPeers('host, cluster').length, 8);
  });
});

describe('CIDR peers (§2.10, §1.12)', () => {
  const cidrPeers = (s: string) => oneRule(cnp(`endpointSelector: {}\negress:\n- ${s}`)).egress[0].peers!;

  it('toCIDR: cidr:<prefix> Exists; a bare IP is a host prefix', () => {
    assert.deepEqual(cidrPeers('toCIDR: [192.0.2.0/24, 198.51.100.7]').map(reqs), [
      [exists('cidr:192.0.2.0/24')],
      [exists('cidr:198.51.100.7/32')],
    ]);
  });

  it('toCIDRSet with except: DoesNotExist per except', () => {
    assert.deepEqual(cidrPeers('toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12, 10.1.0.0/16]}]').map(reqs), [
      [exists('cidr:10.0.0.0/8'), { key: 'cidr:10.1.0.0/16', operator: 'DoesNotExist', values: [] }, { key: 'cidr:10.96.0.0/12', operator: 'DoesNotExist', values: [] }],
    ]);
  });

  it('0.0.0.0/0 and ::/0 are reserved:world; excepts kept', () => {
    assert.deepEqual(cidrPeers('toCIDRSet: [{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}]').map(reqs), [
      [{ key: 'cidr:10.0.0.0/8', operator: 'DoesNotExist', values: [] }, exists('reserved:world')],
    ]);
    assert.deepEqual(cidrPeers('toCIDR: ["::/0"]').map(reqs), [[exists('reserved:world')]]);
  });

  it('IPv6 prefixes are canonical (compressed, lower case)', () => {
    assert.deepEqual(cidrPeers('toCIDR: ["2001:DB8:0:0::/32", "fe80:0:0:0:0:0:0:1"]').map(reqs), [
      [exists('cidr:2001:db8::/32')],
      [exists('cidr:fe80::1/128')],
    ]);
  });

  it('host bits are cleared with a warning (decision in api/cidr.ts)', () => {
    const l = parse(cnp('endpointSelector: {}\negress:\n- toCIDR: [10.1.2.3/8]'));
    assert.deepEqual(reqs(l.rules[0].egress[0].peers![0]), [exists('cidr:10.0.0.0/8')]);
    assert.match(warnings(l)[0].message, /host bits set; using 10\.0\.0\.0\/8/);
  });

  it('CIDR peers have field cidr and no namespace/cluster injection', () => {
    const p = cidrPeers('fromCIDR: [10.0.0.0/8]'.replace('fromCIDR', 'toCIDR'));
    assert.equal(p[0].type === 'labels' && p[0].field, 'cidr');
  });
});

describe('toFQDNs (§1.7)', () => {
  it('as written, type fqdn', () => {
    const r = oneRule(cnp('endpointSelector: {}\negress:\n- toFQDNs: [{matchName: Example.COM}, {matchPattern: "*.example.com"}]'));
    assert.deepEqual(r.egress[0].peers, [
      { type: 'fqdn', matchName: 'Example.COM' },
      { type: 'fqdn', matchPattern: '*.example.com' },
    ]);
  });
});

describe('ports (§1.8, §2.8)', () => {
  const ports = (p: string) => oneRule(cnp(`endpointSelector: {}\negress:\n- toPorts: [{ports: [${p}]}]`)).egress[0].toPorts[0].ports;

  it('protocol is upper-cased; empty means ANY', () => {
    assert.deepEqual(ports('{port: "80", protocol: tcp}, {port: "53"}'), [
      { port: 80, protocol: 'TCP' },
      { port: 53, protocol: 'ANY' },
    ]);
  });

  it('named ports are lowercased with port 0', () => {
    assert.deepEqual(ports('{port: HTTP-Alt, protocol: TCP}'), [{ port: 0, name: 'http-alt', protocol: 'TCP' }]);
  });

  it('endPort is kept; missing port is 0 (all ports)', () => {
    assert.deepEqual(ports('{port: "80", endPort: 444, protocol: TCP}, {protocol: UDP}'), [
      { port: 80, endPort: 444, protocol: 'TCP' },
      { port: 0, protocol: 'UDP' },
    ]);
  });

  it('L7 rules are carried (HTTP headers parsed, headerMatches name/value)', () => {
    const r = oneRule(
      cnp(`endpointSelector: {}
ingress:
- toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - method: GET
        path: /a
        headers: ['X-My-Header: true', 'X-Present']
        headerMatches: [{name: X-Token, value: abc}, {name: X-Any}]`),
    );
    assert.deepEqual(r.ingress[0].toPorts[0].rules, {
      http: [
        {
          method: 'GET',
          path: '/a',
          headers: [{ name: 'X-My-Header', value: 'true' }, { name: 'X-Present' }, { name: 'X-Token', value: 'abc' }, { name: 'X-Any' }],
        },
      ],
    });
  });

  it('DNS and Kafka rules are carried as written', () => {
    const r = oneRule(
      cnp(`endpointSelector: {}
egress:
- toPorts:
  - ports: [{port: "53", protocol: ANY}]
    rules: {dns: [{matchPattern: "*"}]}
- toPorts:
  - ports: [{port: "9092", protocol: TCP}]
    rules: {kafka: [{role: produce, topic: t1}, {apiKey: Metadata}]}`),
    );
    assert.deepEqual(r.egress[0].toPorts[0].rules, { dns: [{ matchPattern: '*' }] });
    assert.deepEqual(r.egress[1].toPorts[0].rules, { kafka: [{ role: 'produce', topic: 't1' }, { apiKey: 'Metadata' }] });
  });
});

describe('ICMP (§1.11)', () => {
  it('numbers and per-family names become ICMP/ICMPV6 ports', () => {
    const r = oneRule(
      cnp(`endpointSelector: {}
egress:
- icmps:
  - fields:
    - {type: 8, family: IPv4}
    - {type: EchoRequest, family: IPv6}
    - {type: Echo}
    - {type: TimeExceeded, family: IPv6}
    - {type: "0"}`),
    );
    assert.deepEqual(r.egress[0].toPorts, [
      {
        ports: [
          { port: 8, protocol: 'ICMP' },
          { port: 128, protocol: 'ICMPV6' },
          { port: 8, protocol: 'ICMP' },
          { port: 3, protocol: 'ICMPV6' },
          { port: 0, protocol: 'ICMP' },
        ],
      },
    ]);
  });
});

describe('rule-level fields (§1.2)', () => {
  it('enableDefaultDeny unset ⇒ true; set values are kept', () => {
    assert.deepEqual(oneRule(cnp('endpointSelector: {}\ningress: [{}]')).defaultDeny, { ingress: true, egress: true });
    assert.deepEqual(oneRule(cnp('endpointSelector: {}\ningress: [{}]\nenableDefaultDeny: {egress: false}')).defaultDeny, {
      ingress: true,
      egress: false,
    });
  });

  it('hasIngress/hasEgress count allow and deny elements; ingress: [{}] counts (§2.3)', () => {
    const a = oneRule(cnp('endpointSelector: {}\ningress: [{}]'));
    assert.deepEqual([a.hasIngress, a.hasEgress], [true, false]);
    const b = oneRule(cnp('endpointSelector: {}\negressDeny: [{toEntities: [world]}]'));
    assert.deepEqual([b.hasIngress, b.hasEgress, b.egress[0].deny], [false, true, true]);
  });

  it('ingress and ingressDeny elements are both in Rule.ingress with paths and lines', () => {
    const r = oneRule(cnp('endpointSelector: {}\ningress:\n- fromEntities: [all]\ningressDeny:\n- fromEntities: [world]'));
    assert.deepEqual(
      r.ingress.map((d) => [d.path, d.deny, d.location.line]),
      [
        ['spec.ingress[0]', false, 9],
        ['spec.ingressDeny[0]', true, 11],
      ],
    );
  });

  it('log.value goes to origin.log; description is kept; specs[i] paths', () => {
    const l = parse(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
specs:
- endpointSelector: {}
  ingress: [{}]
  log: {value: "audit-me"}
  description: first
- endpointSelector: {}
  egress: [{}]
`);
    assert.equal(l.rules.length, 2);
    assert.equal(l.rules[0].origin.log, 'audit-me');
    assert.equal(l.rules[0].description, 'first');
    assert.equal(l.rules[1].path, 'specs[1]');
    assert.equal(l.rules[1].egress[0].path, 'specs[1].egress[0]');
    assert.equal(l.rules[1].origin.log, undefined);
  });

  it('spec and specs together are both used', () => {
    const l = parse(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec: {endpointSelector: {}, ingress: [{}]}
specs:
- {endpointSelector: {}, egress: [{}]}
`);
    assert.deepEqual(
      l.rules.map((r) => r.path),
      ['spec', 'specs[0]'],
    );
  });
});

describe('fromRequires/toRequires (DESIGN §2, §2.12)', () => {
  it('accepted with a deprecation warning, converted into requires with sources', () => {
    const l = parse(
      cnp('endpointSelector: {}\ningress:\n- fromRequires: [{matchLabels: {env: prod, "k8s:tier": x}}]\n- fromEndpoints: [{}]'),
    );
    assert.equal(l.rules.length, 1);
    assert.deepEqual(l.rules[0].ingress[0].requires, [inn('any:env', 'prod'), inn('k8s:tier', 'x')]);
    assert.equal(l.rules[0].ingress[0].peers, null);
    assert.deepEqual(l.rules[0].ingress[1].requires, []);
    const w = warnings(l);
    assert.equal(w.length, 1);
    assert.equal(w[0].field, 'spec.ingress[0].fromRequires');
    assert.match(w[0].message, /deprecated/);
  });

  it('toRequires likewise', () => {
    const l = parse(cnp('endpointSelector: {}\negress:\n- toRequires: [{matchExpressions: [{key: env, operator: Exists}]}]'));
    assert.deepEqual(l.rules[0].egress[0].requires, [exists('any:env')]);
  });
});
