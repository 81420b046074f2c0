// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/l7/http
 *
 * HTTP / gRPC rule semantics, each case citing reference/cilium-semantics.md.
 */

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import RE2 from 're2';

import {
  HttpRuleSet,
  L7HttpRuleError,
  grpcPath,
  parseGrpcPath,
  parseHeaderString,
  validateHttpRegex,
  type HttpRequestInfo,
} from '../../../src/l7/index.ts';

/** Builds a request; `headers` default to none. */
function req(method: string, path: string, extra: Partial<HttpRequestInfo> = {}): HttpRequestInfo {
  return { method, path, headers: [], ...extra };
}

describe('l7/http validateHttpRegex (§1.9, §9.1 RE2)', () => {
  it('§9.1: accepts ordinary RE2 patterns', () => {
    for (const p of ['/public(\\?.*)?', 'GET|POST', '/api/v[0-9]+/.*', '(?i)foo', '[[:alpha:]]+', '\\pL+', '']) {
      assert.equal(validateHttpRegex(p), null, p);
    }
  });

  it('§9.1: rejects look-ahead, look-behind and back-references (RE2 has none)', () => {
    for (const p of ['(?=a)b', '(?!a)b', '(?<=a)b', '(?<!a)b', '(a)\\1', '(?<n>a)\\k<n>']) {
      const err = validateHttpRegex(p);
      assert.ok(err !== null, p);
      assert.match(err, /invalid RE2 regex/);
    }
  });

  it('§9.1: rejects syntax errors', () => {
    for (const p of ['[', '(', 'a**', 'a{2,1}', 'a{1001}']) assert.ok(validateHttpRegex(p) !== null, p);
  });

  it('§9.1: rejects JavaScript-only escapes that Go regexp and Envoy RE2 reject (\\u, \\c)', () => {
    assert.ok(validateHttpRegex('\\u0041') !== null);
    assert.ok(validateHttpRegex('\\cA') !== null);
    assert.equal(validateHttpRegex('\\\\u'), null); // an escaped backslash followed by a literal u
  });

  it('§3: a pattern that is only valid once wrapped (a)|(b) is rejected, not reinterpreted', () => {
    assert.ok(validateHttpRegex('a)|(b') !== null);
    assert.throws(() => new HttpRuleSet([{ path: 'a)|(b' }]), L7HttpRuleError);
  });
});

describe('l7/http parseHeaderString (§3 headers string form)', () => {
  it('§3: "X-A" is a presence check', () => {
    assert.deepEqual(parseHeaderString('X-A'), { name: 'X-A' });
  });

  it('§3: "X-A: v" splits on the first space, strips the trailing colon, value is the rest', () => {
    assert.deepEqual(parseHeaderString('X-A: v'), { name: 'X-A', value: 'v' });
    assert.deepEqual(parseHeaderString('X-A: two words'), { name: 'X-A', value: 'two words' });
    assert.deepEqual(parseHeaderString('X-A:: v'), { name: 'X-A', value: 'v' }); // TrimRight removes every ':'
    assert.deepEqual(parseHeaderString('X-A v'), { name: 'X-A', value: 'v' });
    assert.deepEqual(parseHeaderString('X-A:  v'), { name: 'X-A', value: ' v' });
    assert.deepEqual(parseHeaderString('X-A: '), { name: 'X-A', value: '' });
  });

  it('§3: the presence form keeps the name as written (Cilium does not trim "X-A:")', () => {
    assert.deepEqual(parseHeaderString('X-A:'), { name: 'X-A:' });
    const rules = new HttpRuleSet([{ headers: [parseHeaderString('X-A:')] }]);
    assert.equal(rules.matches(req('GET', '/', { headers: [['X-A', '1']] })).allowed, false);
  });
});

describe('l7/http HttpRuleSet (§3)', () => {
  it('§3: an empty rule list allows everything', () => {
    const rules = new HttpRuleSet([]);
    assert.deepEqual(rules.matches(req('DELETE', '/anything')), { allowed: true, ruleIndex: null });
  });

  it('§3: a rule with no matchers allows everything', () => {
    const rules = new HttpRuleSet([{}]);
    assert.deepEqual(rules.matches(req('PUT', '/x?y=1')), { allowed: true, ruleIndex: 0 });
    // empty strings are "unset": Cilium only emits a matcher for a non-empty field
    const empty = new HttpRuleSet([{ method: '', path: '', host: '', headers: [] }]);
    assert.equal(empty.matches(req('PUT', '/x')).allowed, true);
  });

  it('§3: path is a full match against :path including the query: /public does not match /public?x=1', () => {
    const rules = new HttpRuleSet([{ path: '/public' }]);
    assert.equal(rules.matches(req('GET', '/public')).allowed, true);
    assert.equal(rules.matches(req('GET', '/public?x=1')).allowed, false);
    assert.equal(rules.matches(req('GET', '/public/a')).allowed, false);
    assert.equal(rules.matches(req('GET', '/x/public')).allowed, false);
  });

  it('§3: /public(\\?.*)? and /public.* are the documented ways to allow a query', () => {
    const rules = new HttpRuleSet([{ path: '/public(\\?.*)?' }]);
    assert.equal(rules.matches(req('GET', '/public?x=1')).allowed, true);
    assert.equal(rules.matches(req('GET', '/public')).allowed, true);
    assert.equal(rules.matches(req('GET', '/publicity')).allowed, false);
    assert.equal(new HttpRuleSet([{ path: '/public.*' }]).matches(req('GET', '/publicity')).allowed, true);
  });

  it('§3: anchoring applies to the whole alternation (GET|POST does not match GETX)', () => {
    const rules = new HttpRuleSet([{ method: 'GET|POST' }]);
    assert.equal(rules.matches(req('POST', '/')).allowed, true);
    assert.equal(rules.matches(req('GETX', '/')).allowed, false);
    assert.equal(rules.matches(req('XPOST', '/')).allowed, false);
  });

  it('§3: $ does not match before a trailing newline', () => {
    const rules = new HttpRuleSet([{ path: '/a' }]);
    assert.equal(rules.matches(req('GET', '/a\n')).allowed, false);
  });

  it('§3: method is case-sensitive: GET ≠ get', () => {
    const rules = new HttpRuleSet([{ method: 'GET' }]);
    assert.equal(rules.matches(req('GET', '/')).allowed, true);
    assert.equal(rules.matches(req('get', '/')).allowed, false);
  });

  it('§3: host is a regex: foo.bar.com also matches fooXbar.com unless dots are escaped', () => {
    const loose = new HttpRuleSet([{ host: 'foo.bar.com' }]);
    assert.equal(loose.matches(req('GET', '/', { host: 'foo.bar.com' })).allowed, true);
    assert.equal(loose.matches(req('GET', '/', { host: 'fooXbar.com' })).allowed, true);
    const strict = new HttpRuleSet([{ host: 'foo\\.bar\\.com' }]);
    assert.equal(strict.matches(req('GET', '/', { host: 'fooXbar.com' })).allowed, false);
  });

  it('§3: host matches the whole :authority, port included', () => {
    const rules = new HttpRuleSet([{ host: 'api\\.example\\.com' }]);
    assert.equal(rules.matches(req('GET', '/', { host: 'api.example.com:8080' })).allowed, false);
    const withPort = new HttpRuleSet([{ host: 'api\\.example\\.com(:[0-9]+)?' }]);
    assert.equal(withPort.matches(req('GET', '/', { host: 'api.example.com:8080' })).allowed, true);
  });

  it('§3 / DESIGN §3.2: a request without Host does not match a rule with host', () => {
    const rules = new HttpRuleSet([{ host: '.*' }]);
    assert.equal(rules.matches(req('GET', '/')).allowed, false);
    assert.equal(rules.matches(req('GET', '/', { host: '' })).allowed, true);
  });

  it('§3: header presence vs exact value', () => {
    const presence = new HttpRuleSet([{ headers: [{ name: 'X-Token' }] }]);
    assert.equal(presence.matches(req('GET', '/', { headers: [['X-Token', 'anything']] })).allowed, true);
    assert.equal(presence.matches(req('GET', '/', { headers: [['X-Token', '']] })).allowed, true);
    assert.equal(presence.matches(req('GET', '/', { headers: [['X-Other', 'x']] })).allowed, false);

    const exact = new HttpRuleSet([{ headers: [{ name: 'X-Token', value: 'secret' }] }]);
    assert.equal(exact.matches(req('GET', '/', { headers: [['X-Token', 'secret']] })).allowed, true);
    assert.equal(exact.matches(req('GET', '/', { headers: [['X-Token', 'secret2']] })).allowed, false);
    assert.equal(exact.matches(req('GET', '/', { headers: [['X-Token', 'SECRET']] })).allowed, false); // values case-sensitive
    assert.equal(exact.matches(req('GET', '/')).allowed, false);
  });

  it('§3: an exact value is a literal, not a regex', () => {
    const exact = new HttpRuleSet([{ headers: [{ name: 'X-A', value: 'a.c' }] }]);
    assert.equal(exact.matches(req('GET', '/', { headers: [['X-A', 'abc']] })).allowed, false);
    assert.equal(exact.matches(req('GET', '/', { headers: [['X-A', 'a.c']] })).allowed, true);
  });

  it('§3: header names are case-insensitive', () => {
    const rules = new HttpRuleSet([{ headers: [{ name: 'x-TOKEN', value: 'v' }] }]);
    assert.equal(rules.matches(req('GET', '/', { headers: [['X-Token', 'v']] })).allowed, true);
    assert.equal(rules.matches(req('GET', '/', { headers: [['x-token', 'v']] })).allowed, true);
  });

  it('§3 (Envoy header matching): a repeated header is compared as its values joined with ","', () => {
    const rules = new HttpRuleSet([{ headers: [{ name: 'X-A', value: '1' }] }]);
    const twice: Array<[string, string]> = [['X-A', '1'], ['x-a', '2']];
    assert.equal(rules.matches(req('GET', '/', { headers: twice })).allowed, false);
    const joined = new HttpRuleSet([{ headers: [{ name: 'X-A', value: '1,2' }] }]);
    assert.equal(joined.matches(req('GET', '/', { headers: twice })).allowed, true);
  });

  it('§3: pseudo-header matchers read the request line (:method, :path, :authority)', () => {
    const rules = new HttpRuleSet([{ headers: [{ name: ':authority', value: 'h' }, { name: ':method', value: 'GET' }] }]);
    assert.equal(rules.matches(req('GET', '/', { host: 'h' })).allowed, true);
    assert.equal(rules.matches(req('GET', '/')).allowed, false);
  });

  it('§3: matchers in one rule are AND-ed', () => {
    const rules = new HttpRuleSet([
      { method: 'GET', path: '/a', host: 'h', headers: [{ name: 'X-A' }, { name: 'X-B', value: 'b' }] },
    ]);
    const full = req('GET', '/a', { host: 'h', headers: [['X-A', ''], ['X-B', 'b']] });
    assert.equal(rules.matches(full).allowed, true);
    assert.equal(rules.matches({ ...full, method: 'POST' }).allowed, false);
    assert.equal(rules.matches({ ...full, path: '/b' }).allowed, false);
    assert.equal(rules.matches({ ...full, host: 'g' }).allowed, false);
    assert.equal(rules.matches({ ...full, headers: [['X-B', 'b']] }).allowed, false);
    assert.equal(rules.matches({ ...full, headers: [['X-A', ''], ['X-B', 'c']] }).allowed, false);
  });

  it('§3: rules are OR-ed and the first matching rule is reported', () => {
    const rules = new HttpRuleSet([{ method: 'GET', path: '/a' }, { method: 'POST' }, { path: '/a' }]);
    assert.deepEqual(rules.matches(req('GET', '/a')), { allowed: true, ruleIndex: 0 });
    assert.deepEqual(rules.matches(req('POST', '/zzz')), { allowed: true, ruleIndex: 1 });
    assert.deepEqual(rules.matches(req('PUT', '/a')), { allowed: true, ruleIndex: 2 });
    assert.deepEqual(rules.matches(req('PUT', '/b')), { allowed: false, ruleIndex: null });
  });

  it('§3: (?i) stays scoped inside the anchored wrapper', () => {
    const rules = new HttpRuleSet([{ method: '(?i)get' }]);
    assert.equal(rules.matches(req('GET', '/')).allowed, true);
    assert.equal(rules.matches(req('GETS', '/')).allowed, false);
  });

  it('§3: non-ASCII paths are matched as text', () => {
    const rules = new HttpRuleSet([{ path: '/caf.' }]);
    assert.equal(rules.matches(req('GET', '/café')).allowed, true);
  });

  it('§9.1 / DESIGN §2: a pathological regex on a long input completes at once (RE2, no backtracking)', () => {
    const rules = new HttpRuleSet([{ path: '(a+)+$' }, { path: '(a|aa)*c' }, { path: '(.*a){20}' }]);
    const evil = '/' + 'a'.repeat(100_000) + 'b';
    const t0 = process.hrtime.bigint();
    assert.equal(rules.matches(req('GET', evil)).allowed, false);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms < 1000, `took ${ms} ms`);
  });

  it('§3: an invalid regex in an unvalidated rule throws L7HttpRuleError naming the field', () => {
    assert.throws(() => new HttpRuleSet([{}, { method: '(?=x)' }]), (e: unknown) => {
      assert.ok(e instanceof L7HttpRuleError);
      assert.equal(e.code, 'MBR_ERR_L7_HTTP_RULE');
      assert.match(e.message, /http\[1\]\.method/);
      return true;
    });
  });
});

describe('l7/http matching shortcuts (literal patterns, literal prefixes)', () => {
  it('§3: every pattern decides every input exactly as an anchored RE2 match does', () => {
    const patterns = [
      'GET', 'GET|POST', '/healthz', '/api/v1/items', '/api/v1/items/[0-9]+', '/svc3/v[0-9]+/orders(/[0-9a-f-]+)?',
      '/a|/b', '/ab?', '/ab*c', '/ab{2}', '/ab+', '(?i)/Public', '/x(?i)abc', '/public(\\?.*)?', '/p\\.q', '[/]x', '[]a]b',
      '[^]a]b', '[[:alpha:]]+/x', '(/a|/b)c', '/a(b|c)|/d', 'a\\|b', '/static/.*\\.(css|js|png)', 'x{', '.*', '',
    ];
    const inputs = [
      'GET', 'POST', 'get', '/healthz', '/healthz/', '/api/v1/items', '/api/v1/items/42', '/api/v1/items/4x', '/svc3/v2/orders',
      '/svc3/v2/orders/ab-1', '/a', '/b', '/ac', '/bc', '/d', '/', '/abbc', '/ac', '/abb', '/abbb', '/public', '/PUBLIC', '/xABC',
      '/public?x=1', '/p.q', '/pxq', '/x', ']b', 'ab', 'bb', 'a|b', 'ab/x', '/static/a.css', 'x{', '',
    ];
    for (const p of patterns) {
      const rules = new HttpRuleSet([{ path: p }]);
      const re = new RE2(`^(?:${p})$`);
      for (const i of inputs) assert.equal(rules.matches(req('GET', i)).allowed, p === '' || re.test(i), `${p} on ${i}`);
    }
  });
});

describe('l7/http gRPC (§3 gRPC)', () => {
  it('§3: grpcPath builds /package.Service/Method', () => {
    assert.equal(grpcPath('cloudcity.DoorManager', 'GetName'), '/cloudcity.DoorManager/GetName');
  });

  it('§3: parseGrpcPath inverts grpcPath and rejects other paths', () => {
    assert.deepEqual(parseGrpcPath('/cloudcity.DoorManager/GetName'), { service: 'cloudcity.DoorManager', method: 'GetName' });
    for (const p of ['/', '/a', '/a/', '//m', '/a/b/c', '/a/b?x', 'a/b']) assert.equal(parseGrpcPath(p), null, p);
  });

  it('§3: gRPC rules are HTTP rules on POST /package.Service/Method', () => {
    const rules = new HttpRuleSet([{ method: 'POST', path: '/cloudcity.DoorManager/GetName' }]);
    assert.equal(rules.matches(req('POST', grpcPath('cloudcity.DoorManager', 'GetName'))).allowed, true);
    assert.equal(rules.matches(req('POST', grpcPath('cloudcity.DoorManager', 'SetAccessCode'))).allowed, false);
    assert.equal(rules.matches(req('GET', grpcPath('cloudcity.DoorManager', 'GetName'))).allowed, false);
  });
});
