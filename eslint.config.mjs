// Lint gate (scripts/test): typescript-eslint with type information, so that the promise rules
// (a floating promise in the service is an error nobody hears about) see what is a Promise.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'base-image/**', '.bench/**', 'examples/**'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    languageOptions: {
      parserOptions: { project: ['./tsconfig.check.json'], tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // The code base matches control characters on purpose (hostile file names, consoles).
      'no-control-regex': 'off',
      // `let x = default; try { x = … } catch { … }` is the house idiom for a fallback value.
      'no-useless-assignment': 'off',
      'prefer-const': ['error', { destructuring: 'all' }],
    },
  },
);
