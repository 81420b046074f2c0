// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/api/network-policy
 *
 * Kubernetes NetworkPolicy translation (reference §2.14).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { LabelRequirement, PeerSelector } from '../../../src/api/types.ts';
import { errors, indent, oneRule, parse, warnings } from './helpers.ts';

function np(spec: string, ns: string | null = 'prod'): string {
  return [
    'apiVersion: networking.k8s.io/v1',
    'kind: NetworkPolicy',
    'metadata:',
    '  name: np',
    ...(ns === null ? [] : [`  namespace: ${ns}`]),
    'spec:',
    indent(spec.trim(), 2),
    '',
  ].join('\n');
}

const NS = (ns: string): LabelRequirement => ({ key: 'k8s:io.kubernetes.pod.namespace', operator: 'In', values: [ns] });
const CLUSTER: LabelRequirement = { key: 'k8s:io.cilium.k8s.policy.cluster', operator: 'In', values: ['default'] };
const WILDCARD: PeerSelector = { type: 'labels', field: 'networkpolicy', selector: { requirements: [] } };
const reqs = (p: PeerSelector) => (p.type === 'labels' ? p.selector.requirements : []);

describe('NetworkPolicy subject and policyTypes (§2.14)', () => {
  it('subject = podSelector with k8s: keys + namespace; default deny both ways; ref', () => {
    const r = oneRule(np('podSelector: {matchLabels: {app: web}}\ningress: [{}]'));
    assert.deepEqual(r.subject.requirements, [{ key: 'k8s:app', operator: 'In', values: ['web'] }, NS('prod')]);
    assert.deepEqual(r.defaultDeny, { ingress: true, egress: true });
    assert.equal(r.origin.ref, 'NetworkPolicy/prod/np');
    assert.equal(r.namespace, 'prod');
  });

  it('without namespace: default', () => {
    assert.deepEqual(oneRule(np('podSelector: {}', null)).subject.requirements, [NS('default')]);
  });

  it('no policyTypes and no rules: ingress enforced, deny all', () => {
    const r = oneRule(np('podSelector: {}'));
    assert.deepEqual([r.hasIngress, r.hasEgress, r.ingress.length, r.egress.length], [true, false, 0, 0]);
  });

  it('no policyTypes with egress rules: both enforced (API server defaulting)', () => {
    const r = oneRule(np('podSelector: {}\negress: [{}]'));
    assert.deepEqual([r.hasIngress, r.hasEgress, r.ingress.length, r.egress.length], [true, true, 0, 1]);
  });

  it('policyTypes [Egress] only: ingress not enforced, listed type without rules = deny all', () => {
    const r = oneRule(np('podSelector: {}\npolicyTypes: [Egress]'));
    assert.deepEqual([r.hasIngress, r.hasEgress, r.egress.length], [false, true, 0]);
  });

  it('policyTypes [Ingress, Egress]', () => {
    const r = oneRule(np('podSelector: {}\npolicyTypes: [Ingress, Egress]\ningress: [{}]'));
    assert.deepEqual([r.hasIngress, r.hasEgress, r.ingress.length, r.egress.length], [true, true, 1, 0]);
  });

  it('rules of a direction not in policyTypes are ignored with a warning', () => {
    const l = parse(np('podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]'));
    assert.equal(l.rules[0].ingress.length, 0);
    assert.equal(l.rules[0].hasIngress, false);
    assert.match(warnings(l)[0].message, /ignored/);
  });

  it('invalid policy type', () => {
    assert.ok(errors(parse(np('podSelector: {}\npolicyTypes: [ingress]'))).some((e) => e.field === 'spec.policyTypes[0]'));
  });
});

describe('NetworkPolicy peers (§2.14)', () => {
  const peers = (from: string) => oneRule(np(`podSelector: {}\ningress:\n- from: ${from}`)).ingress.map((d) => d.peers);

  it('a rule without from allows all peers: a wildcard networkpolicy selector, not null', () => {
    const r = oneRule(np('podSelector: {}\ningress:\n- ports: [{port: 80}]'));
    assert.deepEqual(r.ingress[0].peers, [WILDCARD]);
    assert.deepEqual(r.ingress[0].toPorts, [{ ports: [{ port: 80, protocol: 'TCP' }] }]);
    assert.deepEqual(oneRule(np('podSelector: {}\ningress: [{from: []}]')).ingress[0].peers, [WILDCARD]);
  });

  it('podSelector alone: same namespace + cluster', () => {
    assert.deepEqual(peers('[{podSelector: {matchLabels: {role: fe}}}]'), [
      [{ type: 'labels', field: 'endpoints', selector: { requirements: [CLUSTER, NS('prod'), { key: 'k8s:role', operator: 'In', values: ['fe'] }] } }],
    ]);
  });

  it('namespaceSelector: namespace labels (matchLabels and matchExpressions); {} = any namespace', () => {
    const [p] = peers('[{namespaceSelector: {matchLabels: {team: a}, matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}}]');
    assert.deepEqual(reqs(p![0]), [
      { key: 'k8s:io.cilium.k8s.namespace.labels.env', operator: 'NotIn', values: ['dev'] },
      { key: 'k8s:io.cilium.k8s.namespace.labels.team', operator: 'In', values: ['a'] },
      CLUSTER,
    ]);
    const [q] = peers('[{namespaceSelector: {}}]');
    assert.deepEqual(reqs(q![0]), [CLUSTER, { key: 'k8s:io.kubernetes.pod.namespace', operator: 'Exists', values: [] }]);
  });

  it('podSelector AND namespaceSelector', () => {
    const [p] = peers('[{podSelector: {matchLabels: {app: x}}, namespaceSelector: {matchLabels: {team: a}}}]');
    assert.deepEqual(
      reqs(p![0]).map((r) => r.key),
      ['k8s:app', 'k8s:io.cilium.k8s.namespace.labels.team', 'k8s:io.cilium.k8s.policy.cluster'],
    );
  });

  it('ipBlock: CIDR peer with excepts', () => {
    const [p] = peers('[{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]');
    assert.deepEqual(p, [
      {
        type: 'labels',
        field: 'cidr',
        selector: {
          requirements: [
            { key: 'cidr:10.0.0.0/8', operator: 'Exists', values: [] },
            { key: 'cidr:10.1.0.0/16', operator: 'DoesNotExist', values: [] },
          ],
        },
      },
    ]);
    const [w] = peers('[{ipBlock: {cidr: 0.0.0.0/0}}]');
    assert.deepEqual(reqs(w![0]), [{ key: 'reserved:world', operator: 'Exists', values: [] }]);
  });

  it('each peer is one DirectionalRule with the rule\'s ports and its own path', () => {
    const r = oneRule(np('podSelector: {}\negress:\n- to: [{podSelector: {}}, {ipBlock: {cidr: 1.2.3.4/32}}]\n  ports: [{port: 53, protocol: UDP}, {port: dns}]'));
    assert.deepEqual(
      r.egress.map((d) => [d.path, d.deny, d.toPorts]),
      [
        ['spec.egress[0].to[0]', false, [{ ports: [{ port: 53, protocol: 'UDP' }, { port: 0, name: 'dns', protocol: 'TCP' }] }]],
        ['spec.egress[0].to[1]', false, [{ ports: [{ port: 53, protocol: 'UDP' }, { port: 0, name: 'dns', protocol: 'TCP' }] }]],
      ],
    );
  });

  it('ports: protocol default TCP, missing port = 0, endPort kept', () => {
    const r = oneRule(np('podSelector: {}\ningress:\n- ports: [{protocol: UDP}, {port: 8000, endPort: 9000}]'));
    assert.deepEqual(r.ingress[0].toPorts[0].ports, [
      { port: 0, protocol: 'UDP' },
      { port: 8000, endPort: 9000, protocol: 'TCP' },
    ]);
  });

  it('invalid peers and ports', () => {
    const bad = (spec: string, field: string) =>
      assert.ok(
        errors(parse(np(spec))).some((e) => e.field === field),
        `${field}: ${JSON.stringify(errors(parse(np(spec))))}`,
      );
    bad('podSelector: {}\ningress:\n- from: [{}]', 'spec.ingress[0].from[0]');
    bad('podSelector: {}\ningress:\n- from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]', 'spec.ingress[0].from[0]');
    bad('podSelector: {}\ningress:\n- ports: [{port: 0}]', 'spec.ingress[0].ports[0].port');
    bad('podSelector: {}\ningress:\n- ports: [{port: "80"}]', 'spec.ingress[0].ports[0].port');
    bad('podSelector: {}\ningress:\n- ports: [{protocol: tcp}]', 'spec.ingress[0].ports[0].protocol');
    bad('podSelector: {}\ningress:\n- ports: [{port: 90, endPort: 80}]', 'spec.ingress[0].ports[0].endPort');
    bad('podSelector: {}\ningress:\n- ports: [{port: http, endPort: 80}]', 'spec.ingress[0].ports[0].endPort');
    bad('podSelector: {}\ningress:\n- from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]', 'spec.ingress[0].from[0].ipBlock.except[0]');
    bad('podSelector: {}\nbogus: 1', 'spec.bogus');
    bad('podSelector: {matchExpressions: [{key: a, operator: in, values: [b]}]}', 'spec.podSelector.matchExpressions[0].operator');
  });

  it('wrong apiVersion for NetworkPolicy', () => {
    assert.ok(errors(parse(np('podSelector: {}').replace('networking.k8s.io/v1', 'cilium.io/v2'))).some((e) => e.field === 'apiVersion'));
  });
});
