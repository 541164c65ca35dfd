import {
  type Backend,
  cells,
  type DType,
  hostNewtonUpdate,
  type NewtonUpdateOptions,
  Rng,
  scanThenUpdate,
  type Tensor,
} from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { deerStepOn } from './deer-step-on.js';
import { maxAbsDiff } from './fixtures.js';

/** `newtonUpdate`'s per-row measures, its `active` mask and its `delta` form, on hand-made rows. */
export function defineUpdateCases(ctx: SuiteContext): void {
  ctx.test('ops/newton-update-rows', async () => {
    const backend = ctx.backend();
    const [B, T, n] = [3, 4, 2];
    const old = new Float64Array(B * T * n);
    const raw = new Float64Array(B * T * n);
    // Row 0: within tolerance. Row 1: step 1 at t = 2 and a NaN at t = 3. Row 2: held (inactive)
    // although its raw values are far off and one is past the clip.
    for (let i = 0; i < raw.length; i++) raw[i] = old[i] = 0.5;
    raw[1 * T * n + 2 * n] = 1.5;
    raw[1 * T * n + 3 * n + 1] = Number.NaN;
    raw[2 * T * n] = 1e9;
    const rawT = backend.tensor(raw, [B, T, n], ctx.dtype);
    const oldT = backend.tensor(old, [B, T, n], ctx.dtype);
    const deltaT = backend.tensor(
      raw.map((v, i) => v - old[i]!),
      [B, T, n],
      ctx.dtype,
    );
    try {
      const active = Uint8Array.from([1, 1, 0]);
      for (const [input, delta] of [
        [rawT, false],
        [deltaT, true],
      ] as const) {
        const u = await backend.newtonUpdate(input, oldT, { atol: 0.1, rtol: 0, clip: 1e8, active, delta });
        const y = await backend.read(u.y);
        backend.dispose(u.y);
        expect(Array.from(u.rows.replaced)).toEqual([0, 1, 0]);
        expect(Array.from(u.rows.clipped)).toEqual([0, 0, 0]);
        expect(Array.from(u.rows.settled)).toEqual([T, 2, 0]);
        expect(u.rows.maxScaledDiff[0]).toBe(0);
        expect(u.rows.maxScaledDiff[1]).toBeCloseTo(10, 4);
        expect(u.maxAbsDiff).toBeCloseTo(1, 6);
        expect(u.replaced).toBe(1);
        expect(y[1 * T * n + 2 * n]).toBeCloseTo(1.5, 6);
        expect(y[1 * T * n + 3 * n + 1], 'NaN replaced by 0').toBe(0);
        expect(y[2 * T * n], 'a held row keeps the old iterate').toBe(0.5);
      }
      const all = await backend.newtonUpdate(rawT, oldT, { atol: 0.1, rtol: 0, clip: 1e8 });
      backend.dispose(all.y);
      expect(Array.from(all.rows.clipped)).toEqual([0, 0, 1]);
      expect(all.rows.settled[2]).toBe(0);
    } finally {
      for (const t of [rawT, oldT, deltaT]) backend.dispose(t);
    }
  });

  ctx.test('ops/newton-update-long-rows', async () => {
    // Rows long enough that a backend splits each over many workers: every measure must still be
    // the row's own, with the first bad entry (the settled front) found wherever it lies.
    const backend = ctx.backend();
    const [B, T, n] = [4, 2500, 3];
    const rng = new Rng(7);
    const old = Float64Array.from(rng.normalArray(B * T * n));
    const delta = Float64Array.from(rng.normalArray(B * T * n), (v) => v * 1e-4);
    const at = (b: number, t: number, i: number) => (b * T + t) * n + i;
    delta[at(0, 1733, 1)] = 0.5; // row 0: first step past tolerance late in the row
    delta[at(0, 2400, 0)] = 2;
    delta[at(1, 3, 2)] = Number.NaN; // row 1: a NaN near the start, a clip near the end
    delta[at(1, 2499, 2)] = 1e9;
    delta[at(2, 64, 0)] = 1e9; // row 2: clips at a workgroup boundary
    delta[at(2, 65, 0)] = -1e9;
    // row 3: all within tolerance
    const raw = old.map((v, i) => v + delta[i]!);
    const opts = { atol: 1e-3, rtol: 1e-3, clip: 1e8 };
    const want = hostNewtonUpdate(raw, old, new Float64Array(raw.length), B, T, opts);
    const tensors = [raw, old, delta].map((v) => backend.tensor(v, [B, T, n], ctx.dtype));
    const [rawT, oldT, deltaT] = tensors as [Tensor, Tensor, Tensor];
    try {
      for (const [input, isDelta] of [
        [rawT, false],
        [deltaT, true],
      ] as const) {
        const u = await backend.newtonUpdate(input, oldT, { ...opts, delta: isDelta });
        backend.dispose(u.y);
        expect(Array.from(u.rows.replaced)).toEqual(Array.from(want.rows.replaced));
        expect(Array.from(u.rows.clipped)).toEqual(Array.from(want.rows.clipped));
        expect(Array.from(u.rows.settled)).toEqual([1733, 3, 64, T]);
        expect(Array.from(u.rows.settled)).toEqual(Array.from(want.rows.settled));
        const near = (got: number, w: number) => expect(Math.abs(got - w)).toBeLessThanOrEqual(1e-5 * w);
        for (let b = 0; b < B; b++) near(u.rows.maxScaledDiff[b]!, want.rows.maxScaledDiff[b]!);
        near(u.maxAbsDiff, want.maxAbsDiff);
      }
    } finally {
      for (const t of tensors) backend.dispose(t);
    }
  });

  ctx.test('ops/scan-update', async () => {
    // A Newton step's scan and update, fused where the backend has `scanUpdate` (else composed as
    // core composes them), against the oracle's composition: the new iterate and every measure.
    const backend = ctx.backend();
    const oracle = ctx.oracle();
    const [B, T, n] = [3, 700, 4];
    const rng = new Rng(17);
    const old = Float64Array.from(rng.normalArray(B * T * n));
    const c = Float64Array.from(rng.normalArray(B * T * n), (v) => v * 1e-3);
    c[(2 * T + 5) * n + 1] = Number.NaN; // row 2: δ is NaN from t = 5 on in that component...
    c[(0 * T + 650) * n + 3] = 5e8; // row 0: ...and past the clip late in the row
    const opts = { atol: 1e-4, rtol: 1e-4, clip: 1e8, active: Uint8Array.from([1, 0, 1]) };
    const run = async (be: typeof backend, s: number, A: Float64Array, dtype: typeof ctx.dtype) => {
      const t = {
        A: be.tensor(A, [B, T, n / s, s, s], dtype),
        c: be.tensor(c, [B, T, n], dtype),
        y0: be.zeros([B, n], dtype),
        old: be.tensor(old, [B, T, n], dtype),
      };
      const args = { A: t.A, c: t.c, y0: t.y0, blockSize: s, reverse: false };
      try {
        const u = be.scanUpdate ? await be.scanUpdate(args, t.old, opts) : await scanThenUpdate(be, args, t.old, opts);
        const y = await be.read(u.y);
        be.dispose(u.y);
        return { u, y };
      } finally {
        for (const x of Object.values(t)) be.dispose(x);
      }
    };
    for (const s of [1, 2, 4]) {
      // Rows of each block sum to < 0.9 in absolute value: a contracting recurrence.
      const A = Float64Array.from(rng.normalArray(B * T * n * s), (v) => (0.9 * Math.tanh(v)) / s);
      const got = await run(backend, s, A, ctx.dtype);
      const want = await run(oracle, s, A, 'float64');
      // Relative to |y|: the clipped burst reaches 1e8, where float32 rounds to units.
      const scaled = got.y.map((v, i) => (v - want.y[i]!) / Math.max(1, Math.abs(want.y[i]!)));
      expect(maxAbsDiff(scaled, new Float64Array(scaled.length)), `s = ${s}: the new iterate`).toBeLessThanOrEqual(
        ctx.tolerance,
      );
      expect(Array.from(got.u.rows.replaced)).toEqual(Array.from(want.u.rows.replaced));
      expect(Array.from(got.u.rows.clipped)).toEqual(Array.from(want.u.rows.clipped));
      expect(Array.from(got.u.rows.settled)).toEqual(Array.from(want.u.rows.settled));
      expect(want.u.rows.replaced[2]).toBeGreaterThan(0);
      expect(want.u.rows.clipped[0]).toBeGreaterThan(0);
      const held = old[(1 * T + 3) * n]!;
      expect(got.y[(1 * T + 3) * n], 'a held row keeps the old iterate').toBe(
        ctx.dtype === 'float32' ? Math.fround(held) : held,
      );
      for (let b = 0; b < B; b++) {
        const w = want.u.rows.maxScaledDiff[b]!;
        expect(Math.abs(got.u.rows.maxScaledDiff[b]! - w)).toBeLessThanOrEqual(1e-4 * w);
      }
    }
  });

  ctx.test('ops/deer-step', async () => {
    // A whole DEER step of a multi-head GRU at a perturbed iterate: fused where the backend has
    // `deerStep` for the case (64 rows fill a software adapter's lanes), else composed as core
    // composes it; against the oracle's composition, in both block structures.
    const backend = ctx.backend();
    const oracle = ctx.oracle();
    const [B, T, m] = [64, 30, 3];
    const cell = cells.multiHeadGru({ inputSize: m, hiddenSize: 4, heads: 2 });
    const n = cell.stateSize;
    const rng = new Rng(23);
    const params = cell.init({ seed: 4 });
    const x = rng.normalArray(B * T * m);
    const h0 = rng.normalArray(B * n, 0.5);
    const prev = Float64Array.from(rng.normalArray(B * T * n), (v) => 0.3 * Math.tanh(v));
    const opts: NewtonUpdateOptions = {
      atol: 1e-5,
      rtol: 1e-5,
      clip: 0.5, // within the values' range: some entries are clipped
      active: Uint8Array.from({ length: B }, (_, b) => (b === 5 ? 0 : 1)),
    };
    const data = { B, T, x, h0, prev, params };
    const run = async (be: Backend, s: number, dtype: DType) =>
      (await deerStepOn(be, cell, data, s, opts, dtype, 'either'))!;
    for (const s of [1, 2, 4]) {
      const got = await run(backend, s, ctx.dtype);
      const want = await run(oracle, s, 'float64');
      expect(maxAbsDiff(got.y, want.y), `blocks of ${s}: the new iterate`).toBeLessThanOrEqual(ctx.tolerance);
      expect(Array.from(got.u.rows.replaced)).toEqual(Array.from(want.u.rows.replaced));
      expect(Array.from(got.u.rows.clipped)).toEqual(Array.from(want.u.rows.clipped));
      expect(Array.from(got.u.rows.settled)).toEqual(Array.from(want.u.rows.settled));
      expect(want.u.rows.clipped.reduce((a, v) => a + v, 0), 'some entries are clipped').toBeGreaterThan(0);
      expect(got.u.rows.settled[5], 'a held row settles nothing').toBe(0);
      for (let b = 0; b < B; b++) {
        const w = want.u.rows.maxScaledDiff[b]!;
        expect(Math.abs(got.u.rows.maxScaledDiff[b]! - w)).toBeLessThanOrEqual(1e-3 * w);
      }
    }
  });
}
