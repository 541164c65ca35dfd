import {
  type Backend,
  type Cell,
  cells,
  deer,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  Rng,
  type Tensor,
} from '@deerjs/core';
import { deerStepOn } from '@deerjs/conformance';
import { describe, expect, it } from 'vitest';
import { makeDeerPlan, makeStepPlan } from '../src/compiled/backend.js';
import { createCpuBackend, createReferenceBackend, type FastCpuBackend } from '../src/index.js';
import { CELLS } from './cells.js';


interface Case {
  readonly B: number;
  readonly T: number;
  readonly x: Float64Array;
  readonly h0: Float64Array;
  readonly prev: Float64Array;
}

/** A DEER step at `prev`: the backend's fused one (null where it has none) or core's composition. */
async function step(
  be: Backend,
  cell: Cell,
  c: Case,
  s: number,
  opts: NewtonUpdateOptions,
  fused: boolean,
): Promise<{ u: NewtonUpdate; y: Float64Array } | null> {
  const data = { ...c, params: cell.init({ seed: 4 }) };
  const r = await deerStepOn(be, cell, data, s, opts, be.capabilities.defaultDType, fused ? 'fused' : 'composed');
  return r && { u: r.u, y: Float64Array.from(r.y) };
}

/** A case whose iterate is the sequential solution (float64) before step K of every row, noise after. */
async function makeCase(cell: Cell, B: number, T: number, K: number, seed: number): Promise<Case> {
  const n = cell.stateSize;
  const m = cell.inputSize;
  const rng = new Rng(seed);
  const x = Float64Array.from(rng.normalArray(B * T * m));
  const h0 = Float64Array.from(rng.normalArray(B * n, 0.5));
  const ref = createReferenceBackend({ dtype: 'float64' });
  const params = cell.init({ seed: 4 });
  const p: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(params)) p[k] = ref.tensor(v, [v.length]);
  const y = ref.runSequential(cell.stepProgram(), { input: ref.tensor(x, [B, T, m]), y0: ref.tensor(h0, [B, n]), params: p });
  const exact = Float64Array.from(await ref.read(y));
  const noise = rng.normalArray(B * T * n);
  const prev = exact.map((v, i) => (Math.floor(i / n) % T < K ? v : 0.3 * Math.tanh(noise[i]!)));
  ref.destroy();
  return { B, T, x, h0, prev };
}

const blockSizes = (n: number) => [...new Set([1, [2, 3, 4].find((d) => n % d === 0 && d < n) ?? 1, n])];

describe('fused deerStep (float32, WebAssembly SIMD) against the float64 composition', () => {
  const fast = createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 1 });
  const ref = createReferenceBackend({ dtype: 'float64' });
  const B = 7; // two row groups, the second partial
  const T = 37;
  const K = 11;
  for (const [name, cell] of CELLS) {
    it(`${name}: every block size, held rows, clipped entries, the settled front`, async () => {
      const c = await makeCase(cell, B, T, K, 5);
      const active = Uint8Array.from({ length: B }, (_, b) => (b === 3 ? 0 : 1));
      for (const s of blockSizes(cell.stateSize)) {
        for (const opts of [
          { atol: 1e-4, rtol: 1e-4, clip: 1e8, active },
          { atol: 1e-5, rtol: 1e-5, clip: 0.5 },
        ] as NewtonUpdateOptions[]) {
          const got = await step(fast, cell, c, s, opts, true);
          // Fused wherever runStep has its WebAssembly kernel (not for Jacobians of the generic
          // entry formula: gru lbr0, mlp): null there, and core composes the step.
          const wasm = makeStepPlan(cell.residualProgram(s), true).wasm !== undefined;
          expect(got !== null, 'fused where runStep is on WebAssembly').toBe(wasm);
          if (!got) continue;
          const want = (await step(ref, cell, c, s, opts, false))!;
          let d = 0;
          for (let i = 0; i < want.y.length; i++) d = Math.max(d, Math.abs(got!.y[i]! - want.y[i]!));
          expect(d, `s=${s} clip=${opts.clip}: the new iterate`).toBeLessThanOrEqual(2e-5);
          const [g, w] = [got!.u.rows, want.u.rows];
          expect(Array.from(g.replaced)).toEqual(Array.from(w.replaced));
          expect(Array.from(g.clipped)).toEqual(Array.from(w.clipped));
          expect(Array.from(g.settled)).toEqual(Array.from(w.settled));
          for (let b = 0; b < B; b++) {
            expect(Math.abs(g.maxScaledDiff[b]! - w.maxScaledDiff[b]!)).toBeLessThanOrEqual(1e-3 * w.maxScaledDiff[b]! + 1e-3);
          }
          expect(Math.abs(got!.u.maxAbsDiff - want.u.maxAbsDiff)).toBeLessThanOrEqual(1e-5);
          if (opts.active) {
            // A held row keeps its iterate bit for bit and counts nothing.
            const n = cell.stateSize;
            const row = Float32Array.from(c.prev.subarray(3 * T * n, 4 * T * n));
            expect(Array.from(got!.y.subarray(3 * T * n, 4 * T * n))).toEqual(Array.from(row));
            expect([g.settled[3], g.replaced[3], g.maxScaledDiff[3]]).toEqual([0, 0, 0]);
            // Rows settle K steps where clipping does not stop them first.
            expect(Math.max(...g.settled)).toBe(K);
          } else expect(g.clipped.reduce((a, v) => a + v, 0), 'some entries are clipped').toBeGreaterThan(0);
        }
      }
    });
  }

  it('matches on long rows (several time chunks) and rows of one group', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 5 });
    for (const [b, t] of [
      [3, 6001],
      [5, 2503],
    ] as const) {
      const c = await makeCase(cell, b, t, 1000, 7);
      const opts = { atol: 1e-4, rtol: 1e-4, clip: 1e8 };
      for (const s of [1, 5]) {
        const got = (await step(fast, cell, c, s, opts, true))!;
        const want = (await step(ref, cell, c, s, opts, false))!;
        let d = 0;
        for (let i = 0; i < want.y.length; i++) d = Math.max(d, Math.abs(got.y[i]! - want.y[i]!));
        expect(d).toBeLessThanOrEqual(2e-5);
        expect(Array.from(got.u.rows.settled)).toEqual(Array.from(want.u.rows.settled));
        expect(Math.min(...got.u.rows.settled)).toBe(1000);
      }
    }
  });

  it('gives the same values with the hoisted part kept, recomputed per chunk, or kept for another input', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 5 });
    const [Bc, Tc] = [6, 2500];
    const c = await makeCase(cell, Bc, Tc, 100, 3);
    const n = cell.stateSize;
    const params = cell.init({ seed: 4 });
    const program = cell.residualProgram(5);
    const plan = makeDeerPlan(program, true);
    const P = program.graph.params.map((p) => Float32Array.from(params[p.name]!));
    const [x, y0, prev] = [Float32Array.from(c.x), Float32Array.from(c.h0), Float32Array.from(c.prev)];
    const opts = { atol: 1e-4, rtol: 1e-4, clip: 1e8 };
    const run = (token: object | undefined, input = x) => {
      const out = new Float32Array(Bc * Tc * n);
      const r = plan.run(P, Bc, Tc, input, y0, prev, out, token, opts);
      return { out, r };
    };
    const kept = run({});
    const chunked = run(undefined);
    const other = run({}, x.map((v) => -v)); // a token for another input: recomputed
    const again = run({});
    expect(Array.from(chunked.out)).toEqual(Array.from(kept.out));
    expect(Array.from(again.out)).toEqual(Array.from(kept.out));
    expect(Array.from(other.out)).not.toEqual(Array.from(kept.out));
    expect(chunked.r).toEqual(kept.r);
    expect(Array.from(kept.r.rows.settled)).toEqual(Array.from({ length: Bc }, () => 100));
  });

  it('gives the same values, bit for bit, with row groups split over threads', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 5 });
    const c = await makeCase(cell, 11, 3001, 40, 13);
    const active = Uint8Array.from({ length: 11 }, (_, b) => (b === 6 ? 0 : 1));
    const opts = { atol: 1e-4, rtol: 1e-4, clip: 0.7, active };
    const two = createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 2 }) as FastCpuBackend;
    for (const s of [1, 5]) {
      const one = (await step(fast, cell, c, s, opts, true))!;
      const got = (await step(two, cell, c, s, opts, true))!;
      expect(Array.from(got.y)).toEqual(Array.from(one.y));
      expect(got.u.rows).toEqual(one.u.rows);
      expect(got.u.maxAbsDiff).toBe(one.u.maxAbsDiff);
    }
    // Split over threads where the machine has two (this one runs the split too).
    expect((two as unknown as { pool?: unknown }).pool !== undefined).toBe(two.threads > 1);
    two.destroy();
  });

  it('sanitises NaN and ±Inf as the composition does (counts, zeros, the fold of max |Δ|)', async () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 4 });
    const c = await makeCase(cell, 6, 40, 5, 9);
    const n = cell.stateSize;
    c.prev[(1 * 40 + 20) * n + 2] = Number.NaN;
    c.prev[(4 * 40 + 7) * n + 0] = Number.POSITIVE_INFINITY;
    c.prev[(5 * 40 + 39) * n + 3] = Number.NEGATIVE_INFINITY;
    const opts = { atol: 1e-4, rtol: 1e-4, clip: 1e8 };
    // The composition on this backend in float32 (the same dtype: the same overflows).
    const plain = createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 1 }) as FastCpuBackend;
    (plain as { deerStep?: unknown }).deerStep = undefined;
    for (const s of [1, 4]) {
      const got = (await step(fast, cell, c, s, opts, true))!;
      const want = (await step(plain, cell, c, s, opts, false))!;
      const [g, w] = [got.u.rows, want.u.rows];
      expect(Array.from(g.replaced)).toEqual(Array.from(w.replaced));
      expect(g.replaced.reduce((a, v) => a + v, 0)).toBeGreaterThan(0);
      expect(Array.from(g.settled)).toEqual(Array.from(w.settled));
      expect(Number.isNaN(got.u.maxAbsDiff)).toBe(Number.isNaN(want.u.maxAbsDiff));
      expect(got.u.maxAbsDiff).toBeCloseTo(want.u.maxAbsDiff, 4);
      for (let i = 0; i < got.y.length; i++) {
        expect(Number.isFinite(got.y[i]!)).toBe(true);
        if (want.y[i] === 0) expect(got.y[i]).toBe(0);
      }
    }
    plain.destroy();
  });

  it('is what deer() runs, with the results of the composition', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 8 });
    const [Bd, Td] = [5, 400];
    const rng = new Rng(2);
    const x = rng.normalArray(Bd * Td * 3);
    const params = cell.init({ seed: 1 });
    const run = async (be: FastCpuBackend, jacobian: 'auto' | 'diagonal') => {
      const p: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
      const r = await deer(be, cell, p, be.tensor(x, [Bd, Td, 3]), { jacobian, fallback: 'none', maxIter: 40 });
      return { y: Float64Array.from(await be.read(r.y)), iterations: r.stats.iterations };
    };
    for (const jacobian of ['auto', 'diagonal'] as const) {
      const be = createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 1 }) as FastCpuBackend;
      let calls = 0;
      const fused = be.deerStep.bind(be);
      be.deerStep = (...a) => {
        const u = fused(...a);
        if (u) calls++;
        return u;
      };
      const got = await run(be, jacobian);
      expect(calls, 'deer() took the fused step').toBeGreaterThan(0);
      const plain = createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 1 }) as FastCpuBackend;
      (plain as { deerStep?: unknown }).deerStep = undefined;
      const want = await run(plain, jacobian);
      let d = 0;
      for (let i = 0; i < want.y.length; i++) d = Math.max(d, Math.abs(got.y[i]! - want.y[i]!));
      expect(d).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(got.iterations - want.iterations)).toBeLessThanOrEqual(1);
      be.destroy();
      plain.destroy();
    }
  });
});
