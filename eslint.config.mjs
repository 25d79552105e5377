// Lint: typescript-eslint's recommended rules over src, test, bench and scripts (type-aware rules
// are left out: they would double the CI time for little). `npm run lint`; part of `npm test`.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', 'prebuilds/**', 'fuzz/**', 'native/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      // Tests and the Kubernetes object plumbing read untyped JSON on purpose.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
);
