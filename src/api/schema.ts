// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/schema
 *
 * Strict structural checking shared by the validators: a problem collector that knows the
 * object, the file and the line of every field path, and typed readers that report wrong
 * types and unknown fields (kubectl strict field validation) instead of throwing.
 *
 * Field paths are rendered like `spec.ingress[0].toPorts[0].ports[1].port`; a map key that is
 * not a plain identifier is quoted: `spec.endpointSelector.matchLabels["k8s:app"]`.
 */
import type { Problem } from './types.ts';

/** Plain-identifier keys are joined with `.`, others are quoted in brackets. */
const SIMPLE_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/**
 * Appends a map key or list index to a field path.
 *
 * @param parent the parent path (`''` for the document root)
 * @param key a map key or a list index
 * @returns e.g. `spec.ingress[0]`
 */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (SIMPLE_KEY.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${JSON.stringify(key)}]`;
}

/** Returns the line of a field path, or undefined when unknown. */
export type LineLookup = (path: string) => number | undefined;

/** Collects the problems of one object. */
export class Ctx {
  readonly problems: Problem[] = [];

  /**
   * @param file the file the object came from
   * @param object `Kind/name`, or undefined before the object is identified
   * @param lineOf line of a field path (paths relative to the object)
   * @param fallbackLine line used when no ancestor of a path has a known line (the object start)
   */
  constructor(
    readonly file: string,
    public object: string | undefined,
    private readonly lineOf: LineLookup,
    readonly fallbackLine: number,
  ) {}

  /** The line of `path` or of its nearest ancestor with a known line. */
  line(path: string): number {
    let p = path;
    for (;;) {
      const l = this.lineOf(p);
      if (l !== undefined) return l;
      if (p === '') return this.fallbackLine;
      p = parentPath(p);
    }
  }

  /** Records an error on a field. */
  error(path: string, message: string): void {
    this.add(path, message, 'error');
  }

  /** Records a warning on a field. */
  warning(path: string, message: string): void {
    this.add(path, message, 'warning');
  }

  /** Number of errors recorded so far (to tell whether a sub-check failed). */
  get errorCount(): number {
    return this.problems.filter((p) => p.severity === 'error').length;
  }

  private add(path: string, message: string, severity: Problem['severity']): void {
    this.problems.push({
      file: this.file,
      line: this.line(path),
      ...(this.object !== undefined ? { object: this.object } : {}),
      ...(path !== '' ? { field: path } : {}),
      message,
      severity,
    });
  }
}

/** The parent of a field path (`a.b[0]` → `a.b`, `a.b` → `a`, `a` → ``). */
export function parentPath(path: string): string {
  if (path.endsWith(']')) {
    // `[3]` or `["key"]`: find the opening bracket of the last segment
    let i = path.length - 1;
    if (path[i - 1] === '"') {
      i = path.lastIndexOf('["', i - 2);
    } else {
      i = path.lastIndexOf('[');
    }
    return i <= 0 ? '' : path.slice(0, i);
  }
  const dot = path.lastIndexOf('.');
  const br = path.lastIndexOf(']');
  if (dot > br) return path.slice(0, dot);
  return br >= 0 ? path.slice(0, br + 1) : '';
}

/** A value that is absent: undefined or YAML/JSON null (Kubernetes treats null as unset). */
export function isAbsent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

/** Plain object (YAML mapping), not an array. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Name of a value's type for messages. */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'object';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/**
 * Field table of an object type. `true` = supported field; a string = a known field that
 * Membrane does not support, with the reason (DESIGN §2: an error naming the field).
 */
export type FieldTable = Readonly<Record<string, true | string>>;

/**
 * Reads an object value, checking its fields against a table.
 *
 * @returns the object, or undefined (after reporting) when `v` is not an object
 */
export function readObject(ctx: Ctx, v: unknown, path: string, fields?: FieldTable): Record<string, unknown> | undefined {
  if (!isPlainObject(v)) {
    ctx.error(path, `must be an object, got ${typeName(v)}`);
    return undefined;
  }
  if (fields) checkFields(ctx, v, path, fields);
  return v;
}

/** Reports unknown and unsupported fields of an object. */
export function checkFields(ctx: Ctx, o: Record<string, unknown>, path: string, fields: FieldTable): void {
  for (const key of Object.keys(o)) {
    const spec = Object.prototype.hasOwnProperty.call(fields, key) ? fields[key] : undefined;
    const p = childPath(path, key);
    if (spec === undefined) {
      const close = Object.keys(fields).find((k) => k.toLowerCase() === key.toLowerCase());
      ctx.error(p, `unknown field ${JSON.stringify(key)}${close ? ` (did you mean ${JSON.stringify(close)}?)` : ''}`);
    } else if (spec !== true && !isAbsent(o[key])) {
      ctx.error(p, spec);
    }
  }
}

/** Reads a list; absent → undefined without a problem. */
export function readList(ctx: Ctx, v: unknown, path: string): unknown[] | undefined {
  if (isAbsent(v)) return undefined;
  if (!Array.isArray(v)) {
    ctx.error(path, `must be a list, got ${typeName(v)}`);
    return undefined;
  }
  return v;
}

/** Reads a string; absent → undefined without a problem. */
export function readString(ctx: Ctx, v: unknown, path: string): string | undefined {
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'string') {
    ctx.error(path, `must be a string, got ${typeName(v)}${typeof v === 'number' || typeof v === 'boolean' ? ` (quote it: "${String(v)}")` : ''}`);
    return undefined;
  }
  return v;
}

/** Reads a boolean; absent → undefined without a problem. */
export function readBool(ctx: Ctx, v: unknown, path: string): boolean | undefined {
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'boolean') {
    ctx.error(path, `must be a boolean, got ${typeName(v)}`);
    return undefined;
  }
  return v;
}

/** Reads an integer; absent → undefined without a problem. */
export function readInt(ctx: Ctx, v: unknown, path: string): number | undefined {
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    ctx.error(path, `must be an integer, got ${typeName(v)}`);
    return undefined;
  }
  return v;
}

/** Reads a list of strings; absent → undefined. Non-string items are reported and skipped. */
export function readStringList(ctx: Ctx, v: unknown, path: string): string[] | undefined {
  const list = readList(ctx, v, path);
  if (!list) return undefined;
  const out: string[] = [];
  list.forEach((item, i) => {
    const s = readString(ctx, item, childPath(path, i));
    if (s !== undefined) out.push(s);
    else if (isAbsent(item)) ctx.error(childPath(path, i), 'must be a string, got null');
  });
  return out;
}
