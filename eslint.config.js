// Lint: typescript-eslint with type information (catches floating promises, unsafe any).
// Layering and import cycles are checked by dependency-cruiser (.dependency-cruiser.cjs).
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '**/pb/*.ts', 'bench-results/**'] },
  js.configs.recommended,
  {
    files: ['**/*.ts', '**/*.tsx', '**/*.cts'],
    extends: [...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', {
        // node:test's describe/it return promises the runner itself tracks.
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }]
      }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Empty handlers are deliberate where a best-effort dial may fail.
      '@typescript-eslint/no-empty-function': 'off',
      // Interface implementations (MemoryStore) are async without awaiting anything.
      '@typescript-eslint/require-await': 'off',
      'no-console': 'error'
    }
  },
  {
    files: ['test/**/*.ts'],
    rules: { 'no-console': 'off' }
  },
  {
    files: ['**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } }
  }
)
