// SPDX-License-Identifier: Apache-2.0
/**
 * @module labels/selector
 *
 * Label selector matching (reference §1.5, §2.10, §2.11):
 * 1. a requirement on `any:key` matches a label with that key from any source;
 * 2. a requirement on `cidr:<prefix>` matches by containment: an identity whose cidr label is
 *    that prefix or a more specific one (Exists), or none such (DoesNotExist);
 * 3. otherwise source and key must both be equal;
 * 4. In/NotIn/Exists/DoesNotExist have Kubernetes meanings (NotIn matches when the key is absent).
 * All requirements are ANDed; a selector without requirements selects everything.
 */
import type { LabelRequirement, LabelSelector } from '../api/types.ts';
import { parsePrefix, prefixContains, type Prefix } from './cidr.ts';
import { LabelSet, splitSourcedKey, SOURCE_ANY, SOURCE_CIDR } from './labels.ts';

const prefixCache = new Map<string, Prefix | null>();

function cachedPrefix(key: string): Prefix | null {
  let p = prefixCache.get(key);
  if (p === undefined) {
    p = parsePrefix(key);
    prefixCache.set(key, p);
  }
  return p;
}

/** Values of the labels a requirement key refers to (rules 1 and 3). */
function valuesFor(labels: LabelSet, sourcedKey: string): string[] {
  const { source, key } = splitSourcedKey(sourcedKey);
  const found = labels.withKey(key);
  if (found.length === 0) return [];
  if (source === SOURCE_ANY) return found.map((l) => l.value);
  return found.filter((l) => l.source === source).map((l) => l.value);
}

/**
 * Tests one requirement against a label set.
 * @returns whether the labels satisfy it
 */
export function requirementMatches(req: LabelRequirement, labels: LabelSet): boolean {
  if (req.key.startsWith(`${SOURCE_CIDR}:`)) {
    // 2. containment
    const outer = cachedPrefix(req.key.slice(SOURCE_CIDR.length + 1));
    const contained = outer !== null && labels.cidrs.some((inner) => prefixContains(outer, inner));
    switch (req.operator) {
      case 'Exists':
      case 'In':
        return contained;
      case 'DoesNotExist':
      case 'NotIn':
        return !contained;
    }
  }
  const values = valuesFor(labels, req.key);
  // 4. Kubernetes operator meanings
  switch (req.operator) {
    case 'Exists':
      return values.length > 0;
    case 'DoesNotExist':
      return values.length === 0;
    case 'In':
      return values.some((v) => req.values.includes(v));
    case 'NotIn':
      return !values.some((v) => req.values.includes(v));
  }
}

/** True when every requirement matches (a wildcard selector matches everything). */
export function selectorMatches(sel: LabelSelector, labels: LabelSet): boolean {
  for (const r of sel.requirements) if (!requirementMatches(r, labels)) return false;
  return true;
}

/** True for the selector with no requirements. */
export function isWildcardSelector(sel: LabelSelector): boolean {
  return sel.requirements.length === 0;
}

/** Canonical text of a selector, used as the SelectorCache key and in explanations. */
export function selectorString(sel: LabelSelector): string {
  if (sel.requirements.length === 0) return '{}';
  return (
    '{' +
    sel.requirements
      .map((r) => {
        switch (r.operator) {
          case 'In':
            return r.values.length === 1 ? `${r.key}=${r.values[0]}` : `${r.key} in (${r.values.join(',')})`;
          case 'NotIn':
            return `${r.key} notin (${r.values.join(',')})`;
          case 'Exists':
            return r.key;
          case 'DoesNotExist':
            return `!${r.key}`;
        }
      })
      .join(', ') +
    '}'
  );
}

/** A selector that ANDs extra requirements into `sel` (fromRequires). */
export function withRequirements(sel: LabelSelector, extra: LabelRequirement[]): LabelSelector {
  if (extra.length === 0) return sel;
  const reqs = [...sel.requirements, ...extra];
  reqs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { requirements: reqs };
}
