// SPDX-License-Identifier: Apache-2.0
/**
 * @module errors
 *
 * The engine's error table (STYLE B6): every error Membrane throws on purpose is an
 * `XxxError extends EngineError` with a stable `code = 'MBR_ERR_…'`, and `retriable` when
 * retrying the same operation may succeed (watch and API errors).
 */
import type { Problem } from './api/types.ts';

/** Base class of every Membrane error. */
export class EngineError extends Error {
  /** Stable machine-readable code, `MBR_ERR_…`. */
  readonly code: string;
  /** True when retrying the same operation may succeed. */
  readonly retriable: boolean;

  /**
   * @param message what went wrong
   * @param code stable code, `MBR_ERR_…`
   * @param options `retriable` (default false) and `cause`
   */
  constructor(message: string, code = 'MBR_ERR_ENGINE', options: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EngineError';
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/**
 * A policy object (or a set of policy files) failed validation. `problems` holds every
 * error and warning, each naming file, line, object and field path (DESIGN §3.3).
 */
export class PolicyValidationError extends EngineError {
  /** The problems found; at least one has severity `error`. */
  readonly problems: readonly Problem[];

  /**
   * @param problems the problems found (errors first is not required)
   * @param message summary; defaults to the first error rendered as `file:line: Kind/name: field: message`
   */
  constructor(problems: readonly Problem[], message?: string) {
    const first = problems.find((p) => p.severity === 'error') ?? problems[0];
    const summary =
      message ??
      (first
        ? `${first.file}:${first.line}: ${[first.object, first.field, first.message].filter(Boolean).join(': ')}`
        : 'policy validation failed');
    const more = problems.filter((p) => p.severity === 'error').length - 1;
    super(more > 0 && message === undefined ? `${summary} (and ${more} more)` : summary, 'MBR_ERR_POLICY_VALIDATION');
    this.name = 'PolicyValidationError';
    this.problems = problems;
  }
}
