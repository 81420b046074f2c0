// SPDX-License-Identifier: Apache-2.0
/**
 * Pure parts of the endpoint plumbing: interface naming, input checks, ip message cleanup.
 * Nothing here touches the network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { checkPlumbable, hostIfname, HOST_IFNAME_RE, PlumbingError } from '../../../src/endpoint/plumbing.ts';
import { ipReason } from '../../../src/endpoint/ip.ts';
import { parseEndpointsText } from '../../../src/endpoint/endpoints-file.ts';

test('hostIfname: mbr + 11 hex digits of sha256(namespace/name), like Cilium lxc names', () => {
  const name = hostIfname({ namespace: 'prod', name: 'frontend' });
  assert.equal(name, 'mbr' + createHash('sha256').update('prod/frontend').digest('hex').slice(0, 11));
  assert.equal(name, 'mbr200fa3aaad4', 'names are stable across releases (they outlive the process)');
  assert.match(name, HOST_IFNAME_RE);
  assert.ok(name.length <= 15, 'kernel interface names hold at most 15 characters');
});

test('hostIfname: deterministic, and distinct for distinct endpoints', () => {
  const seen = new Map<string, string>();
  for (let ns = 0; ns < 50; ns++)
    for (let i = 0; i < 200; i++) {
      const ref = { namespace: `ns-${ns}`, name: `pod-${i}` };
      const n = hostIfname(ref);
      assert.equal(hostIfname({ ...ref }), n);
      assert.ok(n.length <= 15 && HOST_IFNAME_RE.test(n), n);
      const prev = seen.get(n);
      assert.equal(prev, undefined, `${n} for both ${prev} and ${ref.namespace}/${ref.name}`);
      seen.set(n, `${ref.namespace}/${ref.name}`);
    }
  // The separator matters: a/bc and ab/c are different endpoints.
  assert.notEqual(hostIfname({ namespace: 'a', name: 'bc' }), hostIfname({ namespace: 'ab', name: 'c' }));
});

test('checkPlumbable: netns without IPv4, shared netns', () => {
  const file = parseEndpointsText(
    [
      'endpoints:',
      '  - name: a',
      '    ips: [fd00::1]',
      '    netns: unit-x-a',
      '  - name: b',
      '    ips: [10.0.0.2]',
      '    netns: unit-x-shared',
      '  - name: c',
      '    ips: [10.0.0.3]',
      '    netns: unit-x-shared',
      '  - name: d',
      '    ips: []',
      '',
    ].join('\n'),
    'eps.yaml',
  );
  assert.deepEqual(checkPlumbable(file), [
    'eps.yaml:2: default/a: ips: an endpoint with netns needs at least one IPv4 address',
    "eps.yaml:8: default/c: netns: 'unit-x-shared' is also the namespace of default/b (line 5)",
  ]);
});

test('PlumbingError names endpoint, step and reason', () => {
  const e = new PlumbingError('prod/frontend', 'mbr200fa3aaad4', 'ip link add mbr200fa3aaad4 type veth peer name eth0 netns x', 'File exists');
  assert.equal(e.message, 'prod/frontend: ip link add mbr200fa3aaad4 type veth peer name eth0 netns x: File exists');
  assert.equal(e.code, 'MBR_ERR_PLUMBING');
  assert.equal(e.ifname, 'mbr200fa3aaad4');
});

test('ipReason strips the netlink prefix', () => {
  assert.equal(ipReason('RTNETLINK answers: File exists\n'), 'File exists');
  assert.equal(ipReason('Error: Nexthop device is not up.\n'), 'Nexthop device is not up.');
  assert.equal(ipReason('Cannot find device "x"\n'), 'Cannot find device "x"');
  assert.equal(ipReason(''), 'failed');
});
