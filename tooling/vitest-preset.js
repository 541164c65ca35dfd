// Shared vitest settings: native addons (Dawn) need the forks pool; tests are seeded, so no retries.
/** @param {Record<string, unknown>} [overrides] */
export function deerVitestConfig(overrides = {}) {
  return {
    test: {
      pool: 'forks',
      include: ['test/**/*.test.ts'],
      testTimeout: 120_000,
      hookTimeout: 120_000,
      reporters: ['default'],
      ...overrides,
    },
  };
}
