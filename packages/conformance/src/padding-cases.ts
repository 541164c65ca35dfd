import { type Backend, type Cell, deer, deerWithGrad, defineCell, lang, sequential, ShapeError, type Tensor } from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { CELL_FAMILIES, INPUT_SIZE, maxAbsDiff, maxRelDiff, sequenceData } from './fixtures.js';

/** Rows of a [B, T, k] host array cut to their lengths, each as [1, len, k]. */
function rowPrefix(a: ArrayLike<number>, b: number, T: number, k: number, len: number): Float64Array {
  return Float64Array.from({ length: len * k }, (_, i) => a[b * T * k + i]!);
}

/**
 * Padded batches (`lengths`): each row must equal the solve of that row alone, cut to its length,
 * with zeros after; gradients must equal the sum of the rows' own gradients, with dx = 0 in the
 * padding. The oracle solves every row separately in float64.
 */
export function definePaddingCases(ctx: SuiteContext): void {
  const B = 4;
  const T = 40;
  const lengths = [40, 17, 1, 0];

  async function oracleRows(oracle: Backend, cell: Cell, data: ReturnType<typeof sequenceData>, w: Float64Array) {
    const n = cell.stateSize;
    const y = new Float64Array(B * T * n);
    const dx = new Float64Array(B * T * INPUT_SIZE);
    const dparams: Record<string, Float64Array> = {};
    for (const spec of cell.params) dparams[spec.name] = new Float64Array(spec.size);
    for (let b = 0; b < B; b++) {
      const len = lengths[b]!;
      if (len === 0) continue;
      const x = oracle.tensor(rowPrefix(data.x, b, T, INPUT_SIZE, len), [1, len, INPUT_SIZE], 'float64');
      const dy = oracle.tensor(rowPrefix(w, b, T, n, len), [1, len, n], 'float64');
      const h0 = Array.from({ length: n }, (_, i) => data.h0[b * n + i]!);
      const r = await deerWithGrad(oracle, cell, data.params, x, { h0 });
      try {
        y.set(await oracle.read(r.y), b * T * n);
        const g = await r.vjp(dy);
        dx.set(await oracle.read(g.x), b * T * INPUT_SIZE);
        for (const [k, t] of Object.entries(g.params)) {
          const v = await oracle.read(t);
          for (let i = 0; i < v.length; i++) dparams[k]![i]! += v[i]!;
        }
        for (const t of [g.x, g.h0, ...Object.values(g.params)]) oracle.dispose(t);
      } finally {
        r.dispose();
        oracle.dispose(x);
        oracle.dispose(dy);
      }
    }
    return { y, dx, dparams };
  }

  for (const family of ['gru', 'lstm']) {
    ctx.test(`padding/${family}`, async () => {
      const backend = ctx.backend();
      const cell = CELL_FAMILIES.find((f) => f.id === family)!.make(4, INPUT_SIZE);
      const n = cell.stateSize;
      const data = sequenceData(91, B, T, cell, ctx.dtype);
      const w = Float64Array.from({ length: B * T * n }, (_, i) => {
        const v = Math.cos(i * 0.37);
        return ctx.dtype === 'float32' ? Math.fround(v) : v;
      });
      const want = await oracleRows(ctx.oracle(), cell, data, w);
      const x = backend.tensor(data.x, [B, T, INPUT_SIZE], ctx.dtype);
      const dy = backend.tensor(w, [B, T, n], ctx.dtype);
      const owned: Tensor[] = [x, dy];
      try {
        const solved = await deer(backend, cell, data.params, x, { h0: data.h0, lengths });
        owned.push(solved.y);
        expect(solved.stats.converged).toBe(true);
        expect(maxAbsDiff(await backend.read(solved.y), want.y)).toBeLessThanOrEqual(ctx.tolerance);
        const seq = await sequential(backend, cell, data.params, x, { h0: data.h0, lengths });
        owned.push(seq.y);
        expect(maxAbsDiff(await backend.read(seq.y), want.y)).toBeLessThanOrEqual(ctx.tolerance);
        const r = await deerWithGrad(backend, cell, data.params, x, { h0: data.h0, lengths });
        try {
          const g = await r.vjp(dy);
          owned.push(g.x, g.h0, ...Object.values(g.params));
          const relTol = ctx.dtype === 'float64' ? 1e-9 : 1e-4;
          expect(maxRelDiff(await backend.read(g.x), want.dx, 1)).toBeLessThanOrEqual(relTol);
          for (const [k, t] of Object.entries(g.params)) {
            expect(maxRelDiff(await backend.read(t), want.dparams[k]!, 1), `d${k}`).toBeLessThanOrEqual(relTol);
          }
        } finally {
          r.dispose();
        }
      } finally {
        for (const t of owned) backend.dispose(t);
      }
    });
  }

  ctx.test('padding/cell-not-finite-at-the-padding', async () => {
    // log(h²) is −∞ at the zero states past a row's end: the gradient there is 0 (it had been
    // 0·∞ = NaN in dx past the end and in the parameter sums of every row).
    const { add, log, mul } = lang;
    const cell = defineCell({ name: 'log-of-state', state: 2, input: 1, params: { w: [2] } }, (h, x, p) =>
      add(mul(h, 0.5), add(1, mul(mul(p.w, x), mul(0.01, log(mul(h, h)))))),
    );
    const backend = ctx.backend();
    const [B2, T2] = [2, 12];
    const lens = [7, 12];
    const x = backend.tensor(Float64Array.from({ length: B2 * T2 }, (_, i) => 0.5 + 0.25 * Math.sin(i)), [B2, T2, 1], ctx.dtype);
    const dy = backend.tensor(Float64Array.from({ length: B2 * T2 * 2 }, (_, i) => Math.cos(i)), [B2, T2, 2], ctx.dtype);
    const w = backend.tensor([0.3, -0.2], [2], ctx.dtype);
    try {
      const r = await deerWithGrad(backend, cell, { w }, x, { h0: [1, 1.2, 0.9, 1.1], lengths: lens });
      try {
        const g = await r.vjp(dy);
        const dx = await backend.read(g.x);
        const dw = await backend.read(g.params.w!);
        for (const t of [g.x, g.h0, ...Object.values(g.params)]) backend.dispose(t);
        expect(Array.from(dw).every(Number.isFinite), `dw ${Array.from(dw)}`).toBe(true);
        expect(Array.from(dx.subarray(lens[0]!, T2)), 'dx past the end of row 0').toEqual(new Array(T2 - lens[0]!).fill(0));
        expect(Array.from(dx).every(Number.isFinite)).toBe(true);
      } finally {
        r.dispose();
      }
    } finally {
      for (const t of [x, dy, w]) backend.dispose(t);
    }
  });

  ctx.test('padding/what-the-padding-holds-is-never-read', async () => {
    // NaN or ±Inf in x past a row's end (checkFinite: false): every method gives what zero padding
    // gives. Parallel shooting had judged its chunk starts there too and called the row non-finite.
    const backend = ctx.backend();
    const cell = CELL_FAMILIES.find((f) => f.id === 'gru')!.make(4, INPUT_SIZE);
    const [B2, T2] = [3, 60];
    const lens = [60, 23, 5];
    const data = sequenceData(29, B2, T2, cell, ctx.dtype);
    const answers: Record<string, ArrayLike<number>> = {};
    for (const fill of [0, Number.NaN, Number.POSITIVE_INFINITY]) {
      const xs = Float64Array.from(data.x);
      for (let b = 0; b < B2; b++) for (let i = lens[b]! * INPUT_SIZE; i < T2 * INPUT_SIZE; i++) xs[b * T2 * INPUT_SIZE + i] = fill;
      const x = backend.tensor(xs, [B2, T2, INPUT_SIZE], ctx.dtype);
      try {
        for (const method of ['deer', 'elk', 'shoot', 'auto'] as const) {
          const { y, stats } = await deer(backend, cell, data.params, x, { h0: data.h0, lengths: lens, checkFinite: false, method });
          const got = await backend.read(y);
          backend.dispose(y);
          const what = `${method}, padding ${fill}`;
          expect(stats.stopReason, what).toBe(method === 'auto' && stats.stopReason === 'sequential' ? 'sequential' : 'tolerance');
          expect(stats.converged, what).toBe(true);
          expect(stats.fellBack, what).toBe(false);
          expect(Array.from(got).every(Number.isFinite), what).toBe(true);
          answers[method] ??= got;
          expect(maxAbsDiff(got, answers[method]!), what).toBeLessThanOrEqual(ctx.tolerance);
        }
      } finally {
        backend.dispose(x);
      }
    }
  });

  ctx.test('padding/bad-lengths', async () => {
    const backend = ctx.backend();
    const cell = CELL_FAMILIES[0]!.make(2, INPUT_SIZE);
    const p = cell.init();
    const x = backend.tensor(new Float64Array(2 * 5 * INPUT_SIZE), [2, 5, INPUT_SIZE], ctx.dtype);
    try {
      for (const lengths of [[5], [5, 6], [5, -1], [5, 2.5], [5, Number.NaN]]) {
        await expect(deer(backend, cell, p, x, { lengths })).rejects.toThrow(ShapeError);
        await expect(sequential(backend, cell, p, x, { lengths })).rejects.toThrow(ShapeError);
      }
    } finally {
      backend.dispose(x);
    }
  });
}
