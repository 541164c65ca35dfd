import { cells, deerWithGrad, type Tensor } from '@deerjs/core';
import { afterAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

describe('deerWithGrad keeps what its forward pass saw', () => {
  const backend = createCpuBackend({ dtype: 'float64', threads: 1 });
  afterAll(() => backend.destroy());

  it("the gradient uses the lengths of the forward pass, not what the caller's array holds later", async () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 3 });
    const params = cell.init({ seed: 1 });
    const [B, T, n] = [2, 6, 3];
    const x = backend.tensor(Float64Array.from({ length: B * T * 2 }, (_, i) => Math.sin(i)), [B, T, 2]);
    const dy = backend.tensor(new Float64Array(B * T * n).fill(1), [B, T, n]);
    const gradients = async (mutate: boolean) => {
      const lengths = [2, 6];
      const r = await deerWithGrad(backend, cell, params, x, { lengths });
      if (mutate) lengths[0] = 6; // a reused batch buffer
      const g = await r.vjp(dy);
      const out = await backend.read(g.params.Wb!);
      for (const t of Object.values(g.params) as Tensor[]) backend.dispose(t);
      backend.dispose(g.x);
      backend.dispose(g.h0);
      r.dispose();
      return out;
    };
    const kept = await gradients(false);
    const reused = await gradients(true);
    expect(Array.from(reused)).toEqual(Array.from(kept));
    backend.dispose(x);
    backend.dispose(dy);
    expect(backend.liveTensors()).toBe(0);
  });
});
