// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/api/cidr
 *
 * CIDR parsing and canonical text (reference §1.12, §2.10; decisions in src/api/cidr.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, cidrText, parseCidr, type CidrPrefix } from '../../../src/api/cidr.ts';

const p = (s: string): CidrPrefix => {
  const r = parseCidr(s);
  if (typeof r === 'string') throw new Error(r);
  return r;
};

describe('parseCidr / cidrText', () => {
  it('IPv4 prefixes, host prefixes, host bits cleared', () => {
    assert.equal(cidrText(p('10.0.0.0/8')), '10.0.0.0/8');
    assert.equal(cidrText(p('192.0.2.1')), '192.0.2.1/32');
    assert.equal(cidrText(p('10.1.2.3/8')), '10.0.0.0/8');
    assert.equal(p('10.1.2.3/8').hadHostBits, true);
    assert.equal(p('10.0.0.0/8').hadHostBits, false);
    assert.equal(cidrText(p('10.255.255.255/9')), '10.128.0.0/9');
    assert.equal(cidrText(p('0.0.0.0/0')), '0.0.0.0/0');
  });

  it('IPv6: RFC 5952 text (lower case, longest zero run compressed, first on ties)', () => {
    assert.equal(cidrText(p('2001:DB8:0:0:0:0:0:1')), '2001:db8::1/128');
    assert.equal(cidrText(p('::')), '::/128');
    assert.equal(cidrText(p('::/0')), '::/0');
    assert.equal(cidrText(p('1:0:0:2:0:0:0:3/128')), '1:0:0:2::3/128');
    assert.equal(cidrText(p('1:0:0:2:0:0:3:4/128')), '1::2:0:0:3:4/128');
    assert.equal(cidrText(p('1:0:2:3:4:5:6:7/128')), '1:0:2:3:4:5:6:7/128');
    assert.equal(cidrText(p('::ffff:192.0.2.1')), '::ffff:c000:201/128');
    assert.equal(cidrText(p('2001:db8::ff/120')), '2001:db8::/120');
  });

  it('rejects malformed text', () => {
    for (const bad of ['', '10.0.0', '10.0.0.256', '10.0.0.01', '10.0.0.0/33', '10.0.0.0/08', '10.0.0.0/', '1::2::3', '1:2:3:4:5:6:7:8:9', '::/129', 'fe80::1%eth0', 'a.b.c.d']) {
      assert.equal(typeof parseCidr(bad), 'string', bad);
    }
  });

  it('containment', () => {
    assert.equal(cidrContains(p('10.0.0.0/8'), p('10.96.0.0/12')), true);
    assert.equal(cidrContains(p('10.0.0.0/8'), p('10.0.0.0/8')), true);
    assert.equal(cidrContains(p('10.0.0.0/8'), p('11.0.0.0/16')), false);
    assert.equal(cidrContains(p('10.0.0.0/8'), p('0.0.0.0/0')), false);
    assert.equal(cidrContains(p('10.0.0.0/8'), p('::/64')), false);
    assert.equal(cidrContains(p('2001:db8::/32'), p('2001:db8:1::/48')), true);
  });
});
