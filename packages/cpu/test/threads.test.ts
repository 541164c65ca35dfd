import { cells, deer, Rng, type Tensor } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { FastCpuBackend } from '../src/index.js';

const rng = new Rng(3);

describe('worker threads', () => {
  it('give the same runStep outputs and Jacobians as one thread, bit for bit', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
    const params = cell.init({ seed: 2 });
    const B = 2;
    const T = 3001;
    const x = rng.normalArray(B * T * 3, 1);
    const y = rng.normalArray(B * T * 4, 0.5);
    const results: Float64Array[][] = [];
    for (const threads of [1, 2, 3]) {
      for (const dtype of ['float64', 'float32'] as const) {
        const be = new FastCpuBackend({ threads, dtype });
        const p: Record<string, Tensor> = {};
        for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
        const xt = be.tensor(x, [B, T, 3]);
        const got: Float64Array[] = [];
        for (const s of [1, 4]) {
          // Twice: the second call reads the hoisted input work kept from the first.
          for (let r = 0; r < 2; r++) {
            const out = be.runStep(cell.linearizeProgram(s), {
              state: be.tensor(y, [B, T, 4]),
              input: xt,
              params: p,
            });
            got.push(
              Float64Array.from(await be.read(out.outputs[0]!)),
              Float64Array.from(await be.read(out.jacobian!)),
            );
          }
        }
        const d = await deer(be, cell, p, xt);
        got.push(Float64Array.from(await be.read(d.y)));
        // The pool exists exactly when more than one thread is available and asked for.
        expect((be as unknown as { pool?: unknown }).pool !== undefined).toBe(be.threads > 1);
        be.destroy();
        results.push(got);
      }
    }
    for (let k = 2; k < results.length; k++) {
      const a = results[k % 2]!;
      const b = results[k]!;
      expect(b.length).toBe(a.length);
      for (let i = 0; i < b.length; i++) expect(Array.from(b[i]!)).toEqual(Array.from(a[i]!));
    }
  });
});
