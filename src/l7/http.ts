// SPDX-License-Identifier: Apache-2.0
/**
 * @module l7/http
 *
 * HTTP (and gRPC-as-HTTP) L7 rules: the matching that cilium-envoy performs for
 * `toPorts[].rules.http` (reference/cilium-semantics.md §3, §1.9).
 *
 * Cilium translates each `PortRuleHTTP` into Envoy header matchers
 * (`pkg/envoy/policy/envoy_l7_rules_translator.go` `getHTTPRule`):
 *   - `path`   → `:path`      SafeRegex (RE2, full-string match; `:path` includes the query string)
 *   - `method` → `:method`    SafeRegex (RE2, full-string match, case-sensitive)
 *   - `host`   → `:authority` SafeRegex (RE2, full-string match; may include `:port`)
 *   - `headers: ["X-A"]`      → presence match
 *   - `headers: ["X-A: v"]`   → exact value match
 *
 * Every regex here is evaluated with RE2 (npm `re2`), never with a backtracking
 * engine: the input is request data (DESIGN §2).
 *
 * Pure: no I/O and no imports from other project folders, so both the offline
 * `policy trace` and the proxy can use it.
 */

import RE2 from 're2';

/** A header matcher of an HTTP rule (reference §3, `headers`). */
export interface HeaderMatchSpec {
  /** Header name; compared case-insensitively. */
  name: string;
  /** Exact (case-sensitive) value; `undefined` means "header must be present". */
  value?: string;
}

/**
 * One HTTP rule, as in the CRD's `PortRuleHTTP` (reference §1.9). `method`,
 * `path` and `host` are RE2 regexes matched against the whole field. An unset or
 * empty field places no constraint (Cilium only emits a matcher for `!= ""`).
 */
export interface HttpRuleSpec {
  method?: string;
  path?: string;
  host?: string;
  headers?: HeaderMatchSpec[];
}

/** The parts of an HTTP request that rules look at. */
export interface HttpRequestInfo {
  /** Request method exactly as sent (`GET`, `POST`, …). */
  method: string;
  /** Request target incl. the query string (`/a/b?x=1`), i.e. HTTP/2 `:path`. */
  path: string;
  /** Host header / `:authority`, may include `:port`. Absent ⇒ a rule with `host` does not match. */
  host?: string;
  /** Request headers in wire order; names in any case; repeated names allowed. */
  headers: Array<[string, string]>;
}

/** Result of {@link HttpRuleSet.matches}. */
export interface HttpMatchResult {
  /** True when some rule matched (or the rule list is empty). */
  allowed: boolean;
  /** Index of the first matching rule; `null` when denied or when the rule list is empty. */
  ruleIndex: number | null;
}

/** Error thrown when an HTTP rule that was not validated cannot be compiled. */
export class L7HttpRuleError extends Error {
  readonly code = 'MBR_ERR_L7_HTTP_RULE';

  /**
   * @param message what is wrong, naming the rule index and field
   */
  constructor(message: string) {
    super(message);
    this.name = 'L7HttpRuleError';
  }
}

/**
 * Finds escapes that npm `re2` translates from JavaScript syntax but that Go's
 * `regexp` (Cilium's validation) and Envoy's RE2 reject: `\uXXXX` and `\cX`.
 */
function findJsOnlyEscape(pattern: string): string | null {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] !== '\\') continue;
    const next = pattern[i + 1];
    if (next === 'u' || next === 'c') return `\\${next}`;
    i++; // skip the escaped character, so `\\u` is a literal backslash then `u`
  }
  return null;
}

/**
 * Checks that `pattern` is a valid RE2 regular expression as Cilium accepts it
 * for `path`, `method` and `host` (reference §1.9, §9.1). Look-around and
 * back-references are rejected, as RE2 has neither.
 *
 * @param pattern the regex source from the policy
 * @returns an error message, or `null` when the pattern is valid
 * @example
 * validateHttpRegex('/public(\\?.*)?'); // null
 * validateHttpRegex('(?=a)');           // 'invalid RE2 regex "(?=a)": invalid perl operator: (?='
 */
export function validateHttpRegex(pattern: string): string | null {
  const jsOnly = findJsOnlyEscape(pattern);
  if (jsOnly !== null) {
    return `invalid RE2 regex ${JSON.stringify(pattern)}: invalid escape sequence: ${jsOnly}`;
  }
  try {
    // Compile the bare pattern first: a pattern such as `a)|(b` would compile
    // once wrapped in `^(?:…)$` and silently change meaning.
    new RE2(pattern);
  } catch (err) {
    return `invalid RE2 regex ${JSON.stringify(pattern)}: ${(err as Error).message}`;
  }
  return null;
}

/** RE2 metacharacters: a pattern without any of them matches only itself. */
const META = new Set(['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$']);

/**
 * The literal text every full match of `pattern` starts with ('' when unsure). Cut before the
 * first metacharacter (and one character earlier when that is a quantifier, which may repeat
 * or drop the character before it); '' when the pattern has an alternation outside any group
 * (`/a|/b`), a POSIX class or anything the scan cannot follow.
 */
function literalPrefix(pattern: string): string {
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') i++;
    else if (c === '[') {
      if (pattern.startsWith('[:', i + 1)) return '';
      let j = i + 1;
      if (pattern[j] === '^') j++;
      if (pattern[j] === ']') j++;
      while (j < pattern.length && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
      if (j >= pattern.length) return '';
      i = j;
    } else if (c === '(') depth++;
    else if (c === ')') {
      if (--depth < 0) return '';
    } else if (c === '|' && depth === 0) return '';
  }
  if (depth !== 0) return '';
  let n = 0;
  while (n < pattern.length && !META.has(pattern[n]!)) n++;
  if (n < pattern.length && n > 0 && '*?{+'.includes(pattern[n]!)) n--;
  return pattern.slice(0, n);
}

/**
 * A policy regex compiled for an anchored full-string match (Envoy SafeRegex semantics,
 * reference §3), with two shortcuts that give the same answers without calling into RE2:
 * 1. a pattern without metacharacters (`GET`, `/healthz`) matches exactly itself;
 * 2. a string that does not start with the pattern's literal prefix cannot match.
 */
class FullMatch {
  readonly #literal: string | null;
  readonly #prefix: string;
  readonly #re: RE2;

  constructor(pattern: string) {
    this.#re = new RE2(`^(?:${pattern})$`);
    let literal = true;
    for (const c of pattern) if (META.has(c)) literal = false;
    this.#literal = literal ? pattern : null;
    this.#prefix = literal ? pattern : literalPrefix(pattern);
  }

  test(s: string): boolean {
    // 1.
    if (this.#literal !== null) return s === this.#literal;
    // 2.
    if (this.#prefix !== '' && !s.startsWith(this.#prefix)) return false;
    return this.#re.test(s);
  }
}

/**
 * Compiles a policy regex for an anchored full-string match (Envoy SafeRegex
 * semantics, reference §3).
 */
function compileFullMatch(pattern: string, where: string): FullMatch {
  const err = validateHttpRegex(pattern);
  if (err !== null) throw new L7HttpRuleError(`${where}: ${err}`);
  return new FullMatch(pattern);
}

/**
 * Parses the Cilium string form of a header rule, `headers: ["X-A"]` or
 * `headers: ["X-A: v"]`, exactly as `getHTTPRule` does (reference §3):
 *   1. split on the first space;
 *   2. two parts ⇒ name = first part with trailing `:` removed, value = the rest (exact match,
 *      may be empty or start with spaces);
 *   3. one part ⇒ presence check on that name, taken as is (Cilium does not strip a trailing
 *      `:` here, so `"X-A:"` names a header that can never exist and never matches).
 *
 * @param s the header string from the policy
 * @returns the header matcher
 * @example
 * parseHeaderString('X-Token: abc'); // { name: 'X-Token', value: 'abc' }
 * parseHeaderString('X-Token');      // { name: 'X-Token' }
 */
export function parseHeaderString(s: string): HeaderMatchSpec {
  const sp = s.indexOf(' ');
  if (sp >= 0) {
    // 2. name: value
    let end = sp;
    while (end > 0 && s[end - 1] === ':') end--; // strings.TrimRight(name, ":")
    return { name: s.slice(0, end), value: s.slice(sp + 1) };
  }
  // 3. presence only
  return { name: s };
}

/**
 * The path of a gRPC call: gRPC runs over HTTP/2 as `POST /<package>.<Service>/<Method>`
 * (reference §3), so gRPC rules are HTTP rules with `method: POST` and this path.
 *
 * @param service fully qualified service name, e.g. `cloudcity.DoorManager`
 * @param method RPC method name, e.g. `GetName`
 * @returns the `:path`, e.g. `/cloudcity.DoorManager/GetName`
 * @example
 * grpcPath('cloudcity.DoorManager', 'GetName'); // '/cloudcity.DoorManager/GetName'
 */
export function grpcPath(service: string, method: string): string {
  return `/${service}/${method}`;
}

/**
 * Splits a gRPC `:path` into service and method (the inverse of {@link grpcPath}).
 *
 * @param path an HTTP/2 `:path`
 * @returns `{ service, method }`, or `null` when the path is not `/<service>/<method>`
 * @example
 * parseGrpcPath('/cloudcity.DoorManager/GetName'); // { service: 'cloudcity.DoorManager', method: 'GetName' }
 */
export function parseGrpcPath(path: string): { service: string; method: string } | null {
  // Plain string operations: `path` is request data (no backtracking regex on it).
  if (!path.startsWith('/') || path.includes('?')) return null;
  const slash = path.indexOf('/', 1);
  if (slash <= 1 || slash === path.length - 1 || path.indexOf('/', slash + 1) !== -1) return null;
  return { service: path.slice(1, slash), method: path.slice(slash + 1) };
}

/** A compiled header matcher. */
interface CompiledHeader {
  /** Lower-cased name. */
  name: string;
  value: string | undefined;
}

/** A compiled rule: absent fields place no constraint. */
interface CompiledRule {
  method: FullMatch | null;
  path: FullMatch | null;
  host: FullMatch | null;
  headers: CompiledHeader[];
}

/**
 * Returns all values of a header joined with `,`, or `null` when absent. This is
 * Envoy's `HeaderUtility::getAllOfHeaderAsString`, used by its header matchers, so
 * an exact match against a repeated header compares the joined value.
 * The HTTP/2 pseudo-headers `:method`, `:path` and `:authority` come from the
 * request's own fields.
 */
function headerValue(req: HttpRequestInfo, lowerName: string): string | null {
  switch (lowerName) {
    case ':method':
      return req.method;
    case ':path':
      return req.path;
    case ':authority':
      return req.host ?? null;
  }
  let out: string | null = null;
  for (const [n, v] of req.headers) {
    if (n.toLowerCase() !== lowerName) continue;
    out = out === null ? v : `${out},${v}`;
  }
  return out;
}

/**
 * The HTTP rules of one port (for one peer), compiled once.
 *
 * Decision rules (reference §3, cilium-envoy `network_policy.cc`):
 *   1. An empty rule list allows every request.
 *   2. A rule matches iff all of its matchers match (AND); a rule with no matchers matches all.
 *   3. The set allows iff any rule matches (OR); the first matching rule is reported.
 *
 * @example
 * const rules = new HttpRuleSet([{ method: 'GET', path: '/public(\\?.*)?' }]);
 * rules.matches({ method: 'GET', path: '/public?x=1', headers: [] }); // { allowed: true, ruleIndex: 0 }
 */
export class HttpRuleSet {
  readonly rules: readonly HttpRuleSpec[];
  private readonly compiled: CompiledRule[];

  /**
   * Compiles every rule. Rules are expected to be validated already
   * (`validateHttpRegex`); an invalid regex throws {@link L7HttpRuleError}.
   *
   * @param rules the `http` rules of a port, in policy order
   */
  constructor(rules: readonly HttpRuleSpec[]) {
    this.rules = rules;
    this.compiled = rules.map((r, i) => ({
      method: r.method ? compileFullMatch(r.method, `http[${i}].method`) : null,
      path: r.path ? compileFullMatch(r.path, `http[${i}].path`) : null,
      host: r.host ? compileFullMatch(r.host, `http[${i}].host`) : null,
      headers: (r.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), value: h.value })),
    }));
  }

  /**
   * Decides a request.
   *
   * @param req the request
   * @returns whether it is allowed and the index of the first matching rule
   */
  matches(req: HttpRequestInfo): HttpMatchResult {
    // 1. no rules: allow all
    if (this.compiled.length === 0) return { allowed: true, ruleIndex: null };
    // 3. OR over rules, first match wins
    for (let i = 0; i < this.compiled.length; i++) {
      if (ruleMatches(this.compiled[i]!, req)) return { allowed: true, ruleIndex: i };
    }
    return { allowed: false, ruleIndex: null };
  }
}

/** 2. AND over the matchers of one rule. */
function ruleMatches(rule: CompiledRule, req: HttpRequestInfo): boolean {
  if (rule.method !== null && !rule.method.test(req.method)) return false;
  if (rule.path !== null && !rule.path.test(req.path)) return false;
  if (rule.host !== null) {
    // No Host / :authority: the `:authority` matcher has nothing to match (DESIGN §3.2).
    if (req.host === undefined || !rule.host.test(req.host)) return false;
  }
  for (const h of rule.headers) {
    const v = headerValue(req, h.name);
    if (v === null) return false; // presence and exact both need the header
    if (h.value !== undefined && v !== h.value) return false;
  }
  return true;
}
