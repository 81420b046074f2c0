// SPDX-License-Identifier: Apache-2.0
// Key/value codecs of src/datapath/*-map.ts (no kernel needed): byte order, LPM prefix lengths, validation,
// round trips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodePolicyKey, decodePolicyKey, encodePolicyValue, decodePolicyValue, type PolicyKeyDesc } from '../../../src/datapath/policy-map.ts';
import { encodeIpcacheKey, decodeIpcacheKey } from '../../../src/datapath/ipcache-map.ts';
import { encodeCtKey, decodeCtKey } from '../../../src/datapath/ct-map.ts';
import { encodeProxyOrigKey, decodeProxyOrigKey, encodeProxyOrigEntry, decodeProxyOrigEntry } from '../../../src/datapath/proxy-orig-map.ts';
import { ipv4Bytes, ipv6Bytes, ipv6Text, parseCidr, writeIpv4 } from '../../../src/datapath/addr.ts';
import { isIPv4 } from 'node:net';
import { decodeVerdictEvent } from '../../../src/datapath/verdict-event.ts';
import { MapEncodeError } from '../../../src/datapath/errors.ts';
import { proxyMark } from '../../../src/datapath/layout.ts';

const key = (o: Partial<PolicyKeyDesc>): PolicyKeyDesc => ({ epId: 7, identity: 1234, egress: true, proto: 6, port: 80, portPrefixLen: 16, ...o });

test('policy key: prefixlen 72 + proto/port bits, dport in network order', () => {
  const exact = encodePolicyKey(key({}));
  assert.equal(exact.readUInt32LE(0), 96);
  assert.deepEqual([...exact.subarray(14, 16)], [0, 80]);
  assert.equal(encodePolicyKey(key({ port: 8080, portPrefixLen: 14 })).readUInt32LE(0), 94);
  assert.equal(encodePolicyKey(key({ port: 0, portPrefixLen: 0 })).readUInt32LE(0), 80);
  assert.equal(encodePolicyKey(key({ proto: 0, port: 0, portPrefixLen: 0 })).readUInt32LE(0), 72);
  for (const k of [key({}), key({ port: 8080, portPrefixLen: 14, egress: false }), key({ proto: 0, port: 0, portPrefixLen: 0, identity: 0 })]) {
    assert.deepEqual(decodePolicyKey(encodePolicyKey(k)), k);
  }
});

test('policy key: rejects host bits beyond the port prefix and ports on any-protocol entries', () => {
  assert.throws(() => encodePolicyKey(key({ port: 8081, portPrefixLen: 14 })), MapEncodeError);
  assert.throws(() => encodePolicyKey(key({ proto: 0, port: 80 })), MapEncodeError);
  assert.throws(() => encodePolicyKey(key({ epId: 0 })), MapEncodeError);
  assert.throws(() => encodePolicyKey(key({ portPrefixLen: 17 })), MapEncodeError);
});

test('policy value: proxy port network order, lpm_prefix_len derived from the key', () => {
  const v = encodePolicyValue({ deny: false, proxyPort: 15001, cookie: 99 }, key({ port: 8080, portPrefixLen: 14 }));
  assert.equal(v.readUInt16BE(0), 15001);
  assert.equal(v[3], 22);
  assert.deepEqual(decodePolicyValue(v), { deny: false, proxyPort: 15001, cookie: 99, lpmPrefixLen: 22 });
  assert.throws(() => encodePolicyValue({ deny: true, proxyPort: 1, cookie: 0 }, key({})), MapEncodeError);
});

test('ipcache key: prefixlen = 32 + N, family byte, address in network order; IPv6 is encodable', () => {
  const k = encodeIpcacheKey({ addr: '10.1.0.0', prefixLen: 16 });
  assert.equal(k.readUInt32LE(0), 48);
  assert.equal(k[4], 4);
  assert.deepEqual([...k.subarray(8, 12)], [10, 1, 0, 0]);
  assert.deepEqual(decodeIpcacheKey(k), { addr: '10.1.0.0', prefixLen: 16 });
  assert.throws(() => encodeIpcacheKey({ addr: '10.1.0.1', prefixLen: 16 }), MapEncodeError);
  const k6 = encodeIpcacheKey({ addr: 'fd00::', prefixLen: 8 });
  assert.equal(k6[4], 6);
  assert.equal(k6.readUInt32LE(0), 40);
  assert.deepEqual(decodeIpcacheKey(k6), { addr: 'fd00::', prefixLen: 8 });
});

test('IPv6 text ⇄ bytes', () => {
  for (const ip of ['::', '::1', 'fd00::1:2', '2001:db8:0:1:2:3:4:5']) assert.equal(ipv6Text(ipv6Bytes(ip)), ip);
  assert.equal(ipv6Text(ipv6Bytes('::ffff:10.0.0.1')), '::ffff:a00:1');
  assert.deepEqual(parseCidr('10.0.0.0/8'), { addr: '10.0.0.0', prefixLen: 8, family: 4 });
  assert.deepEqual(parseCidr('10.0.0.1'), { addr: '10.0.0.1', prefixLen: 32, family: 4 });
});

test('conntrack key round trip, ports network order', () => {
  const k = { saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 40000, dport: 443, proto: 6 };
  const b = encodeCtKey(k);
  assert.equal(b.readUInt16BE(8), 40000);
  assert.deepEqual(decodeCtKey(b), k);
});

test('proxy orig key/entry: addresses and ports network order, identity host order, pads zero', () => {
  const k = { saddr: '10.200.0.10', sport: 40000, proto: 17 };
  const kb = encodeProxyOrigKey(k);
  assert.deepEqual([...kb], [10, 200, 0, 10, 0x9c, 0x40, 17, 0]);
  assert.deepEqual(decodeProxyOrigKey(kb), k);
  const e = { daddr: '10.200.0.20', dport: 53, identity: 0x01020304 };
  const eb = encodeProxyOrigEntry(e);
  assert.deepEqual([...eb], [10, 200, 0, 20, 0, 53, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0]);
  assert.deepEqual(decodeProxyOrigEntry(eb), e);
  assert.throws(() => encodeProxyOrigKey({ ...k, saddr: 'fd00::1' }), MapEncodeError);
});

test('verdict event decoding of a hand-made record', () => {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(123n, 0);
  Buffer.from([10, 0, 0, 1]).copy(b, 8);
  Buffer.from([10, 0, 0, 2]).copy(b, 12);
  b.writeUInt16BE(1234, 16);
  b.writeUInt16BE(80, 18);
  b[20] = 6;
  b[21] = 4; // AUDIT
  b[22] = 2; // NEW_FLOW
  b[23] = 1;
  b.writeInt32LE(-181, 24);
  b[58] = 0x84; // denied | audited
  b[59] = 1; // not enforced
  b[60] = 3; // l4-only
  const ev = decodeVerdictEvent(b);
  assert.equal(ev.verdict, 'AUDIT');
  assert.equal(ev.dropReasonName, 'POLICY_DENY');
  assert.deepEqual(ev.egress, { outcome: 'denied', audited: true, match: 'l4-only', cookie: 0 });
  assert.equal(ev.ingress.outcome, 'not-enforced');
  assert.equal(ev.newFlow, true);
  assert.equal(ev.obsPoint, 'from-container');
});

test('proxy SO_MARK carries the identity above the 0xa00 magic', () => {
  assert.equal(proxyMark(1234), (1234 << 16) | 0x0a00);
});

test('writeIpv4 accepts exactly what isIPv4 accepts, and writes network order', () => {
  const b = Buffer.alloc(6);
  assert.equal(writeIpv4('10.200.0.53', b, 1), true);
  assert.deepEqual([...b.subarray(1, 5)], [10, 200, 0, 53]);
  for (const s of ['0.0.0.0', '255.255.255.255', '1.2.3.4', '10.0.0.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '', '.1.2.3', '1.2.3.', '1.2.3.4 ', 'a.b.c.d', '1.2.3.-4', '1.2.3.1000', '::1', '1.2.3.00']) {
    assert.equal(writeIpv4(s, Buffer.alloc(4), 0), isIPv4(s), s);
    if (!isIPv4(s)) assert.throws(() => ipv4Bytes(s), MapEncodeError);
  }
});
