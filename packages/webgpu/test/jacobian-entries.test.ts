import { type Backend, defineCell, lang, Rng } from '@deerjs/core';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

/**
 * Jacobians too large to unroll (n·s > 256 entries) go through per-entry functions. Entries that
 * are the same in every row (a sum of rows) are kept per column of a block by one invocation,
 * instead of recomputed by every entry's; both layouts against the reference interpreter.
 */
describe.skipIf(skip !== null)('webgpu: Jacobian entries evaluated by functions', () => {
  let gpu: WebGpuBackend;
  let ref: Backend;
  const [B, T, n] = [2, 5, 40];
  // A sum over a product with another sum (row-free entries), and a plain product (per entry).
  const sums = defineCell({ state: n, input: 1, params: { W: [n, n], c: [2 * n] } }, (h, x, p) => {
    const a = lang.sum(lang.mul(lang.tanh(lang.concat(h, h)), p.c));
    const b = lang.dot(lang.matvec(p.W, h), a);
    return lang.tanh(lang.add(lang.mul(0.5, h), lang.mul(b, lang.add(x, lang.constant(Array.from({ length: n }, (_, i) => 0.01 * (i % 5)))))));
  });
  const plain = defineCell({ state: n, input: 1, params: { W: [n, n], V: [n, n] } }, (h, x, p) =>
    lang.tanh(lang.add(lang.matvec(p.V, lang.tanh(lang.matvec(p.W, h))), x)),
  );

  beforeAll(async () => {
    gpu = await createWebGpuBackend();
    ref = createReferenceBackend({ dtype: 'float64' });
  });
  afterAll(() => gpu?.destroy());

  for (const [name, cell] of [
    ['row-free entries (by column)', sums],
    ['products (by entry)', plain],
  ] as const) {
    // Both over 256 entries per element: n · s = 1600 and 400.
    for (const s of [n, 10]) {
      it(`${name}, blocks of ${s}: f and J as the reference`, async () => {
        const rng = new Rng(s);
        const values = cell.init({ seed: 3 });
        const xs = rng.normalArray(B * T);
        const ys = rng.normalArray(B * T * n, 0.5);
        const run = async (be: Backend, dtype: 'float32' | 'float64') => {
          const params = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, be.tensor(v, [v.length], dtype)]));
          const x = be.tensor(xs, [B, T, 1], dtype);
          const y = be.tensor(ys, [B, T, n], dtype);
          const out = be.runStep(cell.linearizeProgram(s), { state: y, input: x, params });
          const got = [...(await Promise.all(out.outputs.map((t) => be.read(t)))), await be.read(out.jacobian!)];
          for (const t of [x, y, ...out.outputs, out.jacobian!, ...Object.values(params)]) be.dispose(t);
          return got;
        };
        const got = await run(gpu, 'float32');
        const want = await run(ref, 'float64');
        for (let k = 0; k < want.length; k++) {
          let err = 0;
          for (let i = 0; i < want[k]!.length; i++) err = Math.max(err, Math.abs(got[k]![i]! - want[k]![i]!));
          expect(err, `output ${k}`).toBeLessThan(1e-5);
        }
        expect(gpu.liveTensors()).toBe(0);
      });
    }
  }
});
