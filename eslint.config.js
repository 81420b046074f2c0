// SPDX-License-Identifier: Apache-2.0
// Lint config. Module boundaries of shared/STYLE.md B2 are enforced with no-restricted-imports.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const forbid = (...groups) => ({
  'no-restricted-imports': ['error', { patterns: groups.map((g) => ({ group: [g], message: 'module boundary (STYLE.md B2)' })) }],
});

export default tseslint.config(
  { ignores: ['node_modules/**', 'build/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  { files: ['src/api/**'], rules: forbid('**/labels/**', '**/identity/**', '**/policy/**', '**/datapath/**', '**/k8s/**', '**/endpoint/**', '**/proxy/**') },
  { files: ['src/labels/**', 'src/identity/**'], rules: forbid('**/policy/**', '**/datapath/**', '**/k8s/**', '**/proxy/**', '**/endpoint/**') },
  { files: ['src/policy/**'], rules: forbid('**/datapath/**', '**/k8s/**', '**/proxy/**', '**/endpoint/**', 'node:fs', 'node:net', 'node:fs/*', 'fs', 'net', 'koffi') },
  { files: ['src/l7/**'], rules: forbid('**/policy/**', '**/datapath/**', '**/k8s/**', '**/proxy/**', 'node:fs', 'node:net', 'koffi') },
  { files: ['src/datapath/**'], rules: forbid('**/k8s/**', '**/proxy/**') },
  { files: ['proxy/**'], rules: forbid('**/src/policy/**', '**/src/k8s/**') },
  { files: ['scripts/**/*.mjs', 'bin/**', 'eslint.config.js'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
);
