// Shared vitest settings. Native addons (Dawn) need the forks pool; tests are seeded, so no
// retries. Test files share their worker process (isolate: false): a fresh process and module graph
// per file cost about an eighth of the suite's CPU time; every file creates and destroys its own
// backends, and none may depend on another having run (or not). Each package also writes a JSON
// report that tooling/scripts/test-summary.mjs adds up.
/** @param {Record<string, unknown>} [overrides] */
export function deerVitestConfig(overrides = {}) {
  return {
    test: {
      pool: 'forks',
      isolate: false,
      include: ['test/**/*.test.ts'],
      testTimeout: 120_000,
      hookTimeout: 120_000,
      reporters: ['default', 'json'],
      outputFile: { json: '.vitest-results.json' },
      ...overrides,
    },
  };
}
