import { Rng } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

/**
 * The vectorised elementwise kernels (vec4s, strided loops; tensors' buffers padded to whole
 * vec4s): sizes that are not multiples of 4, and sizes past one stride of invocations.
 */
describe.skipIf(skip !== null)('webgpu vectorised elementwise kernels', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  for (const [B, T, n] of [
    [1, 1, 1],
    [1, 3, 1],
    [1, 5, 1],
    [3, 7, 3],
    [2, 70001, 1],
    [5, 301, 7],
  ] as const) {
    it(`[${B}, ${T}, ${n}]: add, sub and maskTime match the host`, async () => {
      const rng = new Rng(B * T * n);
      const size = B * T * n;
      const a = Float32Array.from(rng.normalArray(size));
      const b = Float32Array.from(rng.normalArray(size));
      const ta = backend.tensor(a, [B, T, n]);
      const tb = backend.tensor(b, [B, T, n]);
      const lengths = Array.from({ length: B }, (_, r) => (r % 2 === 0 ? T : Math.floor(T / 2)));
      const full = new Array<number>(B).fill(T);
      const outs = [backend.add(ta, tb), backend.sub(ta, tb), backend.maskTime(ta, full), backend.maskTime(ta, lengths)];
      try {
        const [sum, diff, kept, masked] = await Promise.all(outs.map((t) => backend.read(t)));
        // Exact equality everywhere; the first few mismatches are listed (one expect per entry
        // would cost seconds at 140 000 entries).
        const wrong: string[] = [];
        for (let i = 0; i < size && wrong.length < 5; i++) {
          const t = Math.floor(i / n) % T;
          const r = Math.floor(i / (n * T));
          const want = [Math.fround(a[i]! + b[i]!), Math.fround(a[i]! - b[i]!), a[i]!, t < lengths[r]! ? a[i]! : 0];
          const got = [sum![i], diff![i], kept![i], masked![i]];
          if (got.some((v, k) => !Object.is(v, want[k]))) wrong.push(`${i}: ${got} vs ${want}`);
        }
        expect(wrong).toEqual([]);
      } finally {
        for (const t of [ta, tb, ...outs]) backend.dispose(t);
      }
    });
  }

  it('a tensor that fits the largest binding only unpadded gets its exact size and the scalar kernels', async () => {
    // 2²⁰ − 4 bytes of binding (an H200 allows 2³¹ − 4): 262 143 floats fit, their vec4 padding does not.
    const tight = await createWebGpuBackend({ simulatedBindingBytes: 1_048_572 });
    try {
      const n = 262_143;
      const a = tight.tensor(Float32Array.from({ length: n }, (_, i) => i % 13), [1, n, 1]);
      const b = tight.zeros([1, n, 1]);
      const sum = tight.add(a, b);
      const kept = tight.maskTime(a, [n]);
      const [s1, k1] = [await tight.read(sum), await tight.read(kept)];
      expect(s1[n - 1]).toBe((n - 1) % 13);
      expect(k1[n - 2]).toBe((n - 2) % 13);
      for (const t of [a, b, sum, kept]) tight.dispose(t);
    } finally {
      tight.destroy();
    }
  });
});
