// ESLint flat config: typescript-eslint's type-checked rules over the SDK and its tests.
import js from '@eslint/js'
import { defineConfig } from 'eslint/config'
import tseslint from 'typescript-eslint'

export default defineConfig(
  {
    // Build outputs and the files `napi build` generates.
    ignores: ['dist/**', 'docs/**', 'target/**', 'npm/**', 'index.js', 'index.d.ts'],
  },
  {
    files: ['src/**/*.ts', '__test__/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        // src/ is typed by tsconfig.json, __test__/ by __test__/tsconfig.json.
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
)
