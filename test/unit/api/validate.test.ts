// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/api/validate
 *
 * Validation errors: strict schema, unsupported fields (DESIGN §2), Cilium's rule validation
 * (reference §1.12, §1.3–§1.11), and the field path and line of every problem (DESIGN §3.3).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateObject } from '../../../src/api/validate.ts';
import { formatProblem } from '../../../src/api/types.ts';
import { PolicyValidationError, EngineError } from '../../../src/errors.ts';
import { assertValid } from '../../../src/api/load.ts';
import { ccnp, cnp, errors, errorTexts, parse, warnings } from './helpers.ts';

/** Asserts that `text` is rejected with an error on `field` whose message contains `msg`. */
function rejects(text: string, field: string, msg: string | RegExp): void {
  const errs = errors(parse(text));
  const hit = errs.find((e) => e.field === field && (typeof msg === 'string' ? e.message.includes(msg) : msg.test(e.message)));
  assert.ok(hit, `expected error on ${field} matching ${String(msg)}, got:\n${errs.map(formatProblem).join('\n')}`);
  assert.equal(parse(text).rules.length, 0, 'an object with errors yields no rules');
}

const E = 'endpointSelector: {}\n';

describe('unsupported fields are errors naming the field (DESIGN §2)', () => {
  const cases: Array<[string, string, string, string]> = [
    ['nodeSelector (host policies)', 'nodeSelector: {matchLabels: {a: b}}\ningress: [{}]', 'spec.nodeSelector', 'host firewall'],
    ['fromNodes', E + 'ingress:\n- fromNodes: [{matchLabels: {role: worker}}]', 'spec.ingress[0].fromNodes', 'node selector labels'],
    ['toNodes', E + 'egress:\n- toNodes: [{}]', 'spec.egress[0].toNodes', 'node selector labels'],
    ['fromGroups', E + 'ingress:\n- fromGroups: [{aws: {labels: {a: b}}}]', 'spec.ingress[0].fromGroups', 'fromGroups is not supported'],
    ['toGroups', E + 'egress:\n- toGroups: [{aws: {labels: {a: b}}}]', 'spec.egress[0].toGroups', 'toGroups is not supported'],
    ['cidrGroupRef', E + 'egress:\n- toCIDRSet: [{cidrGroupRef: g}]', 'spec.egress[0].toCIDRSet[0].cidrGroupRef', 'CIDRGroup'],
    ['cidrGroupSelector', E + 'egress:\n- toCIDRSet: [{cidrGroupSelector: {}}]', 'spec.egress[0].toCIDRSet[0].cidrGroupSelector', 'CIDRGroup'],
    ['authentication', E + 'ingress:\n- fromEndpoints: [{}]\n  authentication: {mode: required}', 'spec.ingress[0].authentication', 'authentication is not supported'],
    ['auth (old spelling)', E + 'egress:\n- toEndpoints: [{}]\n  auth: {type: "null"}', 'spec.egress[0].auth', 'auth is not supported'],
    ['serverNames', E + 'egress:\n- toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [a.com]}]', 'spec.egress[0].toPorts[0].serverNames', 'SNI'],
    ['terminatingTLS', E + 'egress:\n- toPorts: [{ports: [{port: "443", protocol: TCP}], terminatingTLS: {secret: {name: s}}}]', 'spec.egress[0].toPorts[0].terminatingTLS', 'TLS'],
    ['originatingTLS', E + 'egress:\n- toPorts: [{ports: [{port: "443", protocol: TCP}], originatingTLS: {secret: {name: s}}}]', 'spec.egress[0].toPorts[0].originatingTLS', 'TLS'],
    ['listener', E + 'egress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: x}, name: l}}]', 'spec.egress[0].toPorts[0].listener', 'listener'],
    ['headerMatches.secret', E + 'ingress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{name: A, secret: {name: s, namespace: n}}]}]}}]', 'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].secret', 'secret'],
    ['headerMatches.mismatch', E + 'ingress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{name: A, value: b, mismatch: ADD}]}]}}]', 'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch', 'mismatch'],
    ['l7proto', E + 'ingress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {l7proto: r2d2, l7: [{cmd: READ}]}}]', 'spec.ingress[0].toPorts[0].rules.l7proto', 'generic L7'],
    ['l7', E + 'ingress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {l7: [{cmd: READ}]}}]', 'spec.ingress[0].toPorts[0].rules.l7', 'generic L7'],
    ['toServices', E + 'egress:\n- toServices: [{k8sService: {serviceName: s, namespace: default}}]', 'spec.egress[0].toServices', 'toServices is not supported'],
  ];
  for (const [name, spec, field, msg] of cases) {
    it(name, () => rejects(cnp(spec), field, msg));
  }

  it('extended IP protocols (VRRP, IGMP, GRE, IPIP, IPV6, ESP, AH) (§1.8)', () => {
    for (const proto of ['VRRP', 'IGMP', 'GRE', 'IPIP', 'IPV6', 'ESP', 'AH', 'gre']) {
      rejects(
        cnp(E + `egress:\n- toPorts: [{ports: [{protocol: ${proto}}]}]`),
        'spec.egress[0].toPorts[0].ports[0].protocol',
        'extended IP protocols',
      );
    }
  });

  it('cidrgroup: label source', () => rejects(cnp('endpointSelector: {matchLabels: {"cidrgroup:x": ""}}\ningress: [{}]'), 'spec.endpointSelector.matchLabels["cidrgroup:x"]', 'cidrgroup'));
});

describe('strict schema: unknown fields and wrong types', () => {
  it('unknown field at each level', () => {
    rejects(cnp(E + 'ingress: [{}]\nfoo: 1'), 'spec.foo', 'unknown field "foo"');
    rejects(cnp(E + 'ingress:\n- fromEndpoint: [{}]'), 'spec.ingress[0].fromEndpoint', 'unknown field');
    rejects(cnp(E + 'egress:\n- toPorts: [{ports: [{port: "80", proto: TCP}]}]'), 'spec.egress[0].toPorts[0].ports[0].proto', 'unknown field');
    rejects(cnp('endpointSelector: {matchLabel: {a: b}}\ningress: [{}]'), 'spec.endpointSelector.matchLabel', 'unknown field');
  });

  it('a case mismatch suggests the right name', () => {
    rejects(cnp(E + 'ingress:\n- FromEndpoints: [{}]'), 'spec.ingress[0].FromEndpoints', 'did you mean "fromEndpoints"');
  });

  it('unknown top-level field (e.g. description outside spec)', () => {
    rejects(cnp(E + 'ingress: [{}]') + 'description: x\n', 'description', 'unknown field "description"');
  });

  it('deny rules: no L7 rules, no toFQDNs, no authentication', () => {
    rejects(cnp(E + 'ingressDeny:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]'), 'spec.ingressDeny[0].toPorts[0].rules', 'not allowed in deny');
    rejects(cnp(E + 'egressDeny:\n- toFQDNs: [{matchName: a.com}]'), 'spec.egressDeny[0].toFQDNs', 'not allowed in egressDeny');
    rejects(cnp(E + 'ingressDeny:\n- authentication: {mode: required}'), 'spec.ingressDeny[0].authentication', 'unknown field');
  });

  it('wrong types', () => {
    rejects(cnp(E + 'ingress: {}'), 'spec.ingress', 'must be a list');
    rejects(cnp(E + 'egress:\n- toPorts: [{ports: [{port: 8.5, protocol: TCP}]}]'), 'spec.egress[0].toPorts[0].ports[0].port', 'must be a string');
    rejects(cnp('endpointSelector: {matchLabels: {version: 1}}\ningress: [{}]'), 'spec.endpointSelector.matchLabels.version', 'must be a string');
    rejects(cnp(E + 'ingress: [{}]\nenableDefaultDeny: {ingress: "yes"}'), 'spec.enableDefaultDeny.ingress', 'must be a boolean');
    rejects(cnp(E + 'egress:\n- toPorts: [{ports: [{port: "80", endPort: "90", protocol: TCP}]}]'), 'spec.egress[0].toPorts[0].ports[0].endPort', 'must be an integer');
    rejects(cnp(E + 'egress:\n- toCIDR: [{cidr: 10.0.0.0/8}]'), 'spec.egress[0].toCIDR[0]', 'must be a string');
  });
});

describe('lenient where the meaning is unambiguous', () => {
  it('an unquoted integer port is read as that port, with a warning', () => {
    const l = parse(cnp(E + 'egress:\n- toPorts: [{ports: [{port: 80, protocol: TCP}]}]'));
    assert.deepEqual(errors(l), []);
    assert.ok(warnings(l).some((w) => w.field === 'spec.egress[0].toPorts[0].ports[0].port' && w.message.includes('quote it: "80"')));
    assert.equal(l.rules[0]!.egress[0]!.toPorts[0]!.ports[0]!.port, 80);
  });
});

describe('object envelope', () => {
  it('metadata.name is required', () => {
    const l = parse('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {namespace: a}\nspec: {endpointSelector: {}, ingress: [{}]}\n');
    assert.ok(errors(l).some((e) => e.field === 'metadata.name' && e.object === 'CiliumNetworkPolicy/<no name>'));
  });

  it('wrong apiVersion', () => {
    rejects(cnp(E + 'ingress: [{}]').replace('cilium.io/v2', 'cilium.io/v1'), 'apiVersion', 'unsupported apiVersion');
  });

  it('one of spec or specs is required; specs: [] alone is empty', () => {
    const base = 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n';
    assert.ok(errors(parse(base)).some((e) => e.message.includes('one of spec or specs is required')));
    rejects(base + 'specs: []\n', 'specs', 'at least one rule');
  });

  it('endpointSelector is required', () => rejects(cnp('ingress: [{}]'), 'spec.endpointSelector', 'required'));

  it('a rule needs at least one of ingress, ingressDeny, egress, egressDeny (§1.2); ingress: [] does not count', () => {
    rejects(cnp(E), 'spec', 'rule must have at least one of ingress, ingressDeny, egress, egressDeny');
    rejects(cnp(E + 'ingress: []'), 'spec', 'rule must have at least one');
  });

  it('log.value: at most 32 printable characters', () => {
    rejects(cnp(E + `ingress: [{}]\nlog: {value: "${'x'.repeat(33)}"}`), 'spec.log.value', 'at most 32');
    rejects(cnp(E + 'ingress: [{}]\nlog: {value: "a\\tb"}'), 'spec.log.value', 'printable');
  });

  it('rule labels are a LabelArray', () => {
    rejects(cnp(E + 'ingress: [{}]\nlabels: [{value: x}]'), 'spec.labels[0].key', 'required');
    assert.equal(errors(parse(cnp(E + 'ingress: [{}]\nlabels: [{key: a, value: b, source: k8s}]'))).length, 0);
  });

  it('invalid metadata.name', () => rejects(cnp(E + 'ingress: [{}]', { name: 'Bad_Name' }), 'metadata.name', 'RFC 1123'));
});

describe('L3 rules (§1.3, §1.4, §1.12)', () => {
  it('only one L3 member per rule', () => {
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{}]\n  fromCIDR: [10.0.0.0/8]'), 'spec.ingress[0].fromCIDR', 'combining fromEndpoints and fromCIDR is not supported yet');
    rejects(cnp(E + 'egress:\n- toFQDNs: [{matchName: a.com}]\n  toEntities: [world]'), 'spec.egress[0].toFQDNs', 'combining toEntities and toFQDNs is not supported yet');
    rejects(cnp(E + 'egress:\n- toCIDR: [10.0.0.0/8]\n  toCIDRSet: [{cidr: 10.0.0.0/8}]'), 'spec.egress[0].toCIDRSet', 'combining toCIDR and toCIDRSet');
  });

  it('unknown entity', () => rejects(cnp(E + 'egress:\n- toEntities: [World]'), 'spec.egress[0].toEntities[0]', 'unknown entity "World"'));

  it('CIDR: invalid text, prefix length, leading zeros', () => {
    rejects(cnp(E + 'egress:\n- toCIDR: [10.0.0.0/33]'), 'spec.egress[0].toCIDR[0]', 'prefix length');
    rejects(cnp(E + 'egress:\n- toCIDR: [10.0.0/8]'), 'spec.egress[0].toCIDR[0]', 'not an IPv4 or IPv6 address');
    rejects(cnp(E + 'egress:\n- toCIDR: [010.0.0.0/8]'), 'spec.egress[0].toCIDR[0]', 'invalid CIDR');
    rejects(cnp(E + 'egress:\n- toCIDR: ["2001:db8:::/32"]'), 'spec.egress[0].toCIDR[0]', 'invalid CIDR');
  });

  it('except must be inside cidr and of the same family', () => {
    rejects(cnp(E + 'egress:\n- toCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}]'), 'spec.egress[0].toCIDRSet[0].except[0]', 'not contained in 10.0.0.0/8');
    rejects(cnp(E + 'egress:\n- toCIDRSet: [{cidr: 10.0.0.0/8, except: ["10.0.0.0/4"]}]'), 'spec.egress[0].toCIDRSet[0].except[0]', 'not contained');
    rejects(cnp(E + 'egress:\n- toCIDRSet: [{cidr: 10.0.0.0/8, except: ["::/64"]}]'), 'spec.egress[0].toCIDRSet[0].except[0]', 'same address family');
    rejects(cnp(E + 'egress:\n- toCIDRSet: [{except: [10.0.0.0/16]}]'), 'spec.egress[0].toCIDRSet[0].cidr', 'required');
  });

  it('toFQDNs: exactly one of matchName/matchPattern, validated by l7/dns', () => {
    rejects(cnp(E + 'egress:\n- toFQDNs: [{matchName: a.com, matchPattern: "*.a.com"}]'), 'spec.egress[0].toFQDNs[0]', 'only one of');
    rejects(cnp(E + 'egress:\n- toFQDNs: [{}]'), 'spec.egress[0].toFQDNs[0]', 'one of matchName or matchPattern is required');
    rejects(cnp(E + 'egress:\n- toFQDNs: [{matchName: "a b"}]'), 'spec.egress[0].toFQDNs[0].matchName', 'invalid matchName');
    rejects(cnp(E + 'egress:\n- toFQDNs: [{matchPattern: "a..b"}]'), 'spec.egress[0].toFQDNs[0].matchPattern', 'invalid matchPattern');
  });
});

describe('label selectors (§1.5)', () => {
  it('operators are case-sensitive: lowercase in is an error', () => {
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{matchExpressions: [{key: a, operator: in, values: [x]}]}]'), 'spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator', 'did you mean "In"');
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{matchExpressions: [{key: a, operator: Equals, values: [x]}]}]'), 'spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator', 'invalid operator');
  });

  it('values required for In/NotIn and forbidden otherwise', () => {
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{matchExpressions: [{key: a, operator: In}]}]'), 'spec.ingress[0].fromEndpoints[0].matchExpressions[0].values', 'must be non-empty');
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{matchExpressions: [{key: a, operator: NotIn, values: []}]}]'), 'spec.ingress[0].fromEndpoints[0].matchExpressions[0].values', 'must be non-empty');
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{matchExpressions: [{key: a, operator: Exists, values: [x]}]}]'), 'spec.ingress[0].fromEndpoints[0].matchExpressions[0].values', 'may not be specified');
  });

  it('key is required; unknown source is an error', () => {
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{matchExpressions: [{operator: Exists}]}]'), 'spec.ingress[0].fromEndpoints[0].matchExpressions[0].key', 'required');
    rejects(cnp(E + 'ingress:\n- fromEndpoints: [{matchLabels: {"kube:app": x}}]'), 'spec.ingress[0].fromEndpoints[0].matchLabels["kube:app"]', 'unknown label source');
  });
});

describe('ports (§1.8, §1.12)', () => {
  const P = (ports: string, extra = '') => cnp(E + `egress:\n- toPorts: [{ports: [${ports}]${extra}}]`);
  const F = 'spec.egress[0].toPorts[0].ports[0]';

  it('port number range and names', () => {
    rejects(P('{port: "65536"}'), `${F}.port`, 'must be 0..65535');
    rejects(P('{port: "-1"}'), `${F}.port`, 'invalid port');
    rejects(P('{port: "080"}'), `${F}.port`, 'leading zeros');
    rejects(P('{port: "this-name-is-too-long"}'), `${F}.port`, 'IANA service name');
    rejects(P('{port: "a--b"}'), `${F}.port`, 'IANA');
    rejects(P('{port: "a_b"}'), `${F}.port`, 'IANA');
    assert.equal(errors(parse(P('{port: "65535"}, {port: "0"}, {port: "dns-tcp"}'))).length, 0);
  });

  it('protocol must be TCP|UDP|SCTP|ANY; ICMP in toPorts points to icmps', () => {
    rejects(P('{port: "80", protocol: HTTP}'), `${F}.protocol`, 'must be one of TCP, UDP, SCTP, ANY');
    rejects(P('{port: "80", protocol: ICMP}'), `${F}.protocol`, 'use icmps');
  });

  it('endPort: not with named ports, within range', () => {
    rejects(P('{port: http, endPort: 90}'), `${F}.endPort`, 'named port');
    rejects(P('{port: "80", endPort: 70000}'), `${F}.endPort`, '0..65535');
  });

  it('at most 40 ports per port rule', () => {
    const ports = Array.from({ length: 41 }, (_, i) => `{port: "${i + 1}"}`).join(', ');
    rejects(P(ports), 'spec.egress[0].toPorts[0].ports', 'too many ports');
    const ok = Array.from({ length: 40 }, (_, i) => `{port: "${i + 1}"}`).join(', ');
    assert.equal(errors(parse(P(ok))).length, 0);
  });

  it('icmps and toPorts are exclusive; at most 40 ICMP fields; type names per family', () => {
    rejects(cnp(E + 'egress:\n- toPorts: [{ports: [{port: "80"}]}]\n  icmps: [{fields: [{type: 8}]}]'), 'spec.egress[0].icmps', 'cannot be combined');
    const fields = Array.from({ length: 41 }, () => '{type: 8}').join(', ');
    rejects(cnp(E + `egress:\n- icmps: [{fields: [${fields}]}]`), 'spec.egress[0].icmps[0].fields', 'too many ICMP fields');
    rejects(cnp(E + 'egress:\n- icmps: [{fields: [{type: PacketTooBig}]}]'), 'spec.egress[0].icmps[0].fields[0].type', 'unknown IPv4 ICMP type name');
    rejects(cnp(E + 'egress:\n- icmps: [{fields: [{type: echorequest, family: IPv6}]}]'), 'spec.egress[0].icmps[0].fields[0].type', 'case-sensitive');
    rejects(cnp(E + 'egress:\n- icmps: [{fields: [{type: 256}]}]'), 'spec.egress[0].icmps[0].fields[0].type', '0..255');
    rejects(cnp(E + 'egress:\n- icmps: [{fields: [{type: 8, family: ipv4}]}]'), 'spec.egress[0].icmps[0].fields[0].family', 'IPv4 or IPv6');
  });
});

describe('L7 rules (§1.12)', () => {
  const L7 = (dir: 'ingress' | 'egress', ports: string, rules: string) => cnp(E + `${dir}:\n- toPorts: [{ports: [${ports}], rules: ${rules}}]`);

  it('HTTP and Kafka need protocol TCP', () => {
    rejects(L7('ingress', '{port: "80"}', '{http: [{}]}'), 'spec.ingress[0].toPorts[0].ports[0].protocol', 'HTTP rules require protocol TCP, got ANY');
    rejects(L7('ingress', '{port: "80", protocol: UDP}', '{kafka: [{}]}'), 'spec.ingress[0].toPorts[0].ports[0].protocol', 'Kafka rules require protocol TCP');
  });

  it('DNS: egress only, TCP/UDP/ANY, explicit port, no ranges', () => {
    rejects(L7('ingress', '{port: "53", protocol: UDP}', '{dns: [{matchName: a.com}]}'), 'spec.ingress[0].toPorts[0].rules.dns', 'only allowed on egress');
    rejects(L7('egress', '{port: "53", protocol: SCTP}', '{dns: [{matchName: a.com}]}'), 'spec.egress[0].toPorts[0].ports[0].protocol', 'TCP, UDP or ANY');
    rejects(L7('egress', '{protocol: UDP}', '{dns: [{matchName: a.com}]}'), 'spec.egress[0].toPorts[0].ports[0].port', 'port is 0');
    rejects(L7('egress', '{port: "53", endPort: 54, protocol: UDP}', '{dns: [{matchName: a.com}]}'), 'spec.egress[0].toPorts[0].ports[0].endPort', 'port ranges');
    rejects(cnp(E + 'egress:\n- toPorts: [{rules: {dns: [{matchPattern: "*"}]}}]'), 'spec.egress[0].toPorts[0].rules', 'at least one explicit port');
    assert.equal(errors(parse(L7('egress', '{port: "53", protocol: ANY}', '{dns: [{matchPattern: "*"}]}'))).length, 0);
  });

  it('L7 not allowed on port 0', () => {
    rejects(L7('ingress', '{port: "0", protocol: TCP}', '{http: [{}]}'), 'spec.ingress[0].toPorts[0].ports[0].port', 'port is 0');
  });

  it('only one L7 kind per port rule', () => {
    rejects(L7('egress', '{port: "80", protocol: TCP}', '{http: [{}], kafka: [{}]}'), 'spec.egress[0].toPorts[0].rules', 'only one L7 rule type');
  });

  it('HTTP regexes compile as RE2; headers and headerMatches', () => {
    rejects(L7('ingress', '{port: "80", protocol: TCP}', '{http: [{path: "/(?=a)"}]}'), 'spec.ingress[0].toPorts[0].rules.http[0].path', 'invalid RE2');
    rejects(L7('ingress', '{port: "80", protocol: TCP}', '{http: [{method: "GET("}]}'), 'spec.ingress[0].toPorts[0].rules.http[0].method', 'invalid RE2');
    rejects(L7('ingress', '{port: "80", protocol: TCP}', '{http: [{host: "a\\\\1"}]}'), 'spec.ingress[0].toPorts[0].rules.http[0].host', 'invalid RE2');
    rejects(L7('ingress', '{port: "80", protocol: TCP}', '{http: [{headerMatches: [{value: x}]}]}'), 'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].name', 'needs a name');
    rejects(L7('ingress', '{port: "80", protocol: TCP}', '{http: [{headers: [" x"]}]}'), 'spec.ingress[0].toPorts[0].rules.http[0].headers[0]', 'empty name');
  });

  it('Kafka rules validated by l7/kafka (§1.10)', () => {
    rejects(L7('ingress', '{port: "9092", protocol: TCP}', '{kafka: [{role: produce, apiKey: fetch}]}'), 'spec.ingress[0].toPorts[0].rules.kafka[0]', 'cannot set both');
    rejects(L7('ingress', '{port: "9092", protocol: TCP}', '{kafka: [{role: admin}]}'), 'spec.ingress[0].toPorts[0].rules.kafka[0]', 'invalid Kafka role');
    rejects(L7('ingress', '{port: "9092", protocol: TCP}', '{kafka: [{apiKey: bogus}]}'), 'spec.ingress[0].toPorts[0].rules.kafka[0]', 'invalid Kafka apiKey');
    rejects(L7('ingress', '{port: "9092", protocol: TCP}', '{kafka: [{topic: "a/b"}]}'), 'spec.ingress[0].toPorts[0].rules.kafka[0]', 'invalid Kafka topic');
    rejects(L7('ingress', '{port: "9092", protocol: TCP}', '{kafka: [{apiVersion: "x"}]}'), 'spec.ingress[0].toPorts[0].rules.kafka[0]', 'apiVersion');
    rejects(L7('ingress', '{port: "9092", protocol: TCP}', '{kafka: [{clientId: x}]}'), 'spec.ingress[0].toPorts[0].rules.kafka[0].clientId', 'did you mean "clientID"');
  });

  it('named ports may carry L7 rules', () => {
    assert.equal(errors(parse(L7('ingress', '{port: http, protocol: TCP}', '{http: [{method: GET}]}'))).length, 0);
  });

  it('a port rule without ports allows nothing: accepted with a warning', () => {
    const l = parse(cnp(E + 'egress:\n- toPorts: [{}]'));
    assert.equal(errors(l).length, 0);
    assert.deepEqual(l.rules[0].egress[0].toPorts, [{ ports: [] }]);
    assert.match(l.problems[0].message, /allows nothing/);
  });
});

describe('problem location (DESIGN §3.3)', () => {
  it('the line is the offending field\'s line; the format is file:line: Kind/name: field: message', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web
  namespace: prod
spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports:
      - port: "80"
        protocol: TCP
      - port: "99999"
        protocol: TCP
`;
    const errs = errors(parse(text));
    assert.equal(errs.length, 1);
    assert.equal(
      formatProblem(errs[0]),
      'test.yaml:13: CiliumNetworkPolicy/web: spec.ingress[0].toPorts[0].ports[1].port: invalid port "99999": must be 0..65535',
    );
  });

  it('a missing required field points at its parent', () => {
    const errs = errors(parse('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n\nspec:\n  ingress: [{}]\n'));
    assert.deepEqual([errs[0].field, errs[0].line], ['spec.endpointSelector', 5]);
  });

  it('unknown fields point at the key', () => {
    const errs = errors(parse(cnp('endpointSelector: {}\ningress:\n- fromEndpoints: [{}]\n  bogus: 1')));
    assert.deepEqual([errs[0].field, errs[0].line], ['spec.ingress[0].bogus', 10]);
  });
});

describe('direct use', () => {
  it('validateObject without line information uses the object line', () => {
    const r = validateObject({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'x' }, spec: { endpointSelector: {}, ingress: [{ bogus: 1 }] } }, { file: 'mem', line: 7 });
    assert.equal(r.rules.length, 0);
    assert.equal(formatProblem(r.problems[0]), 'mem:7: CiliumNetworkPolicy/x: spec.ingress[0].bogus: unknown field "bogus"');
  });

  it('assertValid throws PolicyValidationError (an EngineError with a stable code)', () => {
    assert.throws(
      () => assertValid(parse(cnp('endpointSelector: {}\ningress: [{bogus: 1}]'))),
      (e: unknown) => e instanceof PolicyValidationError && e instanceof EngineError && e.code === 'MBR_ERR_POLICY_VALIDATION' && e.problems.length === 1 && /bogus/.test(e.message),
    );
    assert.doesNotThrow(() => assertValid(parse(ccnp('endpointSelector: {}\ningress: [{}]'))));
  });

  it('errorTexts helper sanity', () => {
    assert.deepEqual(errorTexts(cnp('endpointSelector: {}\ningress: [{}]')), []);
  });
});
