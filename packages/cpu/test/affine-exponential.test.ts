import { affineExponential, DTypeError, InvalidArgumentError, NonFiniteError, ShapeError } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

describe('affineExponential (public entry)', () => {
  const backend = createCpuBackend({ dtype: 'float64', threads: 1 });
  const B = 1;
  const T = 3;
  const M = () => backend.tensor(new Float64Array([-1, 0.5, 2]), [B, T, 1, 1, 1]);
  const c = () => backend.tensor(new Float64Array([1, 1, 1]), [B, T, 1]);

  it('gives the exact map of a scalar linear ODE: A = e^{m h}, b = φ1(M)·(c·scale·h) = (e^{M} − 1)/m · c for M = m·scale·h', async () => {
    const h = [0.1, 1, 0.25];
    const [Mt, ct] = [M(), c()];
    const { A, b } = await affineExponential(backend, Mt, ct, h, 1 / 0.1, 1);
    const [a, w] = [await backend.read(A), await backend.read(b)];
    [-1, 0.5, 2].forEach((m, t) => {
      const mh = (m / 0.1) * h[t]!;
      expect(a[t]).toBeCloseTo(Math.exp(mh), 10);
      expect(w[t]! / (Math.expm1(mh) / m)).toBeCloseTo(1, 12);
    });
    for (const t of [Mt, ct, A, b]) backend.dispose(t);
  });

  it('refuses NaN or ±Inf steps, a wrong number of steps, shapes that disagree and a bad block size (NaN maps before)', async () => {
    const [Mt, ct] = [M(), c()];
    await expect(affineExponential(backend, Mt, ct, [0.1, Number.NaN, 0.1], 1, 1)).rejects.toThrow(NonFiniteError);
    await expect(affineExponential(backend, Mt, ct, [0.1, 0.1], 1, 1)).rejects.toThrow(ShapeError);
    await expect(affineExponential(backend, Mt, ct, [0.1, 0.1, 0.1], Number.POSITIVE_INFINITY, 1)).rejects.toThrow(InvalidArgumentError);
    await expect(affineExponential(backend, Mt, ct, [0.1, 0.1, 0.1], 1, 0)).rejects.toThrow(InvalidArgumentError);
    await expect(affineExponential(backend, Mt, ct, [0.1, 0.1, 0.1], 1, 2)).rejects.toThrow(ShapeError);
    const c32 = backend.tensor(new Float32Array(3), [B, T, 1], 'float32');
    await expect(affineExponential(backend, Mt, c32, [0.1, 0.1, 0.1], 1, 1)).rejects.toThrow(DTypeError);
    for (const t of [Mt, ct, c32]) backend.dispose(t);
    expect(backend.liveTensors()).toBe(0);
  });
});
