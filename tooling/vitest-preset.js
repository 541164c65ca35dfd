// Shared vitest settings. Native addons (Dawn) need the forks pool; tests are seeded, so no
// retries. Test files share their worker process (isolate: false): a fresh process and module graph
// per file cost about an eighth of the suite's CPU time; every file creates and destroys its own
// backends, and none may depend on another having run (or not). Each package also writes a JSON
// report that tooling/scripts/test-summary.mjs adds up.
//
// LP_NATIVE_VECTOR_WIDTH only reaches llvmpipe/lavapipe, the software Vulkan driver that CI and
// GPU-less machines run the WebGPU suite on (hardware drivers ignore it). At 128 bits instead of the
// 256 Mesa picks on AVX2 hosts, LLVM compiles each kernel faster and the kernels run about as fast;
// most of a cold test run is kernel compilation (figures in docs/architecture.md, "Conformance").
// The tests use no subgroup operations, so the width changes no result. Set it yourself to override;
// turbo.json lists it (and this file) among the test task's inputs.
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
      env: { LP_NATIVE_VECTOR_WIDTH: process.env.LP_NATIVE_VECTOR_WIDTH ?? '128' },
      ...overrides,
    },
  };
}
