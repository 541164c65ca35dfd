import {
  type Backend,
  type Cell,
  ConvergenceError,
  type DeerOptions,
  type DeerStats,
  DTypeError,
  deer,
  deerWithGrad,
  defineCell,
  dopri5,
  InvalidArgumentError,
  ivpVjp,
  lang,
  NonFiniteError,
  type ParamsInput,
  rk4,
  ShapeError,
  StepSizeError,
  sequential,
  solveIvp,
  solveIvpWithGrad,
  type Tensor,
  UnsupportedOptionError,
} from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { CELL_FAMILIES, INPUT_SIZE, maxAbsDiff, sequenceData } from './fixtures.js';
import { oracleTrajectory, solveOnBackend } from './solve-cases.js';

const { add, mul, sub, constant } = lang;

/** y_t = a ⊙ y_{t−1} + x_t, elementwise, a a parameter: expanding when |a| > 1. */
const scaledSum = (n: number) =>
  defineCell({ name: 'scaled-sum', state: n, input: n, params: { a: [n] } }, (h, x, p) =>
    add(mul(p.a, h), x),
  );

/** y_t = y_{t−1} ⊙ (1 + x_t[0]) + x_t[1]: each batch row picks its own growth rate through x. */
const rowRate = () =>
  defineCell({ name: 'row-rate', state: 1, input: 2, params: {} }, (h, x) =>
    add(mul(h, add(constant(1), lang.slice(x, 0, 1))), lang.slice(x, 1, 1)),
  );

/** The logistic map y ← r·y·(1 − y) at r = 3.9: chaotic (largest Lyapunov exponent ≈ 0.5). */
const logistic = () =>
  defineCell({ name: 'logistic', state: 1, input: 1, params: {} }, (h, x) =>
    add(mul(constant(3.9), mul(h, sub(constant(1), h))), mul(constant(0), x)),
  );

/**
 * y ← y/2 + e/(e + 1) with e = e^(100x + y), plus softplus(−y)/100 when asked: at x = 1, e^(100 + y)
 * overflows float32 (not float64) and ∞/∞ is NaN.
 */
const overflowing = (softplus: boolean) =>
  defineCell(
    { name: softplus ? 'overflowing-softplus' : 'overflowing', state: 1, input: 1, params: {} },
    (h, x) => {
      const e = lang.exp(add(mul(x, constant(100)), h));
      const f = add(mul(h, constant(0.5)), lang.div(e, add(e, constant(1))));
      return softplus ? add(f, mul(constant(0.01), lang.softplus(lang.neg(h)))) : f;
    },
  );

async function run(
  backend: Backend,
  dtype: SuiteContext['dtype'],
  cell: Cell,
  params: ParamsInput,
  x: number[] | Float64Array,
  shape: [number, number, number],
  options: DeerOptions = {},
): Promise<{ y: Float64Array | Float32Array; stats: DeerStats; seq: Float64Array | Float32Array }> {
  const xt = backend.tensor(x, shape, dtype);
  try {
    const { y, stats } = await deer(backend, cell, params, xt, options);
    const out = await backend.read(y);
    backend.dispose(y);
    const { y: ys } = await sequential(backend, cell, params, xt, {
      ...(options.h0 !== undefined ? { h0: options.h0 } : {}),
      ...(options.checkFinite !== undefined ? { checkFinite: options.checkFinite } : {}),
    });
    const seq = await backend.read(ys);
    backend.dispose(ys);
    return { y: out, stats, seq };
  } finally {
    backend.dispose(xt);
  }
}

/** max_t |y_t − f(y_{t−1}, x_t)| / (atol + rtol·|f|) of a trajectory, on the float64 oracle. */
async function scaledResidual(
  oracle: Backend,
  cell: Cell,
  params: ParamsInput,
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  shape: [number, number, number],
  h0: ArrayLike<number> | undefined,
  tol: { atol: number; rtol: number },
): Promise<number> {
  const [B, T] = shape;
  const n = cell.stateSize;
  const prev = new Float64Array(B * T * n);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) prev[b * T * n + i] = h0 ? (h0.length === n ? h0[i]! : h0[b * n + i]!) : 0;
    for (let t = 1; t < T; t++)
      for (let i = 0; i < n; i++) prev[(b * T + t) * n + i] = y[(b * T + t - 1) * n + i]!;
  }
  const state = oracle.tensor(prev, [B, T, n], 'float64');
  const input = oracle.tensor(x, shape, 'float64');
  const ps: Record<string, Tensor> = {};
  for (const spec of cell.params)
    ps[spec.name] = oracle.tensor(params[spec.name] as ArrayLike<number>, [spec.size], 'float64');
  try {
    const out = oracle.runStep(cell.stepProgram(), { state, input, params: ps });
    const f = await oracle.read(out.outputs[0]!);
    oracle.dispose(out.outputs[0]!);
    let worst = 0;
    for (let i = 0; i < f.length; i++) {
      const r = Math.abs(y[i]! - f[i]!) / (tol.atol + tol.rtol * Math.abs(f[i]!));
      if (!(r <= worst)) worst = r;
    }
    return worst;
  } finally {
    oracle.dispose(state);
    oracle.dispose(input);
    for (const t of Object.values(ps)) oracle.dispose(t);
  }
}

/** Same values, NaN where NaN, within a relative tolerance elsewhere. */
function expectSameTrajectory(got: ArrayLike<number>, want: ArrayLike<number>, rel: number) {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const [a, b] = [got[i]!, want[i]!];
    if (Number.isNaN(b)) {
      expect(Number.isNaN(a), `entry ${i}: NaN expected, got ${a}`).toBe(true);
      continue;
    }
    const e = Math.abs(a - b) / Math.max(1, Math.abs(b));
    if (!(e <= worst)) worst = e;
  }
  expect(worst, 'max relative difference from sequential').toBeLessThanOrEqual(rel);
}

/**
 * Inputs meant to break the promise that DEER returns the sequential trajectory or says it did
 * not: values past the clip, expanding and chaotic dynamics, NaN everywhere, one bad batch row,
 * very long float32 sequences, stiff ODE intervals, non-finite grids, bad options.
 */
export function defineAdversarialCases(ctx: SuiteContext): void {
  const tol = ctx.dtype === 'float64' ? { atol: 1e-10, rtol: 1e-10 } : { atol: 1e-5, rtol: 1e-5 };
  const rel = ctx.dtype === 'float64' ? 1e-12 : 1e-5;

  ctx.test('adversarial/past-the-clip', async () => {
    // y = 1.1 y + x: true values reach ~1e20, far past clip = 1e8; and a running sum to 1e9.
    const T = 500;
    const cell = scaledSum(1);
    for (const [a, xv] of [
      [1.1, 1],
      [1, 2e6],
    ] as const) {
      const x = new Float64Array(T).fill(xv);
      const got = await run(ctx.backend(), ctx.dtype, cell, { a: [a] }, x, [1, T, 1]);
      expect(got.stats.converged, 'a clipped trajectory is never converged').toBe(false);
      expect(got.stats.fellBack).toBe(true);
      expect(got.stats.clipped).toBeGreaterThan(0);
      expect(['diverged', 'stagnated', 'maxIter']).toContain(got.stats.stopReason);
      expectSameTrajectory(got.y, got.seq, rel);
      const none = await run(ctx.backend(), ctx.dtype, cell, { a: [a] }, x, [1, T, 1], { fallback: 'none' });
      expect(none.stats.converged).toBe(false);
      expect(none.stats.residual, 'the returned iterate breaks the recurrence').toBeGreaterThan(1);
    }
  });

  ctx.test('adversarial/small-clip', async () => {
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const data = sequenceData(5, 2, 60, cell, ctx.dtype);
    for (const clip of [1e-3, 0.3]) {
      const got = await run(ctx.backend(), ctx.dtype, cell, data.params, data.x, [2, 60, INPUT_SIZE], {
        h0: data.h0,
        clip,
      });
      if (got.stats.converged) {
        expect(got.stats.clipped).toBe(0);
      } else {
        expect(got.stats.fellBack).toBe(true);
      }
      expectSameTrajectory(got.y, got.seq, rel);
    }
    await expect(
      run(ctx.backend(), ctx.dtype, cell, data.params, data.x, [2, 60, INPUT_SIZE], { clip: 0 }),
    ).rejects.toThrow(UnsupportedOptionError);
  });

  ctx.test('adversarial/chaotic-map-stops-early', async () => {
    const T = 2000;
    const x = new Float64Array(T);
    const got = await run(ctx.backend(), ctx.dtype, logistic(), {}, x, [1, T, 1], { h0: [0.3] });
    // Newton cannot converge in few iterations on a chaotic map: it must notice and stop early.
    expect(got.stats.converged).toBe(false);
    expect(got.stats.fellBack).toBe(true);
    expect(got.stats.iterations, 'iterations before giving up').toBeLessThanOrEqual(40);
    expect(got.stats.stopReason).not.toBe('maxIter');
    expect(maxAbsDiff(got.y, got.seq), 'the fallback is the sequential answer').toBe(0);
    ctx.report(
      `logistic map T=${T}: gave up after ${got.stats.iterations} iterations (${got.stats.stopReason})`,
    );
  });

  ctx.test('adversarial/one-bad-row', async () => {
    // Row 0 contracts (rate 0.5), row 2 expands past the clip (rate 1.1): only row 2 falls back.
    const T = 400;
    const B = 3;
    const x = new Float64Array(B * T * 2);
    const rates = [-0.5, -0.2, 0.1];
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        x[(b * T + t) * 2] = rates[b]!;
        x[(b * T + t) * 2 + 1] = Math.sin(t / 9 + b);
      }
    }
    const got = await run(ctx.backend(), ctx.dtype, rowRate(), {}, x, [B, T, 2]);
    expect(got.stats.fallbackRows).toBe(1);
    expect(got.stats.converged).toBe(false);
    expectSameTrajectory(got.y, got.seq, rel);
  });

  ctx.test('adversarial/non-finite-inputs', async () => {
    const backend = ctx.backend();
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const B = 2;
    const T = 30;
    const data = sequenceData(9, B, T, cell, ctx.dtype);
    const shape: [number, number, number] = [B, T, INPUT_SIZE];
    const bad = (a: ArrayLike<number>, i: number) =>
      Float64Array.from(a, (v, k) => (k === i ? Number.NaN : v));
    // checkFinite on: typed errors naming the argument.
    const xt = backend.tensor(bad(data.x, 5), shape, ctx.dtype);
    try {
      await expect(deer(backend, cell, data.params, xt)).rejects.toThrow(/^x: .*NaN/);
      await expect(deerWithGrad(backend, cell, data.params, xt)).rejects.toThrow(NonFiniteError);
    } finally {
      backend.dispose(xt);
    }
    const xGood = backend.tensor(data.x, shape, ctx.dtype);
    const guess = backend.tensor(bad(new Float64Array(B * T * 4), 3), [B, T, 4], ctx.dtype);
    const h0t = backend.tensor(bad(data.h0, 1), [B, 4], ctx.dtype);
    const Rt = backend.tensor(bad(data.params.R!, 2), [data.params.R!.length], ctx.dtype);
    try {
      await expect(deer(backend, cell, data.params, xGood, { initialGuess: guess })).rejects.toThrow(
        /initialGuess/,
      );
      await expect(deerWithGrad(backend, cell, data.params, xGood, { initialGuess: guess })).rejects.toThrow(
        /initialGuess/,
      );
      await expect(deer(backend, cell, data.params, xGood, { h0: h0t })).rejects.toThrow(/^h0: /);
      await expect(deer(backend, cell, { ...data.params, R: Rt }, xGood)).rejects.toThrow(/params\.R/);
      // checkFinite off: never a finite answer called converged; the result is what sequential gives.
      for (const options of [{ h0: h0t }, { initialGuess: guess, h0: data.h0 }] as DeerOptions[]) {
        const { y, stats } = await deer(backend, cell, data.params, xGood, {
          ...options,
          checkFinite: false,
        });
        const out = await backend.read(y);
        backend.dispose(y);
        const { y: ys } = await sequential(backend, cell, data.params, xGood, {
          h0: options.h0 ?? data.h0,
          checkFinite: false,
        });
        const seq = await backend.read(ys);
        backend.dispose(ys);
        if (seq.some(Number.isNaN)) expect(stats.converged).toBe(false);
        expectSameTrajectory(out, seq, rel);
      }
      const { y, stats } = await deer(backend, cell, { ...data.params, R: Rt }, xGood, {
        checkFinite: false,
      });
      const out = await backend.read(y);
      backend.dispose(y);
      expect(stats.converged).toBe(false);
      expect(out.some(Number.isNaN), 'NaN parameters give a NaN trajectory, as sequentially').toBe(true);
    } finally {
      for (const t of [xGood, guess, h0t, Rt]) backend.dispose(t);
    }
  });

  ctx.test('adversarial/overflow-inside-the-cell', async () => {
    // A value that overflows inside the cell (float32: e^101 = ∞, then ∞/∞ = NaN): deer gives what
    // sequential gives, finite or not, entry by entry, whatever evaluates the cell. On cpu B·T = 252
    // ran the interpreter and 256 generated JavaScript, whose float64 intermediates did not overflow:
    // in float32 sequential was NaN at 252 and deer (and sequential) finite at 256, "converged"; on
    // tfjs with the cpu kernels, sequential NaN (its host loop rounds every node) and deer finite
    // and converged. Without the softplus term the cpu's WebAssembly kernels ran, NaN again.
    const B = 4;
    for (const T of [63, 64]) {
      for (const softplus of [false, true]) {
        const label = `T=${T}${softplus ? ' with softplus' : ''}`;
        const x = new Float64Array(B * T).fill(1);
        const got = await run(ctx.backend(), ctx.dtype, overflowing(softplus), {}, x, [B, T, 1]);
        expect(got.y.length).toBe(got.seq.length);
        let first = -1;
        for (let i = 0; i < got.y.length && first < 0; i++)
          if (Number.isFinite(got.y[i]!) !== Number.isFinite(got.seq[i]!)) first = i;
        const at = first < 0 ? '' : ` (at ${first}: deer ${got.y[first]}, sequential ${got.seq[first]})`;
        expect(
          first,
          `${label}: the first entry finite in deer's trajectory and not in sequential's, or back${at}`,
        ).toBe(-1);
        const finite = got.seq.every(Number.isFinite);
        if (finite) {
          expect(got.stats.converged, `${label}: converged`).toBe(true);
          expectSameTrajectory(got.y, got.seq, rel);
        } else {
          expect(got.stats.converged, `${label}: a trajectory that is not finite is never converged`).toBe(
            false,
          );
        }
        ctx.report(
          `overflow inside the cell, ${label}: ${finite ? 'finite' : 'not finite'} (deer: ${got.stats.stopReason})`,
        );
      }
    }
  });

  ctx.test('adversarial/tolerance-below-the-dtype-resolution', async () => {
    // A residual in float32 (float64) resolves nothing finer than about 2 ulps of |y|: at a fixed
    // point of the rounded step it is exactly 0. A tolerance a tenth of that is never "converged"
    // (it was: rtol 1e-9 in float32 came back converged, 100× the tolerance off the float64 answer).
    const backend = ctx.backend();
    const resolution = ctx.dtype === 'float64' ? 2 ** -51 : 2 ** -22;
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const data = sequenceData(31, 2, 300, cell, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, 2, 300);
    for (const method of ['deer', 'elk', 'shoot'] as const) {
      const fine = { atol: resolution / 10, rtol: resolution / 10, method };
      const kept = await solveOnBackend(backend, cell, data, 2, 300, ctx.dtype, { ...fine, fallback: 'none' });
      expect(kept.stats.converged, `${method}: converged at a tolerance below the resolution`).toBe(false);
      expect(maxAbsDiff(kept.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
      const answered = await solveOnBackend(backend, cell, data, 2, 300, ctx.dtype, fine);
      expect(answered.stats.converged).toBe(false);
      // The residual met it only as rounded ('rounding', answer kept), or Newton stalled and the
      // sequential fallback answered.
      if (!answered.stats.fellBack) expect(answered.stats.stopReason).toBe('rounding');
      expect(maxAbsDiff(answered.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
      if (!answered.stats.fellBack) {
        await expect(solveOnBackend(backend, cell, data, 2, 300, ctx.dtype, { ...fine, fallback: 'throw' })).rejects.toThrow(
          /only as rounded/,
        );
      }
      const coarse = await solveOnBackend(backend, cell, data, 2, 300, ctx.dtype, {
        atol: resolution * 100,
        rtol: resolution * 100,
        method,
      });
      expect(coarse.stats.converged, `${method} at 100× the resolution`).toBe(true);
    }
  });

  ctx.test('adversarial/converged-means-small-residual', async () => {
    // Large weights (uniform ±3, as onnxruntime's tests use) over many seeds and sizes: whatever
    // Newton reports as converged must satisfy the recurrence step by step.
    for (const [k, n, T] of [
      [0, 33, 17],
      [1, 8, 200],
      [2, 16, 64],
    ] as const) {
      const cell = CELL_FAMILIES[0]!.make(n, INPUT_SIZE);
      const data = sequenceData(40 + k, 2, T, cell, ctx.dtype);
      const params: Record<string, Float64Array> = {};
      for (const [name, v] of Object.entries(data.params)) {
        params[name] = Float64Array.from(v, (_, i) => {
          const u = Math.sin(1000 * (i + 1) * (k + 1)) * 3;
          return ctx.dtype === 'float32' ? Math.fround(u) : u;
        });
      }
      const got = await run(ctx.backend(), ctx.dtype, cell, params, data.x, [2, T, INPUT_SIZE], {
        h0: data.h0,
      });
      const resid = await scaledResidual(
        ctx.oracle(),
        cell,
        params,
        data.x,
        got.y,
        [2, T, INPUT_SIZE],
        data.h0,
        tol,
      );
      // float32 storage of y alone costs up to ~eps·|y| per entry.
      expect(resid, `${cell.name} n=${n} T=${T}: one-step residual (scaled)`).toBeLessThanOrEqual(
        ctx.dtype === 'float32' ? 2 : 1,
      );
      if (got.stats.converged) expect(got.stats.residual).toBeLessThanOrEqual(1);
    }
  });

  ctx.test(
    'adversarial/float32-long-sequence',
    async () => {
      const cell = CELL_FAMILIES[0]!.make(2, INPUT_SIZE);
      const T = 100_000;
      const data = sequenceData(77, 1, T, cell, ctx.dtype);
      const ref = await oracleTrajectory(ctx.oracle(), cell, data, 1, T);
      const got = await run(ctx.backend(), ctx.dtype, cell, data.params, data.x, [1, T, INPUT_SIZE], {
        h0: data.h0,
      });
      expect(got.stats.converged).toBe(true);
      expect(maxAbsDiff(got.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
      ctx.report(
        `GRU n=2 T=${T}: ${got.stats.iterations} iterations, max abs err ${maxAbsDiff(got.y, ref).toExponential(2)}`,
      );
    },
    300_000,
  );

  ctx.test('adversarial/backward-overflowing-scan', async () => {
    // y = 2y + x from 0 with x = 0: y ≡ 0, J ≡ 2. The adjoint of dy = e_1 is λ_1 = 1, λ_t = 0
    // (t > 1), but a parallel reverse scan forms products 2^k that overflow (k > 1023).
    const backend = ctx.backend();
    const T = 1100;
    const cell = scaledSum(1);
    const x = backend.tensor(new Float64Array(T), [1, T, 1], ctx.dtype);
    const dy = backend.tensor(
      Float64Array.from({ length: T }, (_, t) => (t === 0 ? 1 : 0)),
      [1, T, 1],
      ctx.dtype,
    );
    const r = await deerWithGrad(backend, cell, { a: [2] }, x);
    try {
      const g = await r.vjp(dy);
      const dx = await backend.read(g.x);
      const da = await backend.read(g.params.a!);
      for (const t of [g.x, g.h0, ...Object.values(g.params)]) backend.dispose(t);
      expect(dx[0]).toBe(1);
      expect(dx.slice(1).every((v) => v === 0)).toBe(true);
      expect(da[0]).toBe(0);
      expect(g.stats.nonFinite).toBe(0);
      ctx.report(`backward overflow T=${T}: sequential reverse windows ${g.stats.sequentialWindows}`);
    } finally {
      r.dispose();
      backend.dispose(x);
      backend.dispose(dy);
    }
  });

  ctx.test('adversarial/backward-counts-non-finite-gradients', async () => {
    // y = 3y + 1 from 0 overflows to +Inf (3^700 is past float64's range), and the loss reads only
    // y_1 and y_2: λ is 0 from t = 3 on, but ∂L/∂a = Σ λ_t·y_{t−1} meets 0·∞ there. Whatever a
    // backend returns for those terms, stats.nonFinite must count every NaN/Inf gradient entry.
    const backend = ctx.backend();
    const T = 700;
    const cell = scaledSum(1);
    const x = backend.tensor(new Float64Array(T).fill(1), [1, T, 1], ctx.dtype);
    const dy = backend.tensor(
      Float64Array.from({ length: T }, (_, t) => (t < 2 ? 1 : 0)),
      [1, T, 1],
      ctx.dtype,
    );
    const r = await deerWithGrad(backend, cell, { a: [3] }, x);
    try {
      expect(r.stats.converged).toBe(false);
      const g = await r.vjp(dy);
      const outs = [...Object.values(g.params), g.x, g.h0];
      let bad = 0;
      for (const t of outs) for (const v of await backend.read(t)) if (!Number.isFinite(v)) bad++;
      const dx = await backend.read(g.x);
      for (const t of outs) backend.dispose(t);
      // ∂L/∂x_1 = λ_1 = 1 + 3, ∂L/∂x_2 = 1: exact, whatever happens past the overflow.
      expect([dx[0], dx[1]]).toEqual([4, 1]);
      expect(bad).toBeGreaterThan(0);
      expect(g.stats.nonFinite).toBe(bad);
      ctx.report(`backward through an overflowed trajectory: ${bad} non-finite gradient entries, all counted`);
    } finally {
      r.dispose();
      backend.dispose(x);
      backend.dispose(dy);
    }
  });

  ctx.test('adversarial/ode-stiff-beside-gentle', async () => {
    // dy/dt = x·y with x = −1 (row 0) and −1e6 (row 1) in one batch: one scaling exponent must not
    // cost the gentle row its accuracy. Exact for linear fields: y(t) = e^{x t}.
    const backend = ctx.backend();
    const field = defineCell({ name: 'decay', state: 1, input: 1, params: {} }, (y, x) => mul(x, y));
    const N = 50;
    const t = Array.from({ length: N + 1 }, (_, i) => i / N);
    const xs = backend.tensor(
      Float64Array.from({ length: 2 * (N + 1) }, (_, i) => (i <= N ? -1 : -1e6)),
      [2, N + 1, 1],
      ctx.dtype,
    );
    try {
      const { y, stats } = await solveIvp(backend, field, {}, { y0: [1, 1], t, x: xs });
      const out = await backend.read(y);
      backend.dispose(y);
      expect(stats.converged).toBe(true);
      let worst = 0;
      for (let i = 1; i <= N; i++)
        worst = Math.max(worst, Math.abs(out[i - 1]! - Math.exp(-t[i]!)) / Math.exp(-t[i]!));
      ctx.report(`ODE gentle row beside a stiff one: max relative error ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(ctx.dtype === 'float64' ? 1e-12 : 2e-5);
      for (let i = 1; i <= N; i++) expect(Math.abs(out[N + i - 1]!)).toBeLessThanOrEqual(1e-6);
    } finally {
      backend.dispose(xs);
    }
  });

  ctx.test(
    'adversarial/ode-bad-grids-and-blowup',
    async () => {
      const backend = ctx.backend();
      const field = defineCell({ name: 'square', state: 1, input: 0, params: {} }, (y) => mul(y, y));
      for (const t of [
        [0, 1, Number.POSITIVE_INFINITY],
        [Number.NEGATIVE_INFINITY, 0, 1],
        [-1e308, 1e308],
        [0, Number.NaN, 1],
      ]) {
        await expect(solveIvp(backend, field, {}, { y0: [1], t })).rejects.toThrow(ShapeError);
      }
      // y' = y² from 1 blows up at t = 1: dopri5's steps underflow there, a typed error, not a hang.
      const t = Array.from({ length: 21 }, (_, i) => (i * 2) / 20);
      await expect(dopri5(backend, field, {}, { y0: [1], t })).rejects.toThrow(StepSizeError);
      // DEER on it: its sequential fallback is dopri5, so an answer it returns must be a converged
      // one of the discrete scheme (residual within tolerance); otherwise the fallback's typed error.
      try {
        const { y, stats } = await solveIvp(backend, field, {}, { y0: [1], t }, { maxIter: 30 });
        backend.dispose(y);
        expect(stats.converged).toBe(true);
        expect(stats.residual).toBeLessThanOrEqual(1);
      } catch (err) {
        expect(err).toBeInstanceOf(StepSizeError);
      }
    },
    120_000,
  );

  ctx.test('adversarial/ode-options-and-arguments', async () => {
    // The ODE entry points refuse what they would otherwise misread: a negative tolerance made
    // dopri5 accept every step (no error control), null y0 and string times were read through.
    const backend = ctx.backend();
    const field = defineCell({ name: 'decay', state: 2, input: 0, params: {} }, (y) => mul(constant(-1), y));
    const problem = { y0: [1, 2], t: [0, 0.5, 1] };
    for (const o of [{ atol: -1 }, { rtol: -1, atol: 1e-12 }, { atol: 0, rtol: 0 }, { atol: Number.NaN }, { maxSteps: 0 }, { bogus: 1 }]) {
      await expect(dopri5(backend, field, {}, problem, o as never), JSON.stringify(o)).rejects.toThrow(UnsupportedOptionError);
    }
    for (const o of [{ substeps: 0 }, { substeps: 1.5 }, { bogus: 1 }, { checkFinite: 'yes' }]) {
      await expect(rk4(backend, field, {}, problem, o as never), JSON.stringify(o)).rejects.toThrow(UnsupportedOptionError);
    }
    for (const solve of [
      (pr: unknown) => solveIvp(backend, field, {}, pr as never),
      (pr: unknown) => dopri5(backend, field, {}, pr as never),
      (pr: unknown) => rk4(backend, field, {}, pr as never),
    ]) {
      await expect(solve({ ...problem, y0: null })).rejects.toThrow(InvalidArgumentError);
      await expect(solve({ ...problem, y0: 3 })).rejects.toThrow(InvalidArgumentError);
      await expect(solve({ ...problem, t: ['0', '1'] })).rejects.toThrow(InvalidArgumentError);
      // y0 of two rows with a batch of 3.
      await expect(solve({ y0: [1, 2, 3, 4], t: [0, 1], batch: 3 })).rejects.toThrow(ShapeError);
    }
    await expect(solveIvp(backend, field, {}, problem, { initialGuess: 'h0' as never })).rejects.toThrow(UnsupportedOptionError);
    await expect(solveIvp(backend, field, {}, problem, { initialGuess: null as never })).rejects.toThrow(UnsupportedOptionError);
    await expect(solveIvpWithGrad(backend, field, {}, problem, { initialGuess: null as never })).rejects.toThrow(UnsupportedOptionError);
    // ivpVjp checks y and dy as solveIvpWithGrad's vjp checks dy: dtype, then finite values.
    const y0 = backend.tensor([1, 2], [2], ctx.dtype);
    const { y } = await rk4(backend, field, {}, { ...problem, y0 });
    backend.dispose(y0);
    const bad = backend.tensor([1, Number.NaN, 0, 0], [1, 2, 2], ctx.dtype);
    try {
      await expect(ivpVjp(backend, field, {}, { ...problem, y0: [1, 2] }, y, bad)).rejects.toThrow(NonFiniteError);
      const g = await solveIvpWithGrad(backend, field, {}, { ...problem, y0: [1, 2] });
      try {
        await expect(g.vjp(bad)).rejects.toThrow(NonFiniteError);
      } finally {
        g.dispose();
      }
      const other = ctx.dtype === 'float64' ? 'float32' : 'float64';
      if (backend.capabilities.dtypes.includes(other)) {
        const dy = backend.tensor([1, 1, 1, 1], [1, 2, 2], other);
        try {
          await expect(ivpVjp(backend, field, {}, problem, y, dy)).rejects.toThrow(DTypeError);
        } finally {
          backend.dispose(dy);
        }
      }
    } finally {
      backend.dispose(bad);
      backend.dispose(y);
    }
  });

  ctx.test('adversarial/options-and-arguments', async () => {
    const backend = ctx.backend();
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const p = cell.init();
    const x = backend.tensor(new Float64Array(2 * 5 * INPUT_SIZE).fill(0.1), [2, 5, INPUT_SIZE], ctx.dtype);
    try {
      await expect(deer(backend, cell, p, x, { maxiter: 3 } as never)).rejects.toThrow(
        /maxiter.*did you mean 'maxIter'/,
      );
      await expect(deer(backend, cell, p, x, { atol: Number.NaN })).rejects.toThrow(/got NaN/);
      await expect(deer(backend, cell, p, x, { clip: -1 })).rejects.toThrow(UnsupportedOptionError);
      await expect(deer(backend, cell, p, x, { checkFinite: 'yes' as never })).rejects.toThrow(
        UnsupportedOptionError,
      );
      await expect(deer(backend, cell, p, {} as never)).rejects.toThrow(InvalidArgumentError);
      await expect(deer(backend, cell, null as never, x)).rejects.toThrow(InvalidArgumentError);
      await expect(deer(backend, cell, p, x, { initialGuess: {} as never })).rejects.toThrow(
        InvalidArgumentError,
      );
      await expect(sequential(backend, cell, p, x, { window: 2 } as never)).rejects.toThrow(
        UnsupportedOptionError,
      );
      await expect(
        solveIvp(backend, cell, p, { y0: [0, 0, 0, 0], t: [0, 1], batch: 0 } as never),
      ).rejects.toThrow(/batch/);
      const r = await deerWithGrad(backend, cell, p, x);
      try {
        await expect(r.vjp({} as never)).rejects.toThrow(InvalidArgumentError);
        const other = ctx.dtype === 'float64' ? 'float32' : 'float64';
        if (backend.capabilities.dtypes.includes(other)) {
          const dy = backend.tensor(new Float64Array(2 * 5 * 4), [2, 5, 4], other);
          try {
            await expect(r.vjp(dy)).rejects.toThrow(DTypeError);
          } finally {
            backend.dispose(dy);
          }
        }
      } finally {
        r.dispose();
      }
      await expect(deer(backend, cell, p, x, { maxIter: 1, fallback: 'throw' })).rejects.toThrow(
        ConvergenceError,
      );
    } finally {
      backend.dispose(x);
    }
  });
}
