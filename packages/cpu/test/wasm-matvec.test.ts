import { cells, Rng, sequential, type Tensor } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { makeSeqPlan } from '../src/compiled/backend.js';
import { matvecCols, matvecRows } from '../src/compiled/matvec.js';
import { type MatvecFn, matvecBytes, wasmMatvecSource } from '../src/compiled/wasm/matvec-site.js';
import { availableThreads } from '../src/compiled/threads.js';
import { FastCpuBackend } from '../src/index.js';

const rng = new Rng(11);
const site = (f32: boolean, transpose: boolean): MatvecFn => {
  const src = wasmMatvecSource(f32, transpose);
  if (!src) throw new Error('WebAssembly SIMD is unavailable');
  return new Function(src)() as MatvecFn;
};

describe('wasm SIMD matvec', () => {
  it('is available in Node and validates for both lane types', () => {
    expect(matvecBytes(true)).toBeInstanceOf(Uint8Array);
    expect(matvecBytes(false)).toBeInstanceOf(Uint8Array);
  });

  // Rows and E not multiples of the blocks (8 / 4 rows, 4 elements), one column, one element.
  const shapes: [E: number, rows: number, cols: number][] = [
    [1, 1, 1],
    [3, 5, 7],
    [5, 13, 1],
    [7, 9, 16],
    [16, 96, 32],
    [2, 1, 40],
    [9, 33, 3],
  ];
  for (const transpose of [false, true]) {
    for (const [E, rows, cols] of shapes) {
      const name = `${transpose ? 'Wᵀ' : 'W'} E=${E} rows=${rows} cols=${cols}`;
      const [inSize, outSize] = transpose ? [rows, cols] : [cols, rows];
      const W = Float64Array.from(rng.normalArray(2 + rows * cols, 1), Math.fround);
      const xs = inSize + 3;
      const X = Float32Array.from(rng.normalArray(1 + E * xs, 1));
      const os = outSize + 2;
      const js = transpose ? matvecCols : matvecRows;

      it(`float64 lanes: ${name}, the scalar kernel's sums exactly`, () => {
        const want = new Float64Array(3 + E * os);
        const got = new Float64Array(3 + E * os);
        js(W, 2, rows, cols, X, 1, xs, E, want, 3, os);
        site(false, transpose)(W, 2, rows, cols, X, 1, xs, E, got, 3, os, {});
        expect(Array.from(got)).toEqual(Array.from(want));
      });

      it(`float32 lanes: ${name}, within float32 rounding of the float64 sums`, () => {
        const want = new Float64Array(3 + E * os);
        const got = new Float64Array(3 + E * os);
        js(W, 2, rows, cols, X, 1, xs, E, want, 3, os);
        site(true, transpose)(W, 2, rows, cols, X, 1, xs, E, got, 3, os, {});
        for (let e = 0; e < E; e++) {
          for (let r = 0; r < outSize; r++) {
            // |Σ wx − fl32(Σ wx)| ≤ γ_k Σ|w||x| with k = inSize + 1 roundings of 2^-24 each.
            let bound = 0;
            for (let j = 0; j < inSize; j++) {
              const w = transpose ? W[2 + j * cols + r]! : W[2 + r * cols + j]!;
              bound += Math.abs(w * X[1 + e * xs + j]!);
            }
            const at = 3 + e * os + r;
            expect(Math.abs(got[at]! - want[at]!)).toBeLessThanOrEqual((inSize + 1) * 2 ** -24 * bound + 1e-300);
          }
        }
        // Outside the written rows nothing changes.
        for (let i = 0; i < 3; i++) expect(got[i]).toBe(0);
      });
    }
  }

  it('packs W again for a new key or a new W, per block offset, and grows its memory', () => {
    const mv = site(false, false);
    const [rows, cols] = [6, 5];
    const W1 = Float64Array.from(rng.normalArray(2 * rows * cols, 1));
    const W2 = Float64Array.from(rng.normalArray(2 * rows * cols, 1));
    const run = (f: MatvecFn, W: Float64Array, wOff: number, E: number, X: Float64Array, key: unknown) => {
      const O = new Float64Array(E * rows);
      f(W, wOff, rows, cols, X, 0, cols, E, O, 0, rows, key);
      return Array.from(O);
    };
    const X = Float64Array.from(rng.normalArray(5 * cols, 1));
    const want = (W: Float64Array, wOff: number, E: number, Xe = X) => run(matvecRows, W, wOff, E, Xe, undefined);
    const key = {};
    expect(run(mv, W1, 0, 5, X, key)).toEqual(want(W1, 0, 5));
    // Same key, second block of the same W (another pack), then the first again.
    expect(run(mv, W1, rows * cols, 3, X, key)).toEqual(want(W1, rows * cols, 3));
    expect(run(mv, W1, 0, 2, X, key)).toEqual(want(W1, 0, 2));
    // Same key, another W; same W contents changed under a new key.
    expect(run(mv, W2, 0, 5, X, key)).toEqual(want(W2, 0, 5));
    W2[0] = 42;
    expect(run(mv, W2, 0, 5, X, {})).toEqual(want(W2, 0, 5));
    // Many elements: the memory grows (views are refreshed), then few again.
    const big = Float64Array.from(rng.normalArray(20000 * cols, 1));
    expect(run(mv, W1, 0, 20000, big, key)).toEqual(want(W1, 0, 20000, big));
    expect(run(mv, W1, 0, 1, X, key)).toEqual(want(W1, 0, 1));
  });
});

describe('simd: true against simd: false on the backend', () => {
  const cell = cells.gru({ inputSize: 5, hiddenSize: 9 });
  const params = cell.init({ seed: 4 });
  const [B, T] = [3, 301];
  const x = rng.normalArray(B * T * 5, 1);
  const y = rng.normalArray(B * T * 9, 0.5);
  const tensors = (be: FastCpuBackend) => {
    const p: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
    return { p, xt: be.tensor(x, [B, T, 5]) };
  };
  const outputs = async (be: FastCpuBackend) => {
    const { p, xt } = tensors(be);
    const seq = await sequential(be, cell, p, xt);
    const state = be.tensor(y, [B, T, 9]);
    const step = be.runStep(cell.linearizeProgram(9), { state, input: xt, params: p });
    // The VJP's products are transposed (the matvecCols sites).
    const { vjp } = cell;
    const back = be.runStep(
      { graph: vjp.graph, outputs: [vjp.dState!, vjp.dInput!] },
      { state, input: xt, cotangent: be.tensor(y, [B, T, 9]), params: p },
    );
    const r = [
      await be.read(seq.y),
      await be.read(step.outputs[0]!),
      await be.read(step.jacobian!),
      await be.read(back.outputs[0]!),
      await be.read(back.outputs[1]!),
    ];
    be.destroy();
    return r.map((a) => Float64Array.from(a));
  };

  it('the plans use the wasm sites, or the scalar ones with simd: false', () => {
    for (const fast of [false, true]) {
      const on = makeSeqPlan(cell.stepProgram(), fast, true).step.siteSources;
      const off = makeSeqPlan(cell.stepProgram(), fast, false).step.siteSources;
      expect(on.length).toBeGreaterThan(0);
      expect(on.every((s) => s.includes('WebAssembly'))).toBe(true);
      expect(off.some((s) => s.includes('WebAssembly'))).toBe(false);
    }
  });

  it('float64: the same values, bit for bit', async () => {
    const a = await outputs(new FastCpuBackend({ dtype: 'float64', threads: 1, compileMin: 0 }));
    const b = await outputs(new FastCpuBackend({ dtype: 'float64', threads: 1, compileMin: 0, simd: false }));
    for (let k = 0; k < a.length; k++) expect(Array.from(a[k]!)).toEqual(Array.from(b[k]!));
  });

  it('float32: within float32 rounding', async () => {
    const a = await outputs(new FastCpuBackend({ dtype: 'float32', threads: 1, compileMin: 0 }));
    const b = await outputs(new FastCpuBackend({ dtype: 'float32', threads: 1, compileMin: 0, simd: false }));
    for (let k = 0; k < a.length; k++) {
      let d = 0;
      for (let i = 0; i < a[k]!.length; i++) d = Math.max(d, Math.abs(a[k]![i]! - b[k]![i]!));
      expect(d).toBeLessThan(2e-6);
    }
  });

  it('worker threads run the wasm sites too: the same values as one thread, bit for bit', async () => {
    const big = { B: 2, T: 3001 };
    const xb = rng.normalArray(big.B * big.T * 5, 1);
    const yb = rng.normalArray(big.B * big.T * 9, 0.5);
    const results: Float64Array[][] = [];
    for (const threads of [1, 2]) {
      for (const dtype of ['float64', 'float32'] as const) {
        const be = new FastCpuBackend({ threads, dtype });
        expect(be.threads).toBe(Math.min(threads, availableThreads()));
        const p: Record<string, Tensor> = {};
        for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
        const out = be.runStep(cell.linearizeProgram(1), {
          state: be.tensor(yb, [big.B, big.T, 9]),
          input: be.tensor(xb, [big.B, big.T, 5]),
          params: p,
        });
        results.push([
          Float64Array.from(await be.read(out.outputs[0]!)),
          Float64Array.from(await be.read(out.jacobian!)),
        ]);
        be.destroy();
      }
    }
    for (let k = 2; k < results.length; k++) {
      for (let i = 0; i < 2; i++) expect(Array.from(results[k]![i]!)).toEqual(Array.from(results[k % 2]![i]!));
    }
  });
});
