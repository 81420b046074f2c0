// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/golden/cilium-examples
 *
 * Every upstream example in `../shared/reference/cilium-examples/` (reference §8.2) is loaded
 * on its own and is either accepted or rejected for the reason stated in the table below.
 * A new file without a table entry fails the test, so the table stays complete.
 *
 * Decisions recorded here:
 * - `from_nodes` has a lowercase `apiversion` key upstream: kubectl strict field validation
 *   reports it as an unknown field, and the object then also lacks `apiVersion`; both are
 *   errors (and `fromNodes` is unsupported anyway).
 * - `{{…}}` Go-template placeholders in the cilium-cli manifests are plain YAML strings. They
 *   are accepted where any string is (descriptions, label values such as
 *   `io.cilium.k8s.policy.cluster In [{{.ClusterNameLocal}}]`, which then match no cluster) and
 *   rejected where the value has a syntax (`matchName: "{{.ExternalTarget}}"` is not a DNS name).
 * - `requires.yaml` puts `description` at the top level of the object, outside `spec`:
 *   an unknown field under strict validation. Its `fromRequires` alone would be accepted with a
 *   deprecation warning (DESIGN §2).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPolicyPaths } from '../../src/api/load.ts';
import { formatProblem } from '../../src/api/types.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const examples = path.resolve(here, '../../../shared/reference/cilium-examples');

type Expect = 'accept' | { reject: string[] } | { acceptWithWarning: string };

const M = 'cilium-cli__connectivity__builder__manifests__';
const P = 'examples__policies__';

/** File → expected outcome; `reject` lists substrings that must each appear in some error line. */
const table: Record<string, Expect> = {
  // headerMatches with mismatch/secret: header rewriting and secrets are unsupported.
  [`${M}client-egress-l7-http-matchheader-secret.yaml`]: {
    reject: ['headerMatches[0].mismatch: mismatch is not supported', 'headerMatches[0].secret: secret is not supported'],
  },
  // The `{{.ExternalTarget}}` placeholder is not a valid matchName; `{{.ClusterNameLocal}}` values are accepted strings.
  [`${M}client-egress-l7-http.yaml`]: { reject: ['spec.egress[1].toFQDNs[0].matchName: invalid matchName "{{.ExternalTarget}}"'] },
  // Mutual authentication is unsupported.
  [`${M}echo-ingress-mutual-authentication.yaml`]: { reject: ['spec.ingress[0].authentication: authentication is not supported'] },
  // Obsolete `auth: {type: "null"}` spelling.
  [`${P}auth__auth.yaml`]: { reject: ['spec.egress[0].auth: auth is not supported'] },
  // Host policy (nodeSelector) and a placeholder port name longer than 15 characters.
  [`${P}host__lock-down-ingress.yaml`]: {
    reject: ['spec.nodeSelector: nodeSelector is not supported', 'ports[5].port: invalid port "REMOVE_ME_AFTER_DOUBLE_CHECKING_PORTS"'],
  },
  [`${P}kubernetes__clusterwide__clusterscope-policy.yaml`]: 'accept',
  [`${P}kubernetes__namespace__isolate-namespaces.yaml`]: 'accept', // same name, two namespaces: not a duplicate
  [`${P}kubernetes__namespace__kubedns-policy.yaml`]: 'accept',
  [`${P}kubernetes__namespace__namespace-labels-policy.yaml`]: 'accept',
  [`${P}kubernetes__namespace__namespace-policy.yaml`]: 'accept',
  [`${P}kubernetes__serviceaccount__serviceaccount-policy.yaml`]: 'accept',
  [`${P}l3__cidr__cidr.yaml`]: 'accept',
  [`${P}l3__egress-default-deny__egress-default-deny.yaml`]: 'accept',
  [`${P}l3__egress-deny__egress-deny.yaml`]: 'accept',
  [`${P}l3__entities__apiserver.yaml`]: 'accept',
  // Lowercase `apiversion` (unknown field + missing apiVersion) and unsupported fromNodes.
  [`${P}l3__entities__from_nodes.yaml`]: {
    reject: ['apiversion: unknown field "apiversion" (did you mean "apiVersion"?)', 'apiVersion: required', 'spec.ingress[0].fromNodes: fromNodes is not supported'],
  },
  [`${P}l3__entities__from_world_deny.yaml`]: 'accept',
  [`${P}l3__entities__host.yaml`]: 'accept',
  [`${P}l3__entities__nodes.yaml`]: 'accept',
  [`${P}l3__entities__world.yaml`]: 'accept',
  [`${P}l3__fqdn__fqdn.yaml`]: 'accept',
  [`${P}l3__ingress-allow-all__ingress-allow-all.yaml`]: 'accept',
  // Operator `in` (lowercase) as stored upstream: operators are case-sensitive (reference §1.5, §8.2).
  [`${P}l3__match-expressions__or-statement.yaml`]: {
    reject: ['fromEndpoints[0].matchExpressions[0].operator: invalid operator "in"', 'fromEndpoints[1].matchExpressions[0].operator: invalid operator "in"'],
  },
  [`${P}l3__requires__endpoints.yaml`]: 'accept',
  // Top-level `description` outside spec (unknown field); fromRequires itself only warns.
  [`${P}l3__requires__requires.yaml`]: { reject: ['requires-rule: description: unknown field "description"'] },
  [`${P}l3__service__service-labels.yaml`]: { reject: ['spec.egress[0].toServices: toServices is not supported'] },
  [`${P}l3__service__service.yaml`]: { reject: ['spec.egress[0].toServices: toServices is not supported'] },
  [`${P}l3__simple__l3.yaml`]: 'accept',
  [`${P}l4__cidr_l4_combined.yaml`]: 'accept',
  [`${P}l4__icmp.yaml`]: 'accept',
  [`${P}l4__l3_l4_combined.yaml`]: 'accept',
  [`${P}l4__l4.yaml`]: 'accept',
  [`${P}l4__l4_port_range.yaml`]: 'accept',
  [`${P}l4__l4_sni.yaml`]: { reject: ['spec.egress[0].toPorts[0].serverNames: serverNames is not supported'] },
  [`${P}l7__dns__dns-visibility.yaml`]: 'accept',
  [`${P}l7__dns__dns.yaml`]: 'accept',
  [`${P}l7__http__http.yaml`]: 'accept',
  [`${P}l7__http__simple__l7.yaml`]: 'accept',
  [`${P}l7__kafka__kafka-role.yaml`]: 'accept', // Kafka keeps the 1.18 semantics (DESIGN §2)
  [`${P}l7__kafka__kafka.yaml`]: 'accept',
};

describe('cilium examples (reference §8.2)', () => {
  const files = readdirSync(examples).sort();

  it('the directory holds the 40 copied examples and every one has a table entry', () => {
    assert.equal(files.length, 40);
    assert.deepEqual(files.filter((f) => !(f in table)), []);
    assert.deepEqual(Object.keys(table).filter((f) => !files.includes(f)), []);
  });

  for (const file of files) {
    const expect = table[file] ?? 'accept';
    it(`${file}: ${expect === 'accept' ? 'accepted' : 'reject' in expect ? 'rejected' : 'accepted with a warning'}`, () => {
      const loaded = loadPolicyPaths([path.join(examples, file)]);
      const errs = loaded.problems.filter((p) => p.severity === 'error').map(formatProblem);
      if (expect === 'accept' || 'acceptWithWarning' in expect) {
        assert.deepEqual(errs, []);
        assert.ok(loaded.rules.length > 0, 'yields rules');
        if (expect !== 'accept') assert.ok(loaded.problems.some((p) => p.message.includes(expect.acceptWithWarning)));
      } else {
        assert.equal(loaded.rules.length, 0, 'a rejected object yields no rules');
        for (const s of expect.reject) assert.ok(errs.some((e) => e.includes(s)), `missing "${s}" in:\n${errs.join('\n')}`);
        for (const e of errs) assert.match(e, /^\/.+\.yaml:\d+: \S+\/\S+: /, 'file:line: Kind/name: prefix');
      }
    });
  }

  it('isolate-namespaces: the same name in ns1 and ns2 gives two objects', () => {
    const l = loadPolicyPaths([path.join(examples, `${P}kubernetes__namespace__isolate-namespaces.yaml`)]);
    assert.deepEqual(
      l.objects.map((o) => o.ref),
      ['CiliumNetworkPolicy/ns1/isolate-ns1', 'CiliumNetworkPolicy/ns2/isolate-ns1'],
    );
  });

  it('the whole directory at once: names reused across upstream files are duplicates', () => {
    const l = loadPolicyPaths([examples]);
    const dups = l.problems.filter((p) => p.message.startsWith('duplicate object')).map((p) => p.object);
    assert.deepEqual(dups, [
      'CiliumNetworkPolicy/l3-rule',
      'CiliumNetworkPolicy/l4-rule',
      'CiliumNetworkPolicy/tofqdn-dns-visibility',
      'CiliumNetworkPolicy/rule1',
      'CiliumNetworkPolicy/rule1',
    ]);
  });
});
