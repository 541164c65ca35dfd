// Shared vitest settings. Native addons (Dawn) need the forks pool; tests are seeded, so no
// retries. Each package also writes a JSON report that tooling/scripts/test-summary.mjs adds up.
/** @param {Record<string, unknown>} [overrides] */
export function deerVitestConfig(overrides = {}) {
  return {
    test: {
      pool: 'forks',
      include: ['test/**/*.test.ts'],
      testTimeout: 120_000,
      hookTimeout: 120_000,
      reporters: ['default', 'json'],
      outputFile: { json: '.vitest-results.json' },
      ...overrides,
    },
  };
}
