// SPDX-License-Identifier: Apache-2.0
/**
 * @module l7/dns
 *
 * DNS names and patterns: `toPorts[].rules.dns` (the DNS proxy's allow-list) and
 * `toFQDNs` selectors share the same `matchName` / `matchPattern` semantics
 * (reference/cilium-semantics.md §5.2, §1.7; Cilium `pkg/fqdn/matchpattern/matchpattern.go`,
 * `pkg/fqdn/dns/dns.go`).
 *
 * Pattern translation rules (numbered; the code below repeats the numbers):
 *   1. Query names are lower-cased and get a trailing dot; `matchName`s and patterns are also
 *      trimmed. Matching is therefore case-insensitive and trailing-dot agnostic.
 *   2. A pattern made only of `*` with at most one trailing `.` (`*`, `**`, `*.`, `***.`) matches
 *      every name. DNS proxy: any query name at all (`.*`); toFQDNs selector: any name made of
 *      DNS characters, or the root `.` (`(^([-a-zA-Z0-9_]+[.])+$)|(^[.]$)`).
 *   3. A leading run of two or more `*` followed by `.` (`**.example.com`) stands for one or more
 *      whole labels: `a.example.com` and `a.b.example.com`, never `example.com` (DESIGN §2).
 *   4. Any other run of `*` is `[-a-zA-Z0-9_]*`: zero or more DNS characters inside one label, never
 *      crossing a dot. `*.example.com` matches `a.example.com`, not `example.com` nor
 *      `a.b.example.com`; `*example.com` matches `example.com` and `subexample.com` but not
 *      `www.example.com` (§9.2: the code wins over the `fqdn.go` field comment).
 *   5. `.` is a literal dot; every other allowed character is literal.
 *
 * Patterns are evaluated with RE2 (npm `re2`), as they run on query names (request data).
 * Pure: no I/O, no imports from other project folders.
 */

import RE2 from 're2';

/** `matchName` / `matchPattern` pair, as in `FQDNSelector` and `PortRuleDNS` (reference §1.7). */
export interface DnsRuleSpec {
  matchName?: string;
  matchPattern?: string;
}

/** Result of {@link DnsRuleSet.matches}. */
export interface DnsMatchResult {
  /** True when some rule matched (or the rule list is empty). */
  allowed: boolean;
  /** Index of the first matching rule; `null` when denied or when the rule list is empty. */
  ruleIndex: number | null;
}

/** A compiled `matchPattern`. */
export interface DnsPatternMatcher {
  /** Canonical pattern (rule 1; wildcard-only patterns become `*`). */
  readonly pattern: string;
  /** The anchored regex source (Go/RE2 syntax) the pattern was translated to. */
  readonly regex: string;
  /**
   * @param name a DNS name in any case, with or without the trailing dot
   * @returns whether the pattern matches the name
   */
  matches(name: string): boolean;
}

/** Options of {@link compileDnsPattern}. */
export interface DnsPatternOptions {
  /**
   * `true` for a toFQDNs selector, `false` (default) for a DNS proxy rule. Only changes the
   * match-all case (rule 2): a selector's `*` needs a name made of DNS characters.
   */
  selector?: boolean;
}

/** Maximum length of `matchName` / `matchPattern` (reference §1.7). */
export const MAX_FQDN_LENGTH = 255;

/** One DNS name character (Cilium `allowedDNSCharsREGroup`). */
const DNS_CHAR = '[-a-zA-Z0-9_]';

/** Rule 3: one or more whole labels, each followed by a dot (Cilium `dnsWildcardREGroup`). */
const MULTI_LABEL = `(${DNS_CHAR}+([.]${DNS_CHAR}+)*)[.]`;

/** Rule 2, toFQDNs form. */
const SELECTOR_MATCH_ALL = `(^(${DNS_CHAR}+[.])+$)|(^[.]$)`;

/** Rule 2, DNS proxy form (Cilium `MatchAllUnAnchoredPattern`, anchored). */
const PROXY_MATCH_ALL = '^(?:.*)$';

/**
 * Normalises a DNS name the way the DNS proxy does before matching:
 * `strings.ToLower(dns.FQDN(name))` (reference §5.2).
 *
 * @param name a DNS name
 * @returns the name lower-cased with exactly one trailing dot added if it had none
 * @example
 * normalizeDnsName('WWW.Example.COM'); // 'www.example.com.'
 */
export function normalizeDnsName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower : `${lower}.`;
}

/**
 * Tests the CRD pattern `^([-a-zA-Z0-9_]+[.]?)+$` (plus `*` when `allowStar`) without a
 * backtracking regex: non-empty, allowed characters only, no leading dot, no empty label.
 */
function hasDnsShape(s: string, allowStar: boolean): boolean {
  if (s.length === 0 || s[0] === '.') return false;
  let prevDot = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const isDot = c === 0x2e;
    const ok =
      isDot ||
      (c >= 0x61 && c <= 0x7a) || // a-z
      (c >= 0x41 && c <= 0x5a) || // A-Z
      (c >= 0x30 && c <= 0x39) || // 0-9
      c === 0x2d || // -
      c === 0x5f || // _
      (allowStar && c === 0x2a); // *
    if (!ok) return false;
    if (isDot && prevDot) return false;
    prevDot = isDot;
  }
  return true;
}

/**
 * Validates a `matchName` (reference §1.7): at most 255 characters matching
 * `^([-a-zA-Z0-9_]+[.]?)+$`.
 *
 * @param s the `matchName` value
 * @returns an error message, or `null` when valid
 * @example
 * validateMatchName('api.example.com'); // null
 */
export function validateMatchName(s: string): string | null {
  if (s.length > MAX_FQDN_LENGTH) {
    return `matchName must be at most ${MAX_FQDN_LENGTH} characters long (got ${s.length})`;
  }
  if (!hasDnsShape(s, false)) {
    return `invalid matchName ${JSON.stringify(s)}: must match ^([-a-zA-Z0-9_]+[.]?)+$ (letters, digits, "-", "_", labels separated by single dots)`;
  }
  return null;
}

/**
 * Validates a `matchPattern` (reference §1.7, §5.2): at most 255 characters matching
 * `^([-a-zA-Z0-9_*]+[.]?)+$`. `**.` multi-label prefixes are allowed (DESIGN §2).
 *
 * @param s the `matchPattern` value
 * @returns an error message, or `null` when valid
 * @example
 * validateMatchPattern('**.example.com'); // null
 */
export function validateMatchPattern(s: string): string | null {
  if (s.length > MAX_FQDN_LENGTH) {
    return `matchPattern must be at most ${MAX_FQDN_LENGTH} characters long (got ${s.length})`;
  }
  if (!hasDnsShape(s, true)) {
    return `invalid matchPattern ${JSON.stringify(s)}: must match ^([-a-zA-Z0-9_*]+[.]?)+$ (letters, digits, "-", "_", "*", labels separated by single dots)`;
  }
  return null;
}

/**
 * Validates a whole selector / DNS rule: at most one of `matchName` and `matchPattern`
 * (Cilium `FQDNSelector.sanitize`), each valid.
 *
 * @param sel the selector
 * @returns an error message, or `null` when valid
 */
export function validateFqdnSelector(sel: DnsRuleSpec): string | null {
  if (sel.matchName && sel.matchPattern) {
    return 'only one of matchName or matchPattern is allowed';
  }
  if (sel.matchName) return validateMatchName(sel.matchName);
  if (sel.matchPattern) return validateMatchPattern(sel.matchPattern);
  return null;
}

/** Rule 2: only `*` characters, optionally one trailing dot (Cilium `isDNSWildcard`). */
function isWildcardOnly(p: string): boolean {
  const body = p.endsWith('.') ? p.slice(0, -1) : p;
  return body.length > 0 && /^\*+$/.test(body);
}

/**
 * Canonical text of a pattern: rule 1 (trim, lower-case, trailing dot), rule 2 (wildcard-only ⇒
 * `*`), rule 3 (leading `**…*.` ⇒ `**.`), rule 4 (other runs of `*` ⇒ `*`). Patterns with the same
 * canonical text match the same names.
 */
function canonicalPattern(pattern: string): string {
  const p = pattern.trim().toLowerCase();
  // 2. match-all
  if (isWildcardOnly(p)) return '*';
  let head = '';
  let rest = p;
  // 3. leading multi-label wildcard
  const lead = /^\*{2,}\./.exec(rest);
  if (lead !== null) {
    head = '**.';
    rest = rest.slice(lead[0].length);
  }
  // 4. collapse runs of *
  rest = rest.replace(/\*+/g, '*');
  return normalizeDnsName(head + rest);
}

/** Translates a canonical, non-wildcard-only pattern to an anchored regex (rules 3–5). */
function patternToRegex(canonical: string): string {
  let out = '^';
  let rest = canonical;
  if (rest.startsWith('**.')) {
    // 3. one or more whole labels
    out += MULTI_LABEL;
    rest = rest.slice(3);
  }
  for (const c of rest) {
    if (c === '.') out += '[.]'; // 5. literal dot
    else if (c === '*') out += `${DNS_CHAR}*`; // 4. within one label
    else out += c; // 5. [-a-z0-9_] are literal in a regex
  }
  return `${out}$`;
}

/**
 * Compiles a `matchPattern` into a matcher (reference §5.2; rules 1–5 of this module).
 * The pattern should be valid ({@link validateMatchPattern}); characters outside the allowed set
 * throw, because they would be regex syntax.
 *
 * @param pattern the `matchPattern` value
 * @param options `{ selector: true }` for toFQDNs selectors (rule 2)
 * @returns the matcher
 * @example
 * compileDnsPattern('*.example.com').matches('a.example.com');   // true
 * compileDnsPattern('*.example.com').matches('a.b.example.com'); // false
 * compileDnsPattern('**.example.com').matches('a.b.example.com'); // true
 */
export function compileDnsPattern(pattern: string, options: DnsPatternOptions = {}): DnsPatternMatcher {
  const canonical = canonicalPattern(pattern);
  if (!/^[-a-z0-9_.*]+$/.test(canonical)) {
    throw new Error(`invalid matchPattern ${JSON.stringify(pattern)}: only letters, digits, "-", "_", "." and "*" are allowed`);
  }
  let regex: string;
  if (canonical === '*') {
    // 2. match-all
    regex = options.selector ? SELECTOR_MATCH_ALL : PROXY_MATCH_ALL;
  } else {
    regex = patternToRegex(canonical);
  }
  if (regex === PROXY_MATCH_ALL) {
    // 2. the proxy's match-all accepts any query name at all, whatever its characters
    return { pattern: canonical, regex, matches: () => true };
  }
  const re = new RE2(regex);
  return {
    pattern: canonical,
    regex,
    matches: (name: string) => re.test(normalizeDnsName(name)),
  };
}

/** A compiled DNS rule / selector. */
interface CompiledSelector {
  /** Normalised `matchName`, if any. */
  name: string | null;
  pattern: DnsPatternMatcher | null;
}

function compileSelector(sel: DnsRuleSpec, selector: boolean): CompiledSelector {
  return {
    name: sel.matchName ? normalizeDnsName(sel.matchName.trim()) : null,
    pattern: sel.matchPattern ? compileDnsPattern(sel.matchPattern, { selector }) : null,
  };
}

/**
 * A selector matches a normalised name iff its `matchName` equals it or its `matchPattern`
 * matches it. A selector with neither field matches nothing (Cilium's `GeneratePattern` adds no
 * alternative for it); one with both (rejected by validation) matches either, as `GeneratePattern`
 * ORs them.
 */
function selectorMatches(c: CompiledSelector, normalized: string): boolean {
  if (c.name !== null && c.name === normalized) return true;
  return c.pattern !== null && c.pattern.matches(normalized);
}

/**
 * The DNS rules of one port (for one peer), compiled once: the DNS proxy's allow-list
 * (reference §5.1–§5.3).
 *
 * Decision rules:
 *   1. An empty rule list allows every query: a plain L3/L4 rule on port 53 whose traffic is
 *      redirected anyway is match-all (§5.1).
 *   2. Otherwise the query is allowed iff some rule's `matchName` / `matchPattern` matches the
 *      normalised name of the first question (§5.2; the caller passes that name, qtype is not
 *      policed). The first matching rule is reported.
 *
 * @example
 * const dns = new DnsRuleSet([{ matchPattern: '*.example.com' }]);
 * dns.matches('A.EXAMPLE.COM'); // { allowed: true, ruleIndex: 0 }
 */
export class DnsRuleSet {
  readonly rules: readonly DnsRuleSpec[];
  private readonly compiled: CompiledSelector[];

  /**
   * @param rules the `dns` rules of a port, in policy order (validated)
   */
  constructor(rules: readonly DnsRuleSpec[]) {
    this.rules = rules;
    this.compiled = rules.map((r) => compileSelector(r, false));
  }

  /**
   * Decides a DNS query.
   *
   * @param qname the first question's name, any case, with or without trailing dot
   * @returns whether it is allowed and the index of the first matching rule
   */
  matches(qname: string): DnsMatchResult {
    // 1. no rules: allow all
    if (this.compiled.length === 0) return { allowed: true, ruleIndex: null };
    // 2. first matching rule
    const n = normalizeDnsName(qname);
    for (let i = 0; i < this.compiled.length; i++) {
      if (selectorMatches(this.compiled[i]!, n)) return { allowed: true, ruleIndex: i };
    }
    return { allowed: false, ruleIndex: null };
  }
}

/** Compiled selectors, keyed by {@link fqdnSelectorKey}: selectors are few and names are many. */
const selectorCache = new Map<string, CompiledSelector>();
const SELECTOR_CACHE_MAX = 4096;

/**
 * Whether a toFQDNs selector selects a DNS name (reference §5.2, §5.4): the same matching as
 * DNS rules, except that a wildcard-only pattern (`*`) selects every name made of DNS
 * characters (rule 2).
 *
 * @param sel the `toFQDNs` entry
 * @param name a DNS name (any case, trailing dot optional)
 * @returns whether the selector selects the name
 * @example
 * fqdnSelectorMatches({ matchPattern: '*' }, 'anything.example.'); // true
 * fqdnSelectorMatches({ matchName: 'Example.com' }, 'example.com.'); // true
 */
export function fqdnSelectorMatches(sel: DnsRuleSpec, name: string): boolean {
  const key = fqdnSelectorKey(sel);
  let c = selectorCache.get(key);
  if (c === undefined) {
    c = compileSelector(sel, true);
    if (selectorCache.size >= SELECTOR_CACHE_MAX) selectorCache.clear();
    selectorCache.set(key, c);
  }
  return selectorMatches(c, normalizeDnsName(name));
}

/**
 * {@link fqdnSelectorMatches} compiled once for one selector, for callers matching many names
 * against a fixed selector list (the engine and the DNS proxy, per learned name).
 *
 * @param sel the `toFQDNs` entry
 * @returns a function telling whether the selector selects a name (any case, trailing dot optional)
 */
export function fqdnSelectorMatcher(sel: DnsRuleSpec): (name: string) => boolean {
  const c = compileSelector(sel, true);
  return (name) => selectorMatches(c, normalizeDnsName(name));
}

/**
 * Canonical text of a toFQDNs selector, used as its identity label: `matchName:<name>` or
 * `matchPattern:<pattern>`, lower-cased with a trailing dot (rule 1). Wildcard-only patterns
 * become `matchPattern:*`, and runs of `*` are collapsed (rules 2–4), so selectors that select
 * the same names get the same key.
 *
 * @param sel the selector
 * @returns the key, e.g. `matchName:example.com.` or `matchPattern:*.example.com.`
 * @example
 * fqdnSelectorKey({ matchPattern: '*.Example.com' }); // 'matchPattern:*.example.com.'
 */
export function fqdnSelectorKey(sel: DnsRuleSpec): string {
  const parts: string[] = [];
  if (sel.matchName) parts.push(`matchName:${normalizeDnsName(sel.matchName.trim())}`);
  if (sel.matchPattern) parts.push(`matchPattern:${canonicalPattern(sel.matchPattern)}`);
  return parts.join('|');
}
