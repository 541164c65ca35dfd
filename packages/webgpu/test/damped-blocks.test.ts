import { hostDampedScan, Rng } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

/**
 * The block damped scan (block parallel cyclic reduction in float32) at sizes past the conformance
 * cases, against core's block Thomas in float64 on the same float32 inputs.
 */
describe.skipIf(skip !== null)('the block damped scan on this adapter', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  const cases = [
    { B: 3, T: 300, n: 16, s: 8, lambda: [0.01, 1, 10], seed: 11 },
    { B: 2, T: 64, n: 32, s: 16, lambda: [0.01, 10], seed: 12 },
    { B: 2, T: 2, n: 6, s: 3, lambda: [0, 1], seed: 13 },
    // Dense with a large block: the per-row temporaries are s × s, far past private arrays.
    { B: 1, T: 37, n: 64, s: 64, lambda: [0.01], seed: 14 },
  ];
  for (const { B, T, n, s, lambda, seed } of cases) {
    it(`matches block Thomas at B = ${B}, T = ${T}, n = ${n}, s = ${s}`, async () => {
      const rng = new Rng(seed);
      // Entries in ±0.9/√s keep each block's norm near 1: the system is well posed at small λ.
      const r = 0.9 / Math.sqrt(s);
      const A = rng.uniformArray(B * T * n * s, -r, r).map(Math.fround);
      const c = rng.normalArray(B * T * n).map(Math.fround);
      const want = new Float64Array(B * T * n);
      hostDampedScan(A, c, lambda, want, B, T, n, s);

      const At = backend.tensor(A, [B, T, n / s, s, s]);
      const ct = backend.tensor(c, [B, T, n]);
      const before = backend.counters().dispatches;
      const y = backend.dampedScan({ A: At, c: ct, lambda });
      // A setup, three dispatches per round, a last factor and solve.
      expect(backend.counters().dispatches - before).toBe(1 + 3 * Math.ceil(Math.log2(T)) + 2);
      const got = await backend.read(y);
      for (const t of [At, ct, y]) backend.dispose(t);

      let scale = 1;
      for (const v of want) scale = Math.max(scale, Math.abs(v));
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / scale);
      // Measured on llvmpipe: about 2e-6 at worst.
      expect(worst).toBeLessThanOrEqual(2e-5);
    });
  }

  it('releases its scratch, and on failure its output too', async () => {
    const [B, T, n, s] = [2, 50, 8, 4];
    const rng = new Rng(15);
    const A = rng.uniformArray(B * T * n * s, -0.4, 0.4);
    const c = rng.normalArray(B * T * n);
    const At = backend.tensor(A, [B, T, n / s, s, s]);
    const ct = backend.tensor(c, [B, T, n]);
    const live = backend.liveBytes();
    const y = backend.dampedScan({ A: At, c: ct, lambda: [0.5, 2] });
    await backend.read(y);
    backend.dispose(y);
    expect(backend.liveBytes()).toBe(live);
    for (const t of [At, ct]) backend.dispose(t);

    // Bindings too small for the scratch planes (2s² + s floats per row), large enough for A.
    const small = await createWebGpuBackend({ simulatedBindingBytes: B * T * n * s * 4 * 1.5 });
    try {
      const As = small.tensor(A, [B, T, n / s, s, s]);
      const cs = small.tensor(c, [B, T, n]);
      const before = small.liveBytes();
      expect(() => small.dampedScan({ A: As, c: cs, lambda: [0.5, 2] })).toThrow(/largest buffer/);
      expect(small.liveBytes()).toBe(before);
    } finally {
      small.destroy();
    }
  });
});
