// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/l7/dns
 *
 * DNS name / pattern semantics, each case citing reference/cilium-semantics.md.
 */

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  DnsRuleSet,
  compileDnsPattern,
  fqdnSelectorKey,
  fqdnSelectorMatches,
  normalizeDnsName,
  validateFqdnSelector,
  validateMatchName,
  validateMatchPattern,
} from '../../../src/l7/index.ts';

/** Asserts which names a pattern matches and which it does not. */
function expectPattern(pattern: string, yes: string[], no: string[]): void {
  const m = compileDnsPattern(pattern);
  for (const n of yes) assert.equal(m.matches(n), true, `${pattern} should match ${n}`);
  for (const n of no) assert.equal(m.matches(n), false, `${pattern} should not match ${n}`);
}

describe('l7/dns normalizeDnsName (§5.2)', () => {
  it('§5.2: lower-cases and adds the trailing dot once', () => {
    assert.equal(normalizeDnsName('WWW.Example.COM'), 'www.example.com.');
    assert.equal(normalizeDnsName('example.com.'), 'example.com.');
    assert.equal(normalizeDnsName(''), '.');
  });
});

describe('l7/dns validation (§1.7)', () => {
  it('§1.7: matchName accepts DNS names, with or without trailing dot', () => {
    for (const n of ['example.com', 'example.com.', 'a_b-c.example', 'localhost', 'x']) assert.equal(validateMatchName(n), null, n);
  });

  it('§1.7: matchName rejects *, empty labels, leading dots, other characters and >255 chars', () => {
    for (const n of ['*.example.com', 'a..b', '.a', '', 'a b', 'a/b', 'ex%ample.com', 'é.com']) {
      assert.ok(validateMatchName(n) !== null, n);
    }
    assert.ok(validateMatchName('a'.repeat(256)) !== null);
    assert.equal(validateMatchName('a'.repeat(255)), null);
  });

  it('§1.7: matchPattern accepts *, **., *. and in-label stars', () => {
    for (const p of ['*', '**', '*.', '*.example.com', '**.example.com', 'sub*.example.com', '*example.com', 'a*b*c.d']) {
      assert.equal(validateMatchPattern(p), null, p);
    }
  });

  it('§1.7: matchPattern rejects regex characters, empty labels and >255 chars', () => {
    for (const p of ['[a-z].com', 'a+.com', 'a{1}', 'a,b', '.com', 'a..com', '', '(a)', 'a?']) {
      assert.ok(validateMatchPattern(p) !== null, p);
    }
    assert.ok(validateMatchPattern('*'.repeat(256)) !== null);
  });

  it('§1.7: validation of a pathological name completes at once (no backtracking)', () => {
    const t0 = Date.now();
    assert.ok(validateMatchName('a'.repeat(250) + '!') !== null);
    assert.ok(validateMatchPattern('a*'.repeat(120) + '!') !== null);
    assert.ok(Date.now() - t0 < 200);
  });

  it('§1.7: a selector may not set both matchName and matchPattern', () => {
    assert.ok(validateFqdnSelector({ matchName: 'a.com', matchPattern: '*.a.com' }) !== null);
    assert.equal(validateFqdnSelector({ matchName: 'a.com' }), null);
    assert.equal(validateFqdnSelector({ matchPattern: '*.a.com' }), null);
    assert.ok(validateFqdnSelector({ matchName: 'a b' }) !== null);
  });
});

describe('l7/dns compileDnsPattern (§5.2)', () => {
  it('§5.2: * alone (also **, *., ***.) matches every name', () => {
    for (const p of ['*', '**', '*.', '***.', ' * ']) {
      expectPattern(p, ['example.com', 'a.b.c.d.', 'X', '.', 'weird name!.'], []);
      assert.equal(compileDnsPattern(p).pattern, '*');
    }
  });

  it('§5.2: * inside a label never crosses a dot: *.example.com', () => {
    expectPattern('*.example.com', ['a.example.com', 'a.example.com.', 'A-B_c.EXAMPLE.com'], [
      'example.com',
      'a.b.example.com',
      'aexample.com',
      'a.example.com.evil',
      'a.example.org',
    ]);
  });

  it('§5.2 / §9.2: *example.com matches example.com and subexample.com, not www.example.com (code, not the fqdn.go comment)', () => {
    expectPattern('*example.com', ['example.com', 'subexample.com', 'x-example.com'], ['www.example.com', 'a.subexample.com']);
  });

  it('§5.2: sub*.example.com matches sub.example.com and subdomain.example.com', () => {
    expectPattern('sub*.example.com', ['sub.example.com', 'subdomain.example.com', 'SUB1.example.com.'], [
      'su.example.com',
      'xsub.example.com',
      'sub.a.example.com',
      'a.sub.example.com',
    ]);
  });

  it('§5.2 / DESIGN §2: **. means one or more whole labels', () => {
    expectPattern('**.example.com', ['a.example.com', 'a.b.example.com', 'a.b.c.example.com.', 'A.B.EXAMPLE.COM'], [
      'example.com',
      '.example.com',
      'aexample.com',
      'a.example.org',
    ]);
    // more stars are the same; a trailing * after **. is an in-label wildcard
    expectPattern('***.example.com', ['a.b.example.com'], ['example.com']);
    expectPattern('**.*x.com', ['a.b.x.com', 'a.yx.com'], ['x.com', 'a.b.c']);
  });

  it('§5.2: a ** run that is not a leading "**." label is an in-label wildcard', () => {
    expectPattern('a**b.com', ['ab.com', 'axyzb.com'], ['a.b.com']);
    expectPattern('**foo.com', ['foo.com', 'xfoo.com'], ['x.foo.com']);
    expectPattern('a.**.com', ['a.x.com', 'a..com'], ['a.x.y.com']);
  });

  it('§5.2: names and patterns are case-insensitive and trailing-dot agnostic', () => {
    expectPattern('Example.COM.', ['example.com', 'EXAMPLE.COM.', 'eXample.com'], ['example.co']);
    assert.equal(compileDnsPattern('*.Example.com').pattern, '*.example.com.');
    assert.equal(compileDnsPattern('*.example.com').regex, '^[-a-zA-Z0-9_]*[.]example[.]com[.]$');
  });

  it('§5.2: dots are literal and DNS characters - and _ are allowed in *', () => {
    expectPattern('a.b', ['a.b'], ['axb']);
    expectPattern('*.svc', ['my_svc-1.svc'], ['my svc.svc', 'a/b.svc']);
  });

  it('§5.2: characters outside the allowed set throw (they would be regex syntax)', () => {
    assert.throws(() => compileDnsPattern('a+.com'));
    assert.throws(() => compileDnsPattern('(a|b).com'));
  });

  it('§5.2: matching a long hostile name is linear (RE2)', () => {
    const m = compileDnsPattern('**.*a*a*a*a*.example.com');
    const t0 = Date.now();
    assert.equal(m.matches('a.'.repeat(100) + 'a'.repeat(5000) + '!.example.com'), false);
    assert.ok(Date.now() - t0 < 500);
  });
});

describe('l7/dns DnsRuleSet (§5.1, §5.2)', () => {
  it('§5.1: an empty rule list allows every query (redirected plain L3/L4 rule on port 53)', () => {
    assert.deepEqual(new DnsRuleSet([]).matches('anything.example'), { allowed: true, ruleIndex: null });
  });

  it('§5.2: matchName is an exact, case-insensitive, trailing-dot agnostic match', () => {
    const rules = new DnsRuleSet([{ matchName: 'api.Example.com' }]);
    assert.deepEqual(rules.matches('API.EXAMPLE.COM'), { allowed: true, ruleIndex: 0 });
    assert.equal(rules.matches('api.example.com.').allowed, true);
    assert.equal(rules.matches('www.api.example.com').allowed, false);
    assert.equal(rules.matches('apixexample.com').allowed, false); // dots are not wildcards
  });

  it('§5.2: uppercase query and trailing dot against a pattern', () => {
    const rules = new DnsRuleSet([{ matchPattern: '*.cilium.io' }]);
    assert.equal(rules.matches('DOCS.CILIUM.IO.').allowed, true);
    assert.equal(rules.matches('cilium.io').allowed, false);
  });

  it('§5.2: rules are OR-ed; the first matching rule is reported', () => {
    const rules = new DnsRuleSet([{ matchName: 'a.com' }, { matchPattern: '*.b.com' }, { matchPattern: '*' }]);
    assert.deepEqual(rules.matches('a.com'), { allowed: true, ruleIndex: 0 });
    assert.deepEqual(rules.matches('x.b.com'), { allowed: true, ruleIndex: 1 });
    assert.deepEqual(rules.matches('other.org'), { allowed: true, ruleIndex: 2 });
    const narrow = new DnsRuleSet([{ matchName: 'a.com' }, { matchPattern: '*.b.com' }]);
    assert.deepEqual(narrow.matches('other.org'), { allowed: false, ruleIndex: null });
  });

  it('§5.1: matchPattern "*" in a DNS rule allows any query name, even one with unusual characters', () => {
    const rules = new DnsRuleSet([{ matchPattern: '*' }]);
    assert.equal(rules.matches('strange name\\032.example.').allowed, true);
  });

  it('§5.2: a rule with neither field matches nothing (GeneratePattern adds no alternative)', () => {
    const rules = new DnsRuleSet([{}]);
    assert.equal(rules.matches('example.com').allowed, false);
  });
});

describe('l7/dns toFQDNs selectors (§5.2, §5.4)', () => {
  it('§5.2: fqdnSelectorMatches uses the same matching as DNS rules', () => {
    assert.equal(fqdnSelectorMatches({ matchName: 'Example.com' }, 'example.com.'), true);
    assert.equal(fqdnSelectorMatches({ matchName: 'example.com' }, 'www.example.com'), false);
    assert.equal(fqdnSelectorMatches({ matchPattern: '*.example.com' }, 'A.example.com'), true);
    assert.equal(fqdnSelectorMatches({ matchPattern: '*.example.com' }, 'a.b.example.com'), false);
    assert.equal(fqdnSelectorMatches({ matchPattern: '**.example.com' }, 'a.b.example.com'), true);
    assert.equal(fqdnSelectorMatches({}, 'example.com'), false);
  });

  it('§5.2: * alone selects every name made of DNS characters (toFQDNs regex), and the root', () => {
    for (const p of ['*', '**', '*.']) {
      assert.equal(fqdnSelectorMatches({ matchPattern: p }, 'anything.example.'), true);
      assert.equal(fqdnSelectorMatches({ matchPattern: p }, 'UPPER.case.io'), true);
      assert.equal(fqdnSelectorMatches({ matchPattern: p }, '.'), true);
      assert.equal(fqdnSelectorMatches({ matchPattern: p }, 'bad name.example.'), false);
    }
    assert.equal(compileDnsPattern('*', { selector: true }).regex, '(^([-a-zA-Z0-9_]+[.])+$)|(^[.]$)');
  });

  it('§1.7: fqdnSelectorKey is canonical: lower-case, trailing dot', () => {
    assert.equal(fqdnSelectorKey({ matchName: 'Example.COM' }), 'matchName:example.com.');
    assert.equal(fqdnSelectorKey({ matchName: 'example.com.' }), 'matchName:example.com.');
    assert.equal(fqdnSelectorKey({ matchPattern: '*.Example.com' }), 'matchPattern:*.example.com.');
    assert.equal(fqdnSelectorKey({ matchPattern: '**.example.com.' }), 'matchPattern:**.example.com.');
  });

  it('§5.2: selectors that select the same names share a key', () => {
    assert.equal(fqdnSelectorKey({ matchPattern: '*' }), 'matchPattern:*');
    assert.equal(fqdnSelectorKey({ matchPattern: '**' }), 'matchPattern:*');
    assert.equal(fqdnSelectorKey({ matchPattern: '*.' }), 'matchPattern:*');
    assert.equal(fqdnSelectorKey({ matchPattern: '****.example.com' }), 'matchPattern:**.example.com.');
    assert.equal(fqdnSelectorKey({ matchPattern: 'a**b.com' }), 'matchPattern:a*b.com.');
    assert.notEqual(fqdnSelectorKey({ matchPattern: '*.example.com' }), fqdnSelectorKey({ matchPattern: '**.example.com' }));
    assert.notEqual(fqdnSelectorKey({ matchName: 'example.com' }), fqdnSelectorKey({ matchPattern: 'example.com' }));
  });
});
