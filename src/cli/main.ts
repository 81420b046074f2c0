// SPDX-License-Identifier: Apache-2.0
export async function main(argv: string[]): Promise<number> {
  process.stdout.write(`membrane ${argv.join(' ')}\n`);
  return 0;
}
