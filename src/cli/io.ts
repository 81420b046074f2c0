// SPDX-License-Identifier: Apache-2.0
/**
 * @module cli/io
 *
 * The output sink of a CLI command, so tests can capture stdout and stderr.
 */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

/** Writes to the real stdout/stderr. */
export const processIo: CliIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

/** An io that records everything, for tests. */
export function captureIo(): CliIo & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    out(t: string) {
      io.stdout += t;
    },
    err(t: string) {
      io.stderr += t;
    },
  };
  return io;
}
