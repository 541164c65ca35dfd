import { cells, deer, deerWithGrad, sequential } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

// Core found the longest row by spreading `lengths` into Math.max: a RangeError (stack overflow)
// from about 1.3e5 rows, on every backend. Here on the fast cpu backend against its own
// sequential evaluation, which never spread them.
describe('padded batches of more rows than a call takes arguments', () => {
  it('deer and deerWithGrad with lengths over 150,000 rows', async () => {
    const backend = createCpuBackend({ dtype: 'float64', threads: 1 });
    const rows = 150_000;
    const cell = cells.elman({ inputSize: 1, hiddenSize: 1 });
    const params = cell.init({ seed: 3 });
    const x = backend.tensor(Float64Array.from({ length: rows * 2 }, (_, i) => Math.sin(i)), [rows, 2, 1]);
    const lengths = Array.from({ length: rows }, (_, b) => b % 3);
    try {
      const ref = await sequential(backend, cell, params, x, { lengths });
      const want = await backend.read(ref.y);
      backend.dispose(ref.y);
      const r = await deer(backend, cell, params, x, { lengths });
      expect(r.stats.converged).toBe(true);
      const got = await backend.read(r.y);
      backend.dispose(r.y);
      expect(got.every((v, i) => Math.abs(v - want[i]!) <= 1e-12)).toBe(true);
      const g = await deerWithGrad(backend, cell, params, x, { lengths });
      expect(g.stats.converged).toBe(true);
      g.dispose();
      expect(backend.liveTensors()).toBe(1);
    } finally {
      backend.dispose(x);
      await backend.destroy();
    }
  });
});
