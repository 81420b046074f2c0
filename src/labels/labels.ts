// SPDX-License-Identifier: Apache-2.0
/**
 * @module labels/labels
 *
 * Labels with sources (`k8s:app=x`, `reserved:world`, `cidr:10.0.0.0/8`, `fqdn:…`) and label
 * sets, as identities carry them (reference §1.5, §2.1, §2.10). Pure.
 */
import { parsePrefix, type Prefix } from './cidr.ts';

export const SOURCE_ANY = 'any';
export const SOURCE_K8S = 'k8s';
export const SOURCE_RESERVED = 'reserved';
export const SOURCE_CIDR = 'cidr';
export const SOURCE_FQDN = 'fqdn';

export interface Label {
  source: string;
  key: string;
  value: string;
}

/** Splits `source:key` into its parts; a key without a known source gets `any`. */
export function splitSourcedKey(sourcedKey: string): { source: string; key: string } {
  const i = sourcedKey.indexOf(':');
  if (i > 0 && /^[a-zA-Z0-9_-]+$/.test(sourcedKey.slice(0, i))) {
    return { source: sourcedKey.slice(0, i), key: sourcedKey.slice(i + 1) };
  }
  return { source: SOURCE_ANY, key: sourcedKey };
}

/** Parses `source:key=value` (value optional). */
export function parseLabel(text: string): Label {
  const { source, key: rest } = splitSourcedKey(text);
  // cidr keys contain no '='; IPv6 prefixes contain ':' which splitSourcedKey keeps in the key.
  const eq = rest.indexOf('=');
  if (eq < 0) return { source, key: rest, value: '' };
  return { source, key: rest.slice(0, eq), value: rest.slice(eq + 1) };
}

/** Renders a label as `source:key=value`, or `source:key` when the value is empty. */
export function formatLabel(l: Label): string {
  return l.value === '' ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

/**
 * An immutable set of labels, at most one per `source:key`. Identities are allocated per
 * distinct LabelSet (its `id` string).
 */
export class LabelSet {
  readonly labels: readonly Label[];
  /** Canonical string: sorted `source:key=value` joined by ';'. */
  readonly id: string;
  /** key (without source) → labels with that key. */
  readonly #byKey = new Map<string, Label[]>();
  /** Parsed `cidr:` labels. */
  readonly cidrs: Prefix[] = [];

  constructor(labels: Iterable<Label>) {
    const bySourced = new Map<string, Label>();
    for (const l of labels) bySourced.set(`${l.source}:${l.key}`, l);
    const sorted = [...bySourced.values()].sort((a, b) => {
      const ka = `${a.source}:${a.key}`;
      const kb = `${b.source}:${b.key}`;
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    this.labels = sorted;
    this.id = sorted.map(formatLabel).join(';');
    for (const l of sorted) {
      const list = this.#byKey.get(l.key);
      if (list) list.push(l);
      else this.#byKey.set(l.key, [l]);
      if (l.source === SOURCE_CIDR) {
        const p = parsePrefix(l.key);
        if (p) this.cidrs.push(p);
      }
    }
  }

  /** Builds a set from `source:key=value` strings. */
  static parse(texts: Iterable<string>): LabelSet {
    return new LabelSet([...texts].map(parseLabel));
  }

  /** Labels with this key (any source). */
  withKey(key: string): readonly Label[] {
    return this.#byKey.get(key) ?? [];
  }

  /** The value of `source:key`, or undefined. */
  get(source: string, key: string): string | undefined {
    return this.withKey(key).find((l) => l.source === source)?.value;
  }

  has(source: string, key: string): boolean {
    return this.get(source, key) !== undefined;
  }

  /** Labels as sorted strings. */
  toStrings(): string[] {
    return this.labels.map(formatLabel);
  }
}
