// SPDX-License-Identifier: Apache-2.0
/**
 * @module policy/repository
 *
 * The set of sanitized rules, grouped by the object they came from and indexed by namespace
 * (reference §2.2: an identity is subject to the cluster-wide rules plus the rules of its own
 * namespace). Every change bumps the revision.
 */
import type { Rule } from '../api/types.ts';
import type { LabelSet } from '../labels/labels.ts';
import { selectorMatches } from '../labels/selector.ts';
import { NAMESPACE_LABEL } from '../identity/endpoint-labels.ts';

export class Repository {
  /** object ref → its rules */
  readonly #byObject = new Map<string, Rule[]>();
  /** namespace ('' = cluster-wide) → object refs */
  readonly #byNamespace = new Map<string, Set<string>>();
  #revision = 1;

  get revision(): number {
    return this.#revision;
  }

  /**
   * Replaces every rule of one object (policy ref). An empty list removes the object.
   * @returns the rules the object had before (for computing affected identities)
   */
  replaceObject(ref: string, rules: Rule[]): Rule[] {
    const old = this.#byObject.get(ref) ?? [];
    for (const r of old) this.#byNamespace.get(r.namespace ?? '')?.delete(ref);
    if (rules.length === 0) this.#byObject.delete(ref);
    else {
      this.#byObject.set(ref, rules);
      for (const r of rules) {
        const ns = r.namespace ?? '';
        let set = this.#byNamespace.get(ns);
        if (!set) this.#byNamespace.set(ns, (set = new Set()));
        set.add(ref);
      }
    }
    this.#revision++;
    return old;
  }

  objects(): IterableIterator<string> {
    return this.#byObject.keys();
  }

  rulesOf(ref: string): Rule[] {
    return this.#byObject.get(ref) ?? [];
  }

  *allRules(): IterableIterator<Rule> {
    for (const rules of this.#byObject.values()) yield* rules;
  }

  /**
   * Rules whose subject selects an identity, in a stable order (object ref, then position).
   * Must be given the identity's labels; reserved identities have no namespace and only see
   * cluster-wide rules.
   */
  rulesSelecting(labels: LabelSet): Rule[] {
    const ns = labels.get('k8s', NAMESPACE_LABEL);
    const refs = new Set<string>(this.#byNamespace.get('') ?? []);
    if (ns !== undefined) for (const r of this.#byNamespace.get(ns) ?? []) refs.add(r);
    const out: Rule[] = [];
    for (const ref of [...refs].sort()) {
      for (const rule of this.#byObject.get(ref) ?? []) {
        if ((rule.namespace === undefined || rule.namespace === ns) && selectorMatches(rule.subject, labels)) out.push(rule);
      }
    }
    return out;
  }
}
