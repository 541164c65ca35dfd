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

/**
 * Layout ops over time (shift, slice, concat, one step) and over listed batch rows (gather, scatter): a copy command per batch row for a few
 * rows, one dispatch for many (past 32). Both paths against host loops, exactly.
 */
describe.skipIf(skip !== null)('webgpu layout ops over time, few and many batch rows', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  for (const [B, T, K] of [
    [3, 5, 2],
    [40, 7, 3],
    [33, 1, 1],
    [1000, 4, 1],
  ] as const) {
    it(`[${B}, ${T}, ${K}]: shiftTime, sliceTime, concatTime and timeStep`, async () => {
      const x = Float32Array.from(new Rng(B + T + K).normalArray(B * T * K));
      const fill = Float32Array.from({ length: B * K }, (_, i) => 100 + i);
      const at = (b: number, t: number, k: number) => x[(b * T + t) * K + k]!;
      const host = (rows: number, steps: number, f: (b: number, t: number, k: number) => number) =>
        Float32Array.from({ length: rows * steps * K }, (_, i) => f(Math.floor(i / (steps * K)), Math.floor(i / K) % steps, i % K));
      const tx = backend.tensor(x, [B, T, K]);
      const tf = backend.tensor(fill, [B, K]);
      // Every other row, backwards: more than 32 rows for the larger batches.
      const picked = Array.from({ length: B }, (_, b) => B - 1 - b).filter((b) => b % 2 === 0);
      const gathered = backend.tensor(x.subarray(0, picked.length * T * K), [picked.length, T, K]);
      const start = Math.min(1, T - 1);
      const len = T - start;
      const cases: [string, () => ReturnType<WebGpuBackend['zeros']>, Float32Array][] = [
        ['shift +1, fill', () => backend.shiftTime(tx, tf, 1), host(B, T, (b, t, k) => (t === 0 ? fill[b * K + k]! : at(b, t - 1, k)))],
        ['shift +1, zeros', () => backend.shiftTime(tx, null, 1), host(B, T, (b, t, k) => (t === 0 ? 0 : at(b, t - 1, k)))],
        ['shift −1, fill', () => backend.shiftTime(tx, tf, -1), host(B, T, (b, t, k) => (t === T - 1 ? fill[b * K + k]! : at(b, t + 1, k)))],
        ['slice', () => backend.sliceTime(tx, start, len), host(B, len, (b, t, k) => at(b, start + t, k))],
        ['concat', () => backend.concatTime([tx, tx]), host(B, 2 * T, (b, t, k) => at(b, t % T, k))],
        ['step', () => backend.timeStep(tx, T - 1), host(B, 1, (b, _t, k) => at(b, T - 1, k))],
        ['gather', () => backend.gatherRows(tx, picked), host(picked.length, T, (b, t, k) => at(picked[b]!, t, k))],
        [
          'scatter',
          () => backend.scatterRows(tx, picked, gathered),
          host(B, T, (b, t, k) => (picked.includes(b) ? x[(picked.indexOf(b) * T + t) * K + k]! : at(b, t, k))),
        ],
      ];
      try {
        for (const [what, run, want] of cases) {
          const out = run();
          const got = await backend.read(out);
          backend.dispose(out);
          expect(Array.from(got), what).toEqual(Array.from(want));
        }
      } finally {
        backend.dispose(tx);
        backend.dispose(tf);
        backend.dispose(gathered);
      }
      expect(backend.liveTensors()).toBe(0);
    });
  }
});
