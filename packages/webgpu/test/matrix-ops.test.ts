import { ShapeError } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

// Edge cases of the ODE matrix ops beyond the conformance suite's ops/block-matrix.
describe.skipIf(skip !== null)('webgpu matrix ops', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  const maxAbsOf = async (values: number[]) => {
    const t = backend.tensor(values, [values.length]);
    try {
      return await backend.maxAbs(t);
    } finally {
      backend.dispose(t);
    }
  };

  it('maxAbs: the largest magnitude, infinities, and 0 for no entries', async () => {
    expect(await maxAbsOf([1, -3.5, 2])).toBe(3.5);
    expect(await maxAbsOf([0, Number.NEGATIVE_INFINITY, 1])).toBe(Number.POSITIVE_INFINITY);
    expect(await maxAbsOf([-0])).toBe(0);
    expect(await maxAbsOf([])).toBe(0);
  });

  it('maxAbs: NaN anywhere, in any workgroup, is the result', async () => {
    const big = Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    for (const at of [0, 63, 64, 777, 999]) {
      const v = [...big];
      v[at] = Number.NaN;
      expect(await maxAbsOf(v)).toBeNaN();
    }
    const withInf = [...big];
    withInf[5] = Number.POSITIVE_INFINITY;
    withInf[900] = Number.NaN;
    expect(await maxAbsOf(withInf)).toBeNaN();
  });

  it('scaleTime factors by time only, and checks their count', async () => {
    const [B, T, k] = [2, 3, 2];
    const x = backend.tensor(
      Array.from({ length: B * T * k }, (_, i) => i + 1),
      [B, T, k],
    );
    const y = backend.scaleTime(x, [1, 0, -2], 0.5);
    expect(Array.from(await backend.read(y))).toEqual([0.5, 1, 0, 0, -5, -6, 3.5, 4, 0, 0, -11, -12]);
    expect(() => backend.scaleTime(x, [1, 2], 1)).toThrow(ShapeError);
    backend.dispose(y);
    backend.dispose(x);
  });

  it('rejects operands that are not whole blocks or do not match', () => {
    const a = backend.zeros([2, 2, 2]);
    const v = backend.zeros([3]);
    expect(() => backend.blockMatmul(a, v, 2)).toThrow(ShapeError);
    expect(() => backend.blockMatvec(a, v, 2)).toThrow(ShapeError);
    expect(() => backend.addIdentity(v, 2, 1)).toThrow(ShapeError);
    backend.dispose(a);
    backend.dispose(v);
    expect(backend.liveTensors()).toBe(0);
  });
});
