import {
  type Backend,
  type Cell,
  type DType,
  cells,
  ConvergenceError,
  DEFAULT_TOLERANCE,
  deer,
  deerWithGrad,
  defineCell,
  lang,
  Rng,
  sequential,
  UnsupportedOptionError,
  withCapabilities,
} from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { CELL_FAMILIES, INPUT_SIZE, maxAbsDiff, maxRelDiff, sequenceData } from './fixtures.js';
import { oracleTrajectory, solveOnBackend } from './solve-cases.js';

const { add, mul, sub, tanh, constant, slice } = lang;

/** y = tanh(w ⊙ y + x): an elementwise cell, whose exact Jacobian is diagonal (ELK = quasi-ELK). */
const diagonalTanh = (n: number): Cell =>
  defineCell(
    { name: 'diagonal-tanh', state: n, input: n, params: { w: [n] }, init: { w: { uniform: 0.9 } } },
    (h, x, p) => tanh(add(mul(p.w, h), x)),
  );

/** The logistic map at r = 3.9 (chaotic). */
const logistic = (): Cell =>
  defineCell({ name: 'logistic', state: 1, input: 1, params: {} }, (h, x) =>
    add(mul(constant(3.9), mul(h, sub(constant(1), h))), mul(constant(0), x)),
  );

/** y = tanh(3y + x): two attractors near ±1, contractive at each; a state that crosses stays. */
const latch = (): Cell =>
  defineCell({ name: 'latch', state: 1, input: 1, params: {} }, (h, x) => tanh(add(mul(constant(3), h), x)));

/** y = 0.999·y + x: forgets slowly, but linear (Newton is exact in one step). */
const leaky = (): Cell =>
  defineCell({ name: 'leaky', state: 1, input: 1, params: {} }, (h, x) => add(mul(constant(0.999), h), x));

/**
 * The backend as a device of `lanes` lanes whose reads cost no stated round trip and whose
 * sequential steps run on one lane (what 'auto''s cost model reads), whatever the backend's own
 * figures: the cases below then make the same choices on every backend. (A GPU backend states a
 * round trip, which prices 'auto''s probe: on these short problems the model would rightly pick
 * sequential evaluation, and the Newton paths under test would not run.)
 */
const withParallelism = (backend: Backend, lanes: number): Backend =>
  withCapabilities(backend, { parallelism: lanes, iterationOverhead: undefined, sequentialStep: undefined });

/**
 * Counts the row-steps (B·T) `backend.runSequential` runs until `restore()`, by shadowing the
 * method on the instance (views made by withCapabilities call it through the instance).
 */
function countSequentialSteps(backend: Backend): { steps(): number; restore(): void } {
  let steps = 0;
  const own = Object.getOwnPropertyDescriptor(backend, 'runSequential');
  const run = backend.runSequential;
  const counting: Backend['runSequential'] = function (this: Backend, program, inputs) {
    if (!inputs.input) throw new Error('countSequentialSteps: a runSequential call without input');
    steps += inputs.input.shape[0]! * inputs.input.shape[1]!;
    return run.call(this, program, inputs);
  };
  Object.defineProperty(backend, 'runSequential', { value: counting, configurable: true, writable: true });
  return {
    steps: () => steps,
    restore: () => {
      if (own) Object.defineProperty(backend, 'runSequential', own);
      else delete (backend as { runSequential?: unknown }).runSequential;
    },
  };
}

/**
 * A problem of deer-study: an Elman cell (n = 8) with every parameter at `scale` × its initial
 * value (seed `seed`) and standard normal inputs from Rng(`inputSeed`), rounded to the dtype.
 */
function scaledElman(scale: number, seed: number, inputSeed: number, B: number, T: number, dtype: DType) {
  const cell = cells.elman({ inputSize: 2, hiddenSize: 8 });
  const round = dtype === 'float32' ? Math.fround : (v: number) => v;
  const params = cell.init({ seed });
  for (const k of Object.keys(params)) params[k] = params[k]!.map((v) => round(scale * v));
  return { cell, x: new Rng(inputSeed).normalArray(B * T * 2).map(round), h0: new Float64Array(B * 8), params };
}

/** A GRU (n = 8) with every parameter at `scale` × its initial value, as `scaledElman`. */
function scaledGru(scale: number, seed: number, inputSeed: number, B: number, T: number, dtype: DType) {
  const cell = cells.gru({ inputSize: 2, hiddenSize: 8 });
  const round = dtype === 'float32' ? Math.fround : (v: number) => v;
  const params = cell.init({ seed });
  for (const k of Object.keys(params)) params[k] = params[k]!.map((v) => round(scale * v));
  const rng = new Rng(inputSeed);
  return { cell, x: rng.normalArray(B * T * 2).map(round), h0: rng.normalArray(B * 8, 0.5).map(round), params };
}

/** Lanes of a large GPU: DEER pays on every problem of these cases. */
const WIDE = 1e9;

/**
 * A scaled Elman problem (`scaledElman`) that full steps give up on, solved again by 'auto' on a
 * GPU's lanes: auto must converge without the fallback, as close to the oracle as the rows' own
 * sequential answer allows. That answer (DEER's fallback) measures how much the problem amplifies
 * rounding: in float32 it is 1–2e-5 from the float64 oracle, and auto's answer, rounded along
 * another path (a backend's sequential and Newton paths may use different arithmetic), may be off
 * by as much again.
 */
async function autoWhereDeerFails(ctx: SuiteContext, scale: number, seed: number, inputSeed: number, T: number) {
  const B = 2;
  const data = scaledElman(scale, seed, inputSeed, B, T, ctx.dtype);
  const ref = await oracleTrajectory(ctx.oracle(), data.cell, data, B, T);
  const plain = await solveOnBackend(ctx.backend(), data.cell, data, B, T, ctx.dtype);
  // Whether full steps give up one row or both within the budget turns on float32 detail (one
  // backend's tanh, one rounding): the case needs one that auto then rescues.
  expect(plain.stats.fallbackRows, 'full steps alone give rows up').toBeGreaterThanOrEqual(1);
  const wide = withParallelism(ctx.backend(), WIDE);
  const auto = await solveOnBackend(wide, data.cell, data, B, T, ctx.dtype, { method: 'auto' });
  // What shooting settles, full Newton steps confirm; in float32 a problem that amplifies rounding
  // this much can keep every full step past the tolerance (tfjs's float32 ops: 10–18×, at an answer
  // as close as the sequential one), and then the rows are finished sequentially, said so.
  const refused = auto.stats.switches.some((w) => w.includes('full Newton steps from there did not come within the tolerance'));
  if (ctx.dtype === 'float32' && refused) expect(auto.stats.fellBack).toBe(true);
  else {
    expect(auto.stats.converged).toBe(true);
    expect(auto.stats.fallbackRows).toBe(0);
  }
  expect(maxAbsDiff(auto.y, ref)).toBeLessThanOrEqual(2 * maxAbsDiff(plain.y, ref) + ctx.tolerance);
  return { plain: plain.stats, auto: auto.stats };
}

/** `method`: ELK's damped steps and 'auto', against the float64 sequential oracle. */
export function defineMethodCases(ctx: SuiteContext): void {
  ctx.test('method/elk-converges', async () => {
    // ELK takes the cell's exact structure (dense for the GRU), quasi-ELK the diagonal.
    const runs = [
      { cell: diagonalTanh(4), jacobian: 'auto', structure: 'diagonal' },
      { cell: CELL_FAMILIES[0]!.make(4, INPUT_SIZE), jacobian: 'auto', structure: 'dense' },
      { cell: CELL_FAMILIES[0]!.make(4, INPUT_SIZE), jacobian: 'diagonal', structure: 'diagonal' },
    ] as const;
    for (const { cell, jacobian, structure } of runs) {
      const data = sequenceData(301, 2, 300, cell, ctx.dtype);
      const ref = await oracleTrajectory(ctx.oracle(), cell, data, 2, 300);
      const got = await solveOnBackend(ctx.backend(), cell, data, 2, 300, ctx.dtype, { method: 'elk', jacobian });
      const what = `${cell.name}, jacobian ${jacobian}`;
      expect(got.stats.converged, `${what}: converged`).toBe(true);
      expect(got.stats.fellBack).toBe(false);
      expect(got.stats.elkIterations).toBeGreaterThan(0);
      // What ELK settled, one full step confirms (the step, not the residual, bounds the error);
      // in a quasi structure two, whose ratio bounds what the quasi iteration leaves.
      expect(got.stats.deerIterations, what).toBe(structure === 'diagonal' && jacobian === 'diagonal' ? 2 : 1);
      expect(got.stats.structure, what).toBe(structure);
      expect(got.stats.residual).toBeLessThanOrEqual(1);
      expect(maxAbsDiff(got.y, ref), what).toBeLessThanOrEqual(ctx.tolerance);
      ctx.report(`${what} T=300: ELK ${got.stats.elkIterations} iterations`);
    }
  });

  /**
   * 'elk' on an Elman problem of deer-study, whose rows ELK's steps leave for damped DEER steps:
   * converged without the fallback, as close to the oracle as the backend's own sequential answer
   * plus what the stopping rule leaves (the last step met atol + rtol·|y|, |y| ≤ 1 for tanh; the
   * margin is twice that).
   */
  const elkHandsOver = async (scale: number, seed: number, inputSeed: number, T: number, why: string) => {
    const B = 2;
    const data = scaledElman(scale, seed, inputSeed, B, T, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), data.cell, data, B, T);
    const x = ctx.backend().tensor(data.x, [B, T, 2], ctx.dtype);
    let seqErr: number;
    try {
      const seq = await sequential(ctx.backend(), data.cell, data.params, x, { h0: data.h0 });
      seqErr = maxAbsDiff(await ctx.backend().read(seq.y), ref);
      ctx.backend().dispose(seq.y);
    } finally {
      ctx.backend().dispose(x);
    }
    const got = await solveOnBackend(ctx.backend(), data.cell, data, B, T, ctx.dtype, { method: 'elk' });
    expect(got.stats.switches.some((s) => s.includes("stalled under ELK's trust region → damped DEER steps"))).toBe(true);
    expect(got.stats.converged).toBe(true);
    expect(got.stats.fallbackRows).toBe(0);
    // Damped steps count as ELK's; a row whose last one was capped is confirmed by a full step.
    expect(got.stats.deerIterations).toBeLessThanOrEqual(1);
    expect(got.stats.residual).toBeLessThanOrEqual(1);
    const tol = DEFAULT_TOLERANCE[ctx.dtype];
    expect(maxAbsDiff(got.y, ref)).toBeLessThanOrEqual(seqErr + 2 * (tol.atol + tol.rtol) + ctx.tolerance);
    ctx.report(`elman ×${scale} T=${T}: ELK ${got.stats.elkIterations} iterations, damped DEER steps after ${why}`);
  };

  // Elman ×8 (contractive along its trajectory, memory ~45 steps): far from the solution ELK's
  // steps barely lower the merit and its trust region stalls; the rows go on with damped DEER
  // steps and converge without the fallback (ELK alone gave both rows up).
  ctx.test('method/elk-stalled-rows-take-damped-steps', () => elkHandsOver(8, 12, 101, 200, 'the trust region stalled'));

  // Elman ×4 (seed 108): ELK's merit falls, but too slowly to reach the tolerance in the budget;
  // the rows leave the trust region while budget is left and finish on damped DEER steps (ELK
  // alone fell back on a row after 100 iterations in float64 and float32; now 36 and 60).
  ctx.test('method/elk-slow-rows-take-damped-steps', () => elkHandsOver(4, 108, 1108, 300, 'its rate fell short'));

  ctx.test('method/elk-converged-is-close-where-the-recurrence-expands', async () => {
    // h_t = tanh(1.5·h_{t−1} + x_t) over 250 zero inputs stays at its unstable fixed point 0, then
    // random inputs follow. A residual of 1e-17 at one step grows ×1.5 a step there: ELK's
    // iterate, each step's residual within tolerance, had left 0 and settled 0.15 off the answer,
    // reported converged. Converged must mean close to the sequential answer.
    const cell = defineCell({ state: 1, input: 1, params: { w: [1] } }, (h, x, p) => lang.tanh(lang.add(lang.mul(p.w, h), x)));
    const [B, T] = [2, 300];
    const rng = new Rng(343);
    const x = Float64Array.from({ length: B * T }, (_, i) => (i % T < 250 ? 0 : Math.fround(4 * (rng.uniform() - 0.5))));
    const data = { x, h0: new Float64Array(B), params: { w: Float64Array.of(1.5) } };
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, B, T);
    for (const method of ['elk', 'deer'] as const) {
      const got = await solveOnBackend(ctx.backend(), cell, data, B, T, ctx.dtype, { method, fallback: 'none' });
      expect(got.stats.converged, method).toBe(true);
      expect(maxAbsDiff(got.y, ref), method).toBeLessThanOrEqual(ctx.tolerance);
    }
  });

  ctx.test('method/quasi-converged-is-close-where-the-recurrence-expands', async () => {
    // h = tanh(R·h + x) with R = [[0, 1.2], [1.2, 0]] and inputs of 1e-12: the state grows ×1.2 a
    // step through R's off-diagonal entries until it saturates near 0.66. The diagonal Jacobian is
    // zero, so the quasi step is the fixed-point sweep y ← G(y): from zero its first step is below
    // the tolerance everywhere, and quasi-DEER / quasi-ELK had reported converged 0.66 off the
    // answer after 1–2 iterations. Converged must mean close, whatever the structure.
    const cell = defineCell({ state: 2, input: 1, params: { R: [2, 2], w: [2, 1] } }, (h, x, p) =>
      lang.tanh(lang.add(lang.matvec(p.R, h), lang.matvec(p.w, x))),
    );
    const [B, T] = [1, 400];
    const x = Float64Array.from({ length: T }, (_, t) => (ctx.dtype === 'float32' ? Math.fround(1e-12 * Math.sin(t + 1)) : 1e-16 * Math.sin(t + 1)));
    const data = { x, h0: new Float64Array(2), params: { R: Float64Array.of(0, 1.2, 1.2, 0), w: Float64Array.of(1, 1) } };
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, B, T);
    for (const method of ['deer', 'elk'] as const) {
      const what = `${method}, diagonal`;
      // Budgets that end on the first quasi steps too: a row settling on the last iteration.
      for (const maxIter of [1, 2, 100]) {
        const none = await solveOnBackend(ctx.backend(), cell, data, B, T, ctx.dtype, { method, jacobian: 'diagonal', fallback: 'none', maxIter });
        if (none.stats.converged) expect(maxAbsDiff(none.y, ref), `${what}, maxIter ${maxIter}: converged`).toBeLessThanOrEqual(ctx.tolerance);
      }
      const got = await solveOnBackend(ctx.backend(), cell, data, B, T, ctx.dtype, { method, jacobian: 'diagonal' });
      expect(maxAbsDiff(got.y, ref), what).toBeLessThanOrEqual(ctx.tolerance);
    }
  });

  ctx.test('method/shooting-converged-is-close-where-the-recurrence-expands', async () => {
    // h = 10·tanh((1.1·h + x)/10) with inputs of 1e-12: the state grows ×1.1 a step from ~0 and
    // saturates at ±5. After one sweep of parallel shooting every chunk had run from ~0 and ended
    // below the tolerance, so its start "settled" at ~0, each jump tiny: reported converged with
    // the answer ~1e-8 where it is 5. Converged must mean close.
    const cell = defineCell({ state: 1, input: 1, params: { w: [1] } }, (h, x, p) =>
      lang.mul(lang.tanh(lang.mul(lang.add(lang.mul(h, 1.1), lang.mul(p.w, x)), 0.1)), 10),
    );
    const [B, T] = [1, 2000];
    const x = Float64Array.from({ length: T }, (_, t) => (ctx.dtype === 'float32' ? Math.fround(1e-12 * Math.sin(t + 1)) : 1e-16 * Math.sin(t + 1)));
    const data = { x, h0: new Float64Array(1), params: { w: Float64Array.of(1) } };
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, B, T);
    const none = await solveOnBackend(ctx.backend(), cell, data, B, T, ctx.dtype, { method: 'shoot', fallback: 'none' });
    // Relative to |y| (floor 1): the state reaches 5, where float32 rounds to 5e-7.
    if (none.stats.converged) expect(maxRelDiff(none.y, ref, 1), 'converged').toBeLessThanOrEqual(ctx.tolerance);
    const got = await solveOnBackend(ctx.backend(), cell, data, B, T, ctx.dtype, { method: 'shoot' });
    expect(maxRelDiff(got.y, ref, 1)).toBeLessThanOrEqual(ctx.tolerance);
  });

  ctx.test('method/shooting-answers-past-the-clip', async () => {
    // h = 0.5·h + 1e9 settles at 2e9, past the default clip (1e8), which bounds Newton's steps, not
    // y: the full steps that confirm what shooting settled had clipped the answer to 1e8 and kept it,
    // converged.
    const cell = defineCell({ state: 1, input: 1, params: {} }, (h, x) => lang.add(lang.mul(h, 0.5), lang.add(lang.mul(x, 0), 1e9)));
    const [B, T] = [1, 200];
    const data = { x: new Float64Array(T), h0: new Float64Array(1), params: {} };
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, B, T);
    for (const fallback of ['none', 'sequential'] as const) {
      const got = await solveOnBackend(ctx.backend(), cell, data, B, T, ctx.dtype, { method: 'shoot', fallback });
      if (fallback === 'sequential' || got.stats.converged) expect(maxRelDiff(got.y, ref, 1), fallback).toBeLessThanOrEqual(ctx.tolerance);
    }
  });

  ctx.test('method/elk-at-the-answer-converges-at-once', async () => {
    // Started at the answer, ELK's candidate and iterate differ by rounding, and so do their
    // merits: a rule that took only strictly lower merits rejected every step until the trust
    // region stalled (14 iterations where DEER takes 1). One ELK step, one full step confirming.
    const cell = CELL_FAMILIES[0]!.make(8, INPUT_SIZE);
    const [B, T] = [2, 300];
    const data = sequenceData(341, B, T, cell, ctx.dtype);
    const backend = ctx.backend();
    const x = backend.tensor(data.x, [B, T, INPUT_SIZE], ctx.dtype);
    try {
      const seq = await sequential(backend, cell, data.params, x, { h0: data.h0 });
      try {
        for (const jacobian of ['auto', 'diagonal'] as const) {
          const got = await deer(backend, cell, data.params, x, { h0: data.h0, method: 'elk', jacobian, initialGuess: seq.y });
          const y = await backend.read(got.y);
          backend.dispose(got.y);
          expect(got.stats.converged, jacobian).toBe(true);
          // One ELK step, one full step confirming; the diagonal, quasi for a GRU, judges its rate by
          // two full steps unless the first is exactly 0, and at the answer in float32 that rate is
          // the ratio of two rounding errors: a few steps (tfjs's float32 ops: 4).
          expect(got.stats.elkIterations, jacobian).toBe(1);
          expect(got.stats.deerIterations, jacobian).toBeGreaterThanOrEqual(1);
          expect(got.stats.deerIterations, jacobian).toBeLessThanOrEqual(jacobian === 'diagonal' ? 6 : 1);
          expect(got.stats.switches, jacobian).toEqual([]);
          expect(got.stats.residual).toBeLessThanOrEqual(1);
          expect(maxAbsDiff(y, await backend.read(seq.y)), jacobian).toBeLessThanOrEqual(ctx.tolerance);
        }
      } finally {
        backend.dispose(seq.y);
      }
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('method/elk-keeps-the-finite-depth-budget', async () => {
    // A recurrence of T steps is solved exactly by T sequential steps, so no method gets more than
    // T + 1 iterations: ELK's damped steps, which are not exact after T of them, had taken 8 at
    // T = 1 and 33 at T = 3 on this Elman ×12 problem. The fallback answers after the budget.
    for (const T of [1, 3]) {
      const data = scaledElman(12, 3, 203, 2, T, ctx.dtype);
      data.h0.set(new Rng(7).normalArray(16, 3).map(ctx.dtype === 'float32' ? Math.fround : (v) => v));
      const ref = await oracleTrajectory(ctx.oracle(), data.cell, data, 2, T);
      const got = await solveOnBackend(ctx.backend(), data.cell, data, 2, T, ctx.dtype, { method: 'elk' });
      expect(got.stats.iterations, `T=${T}`).toBeLessThanOrEqual(T + 1);
      expect(maxAbsDiff(got.y, ref), `T=${T}`).toBeLessThanOrEqual(ctx.tolerance);
      if (!got.stats.converged) expect(got.stats.fallbackRows, `T=${T}`).toBeGreaterThan(0);
    }
  });

  ctx.test('method/auto-no-more-iterations-than-deer', async () => {
    for (const family of CELL_FAMILIES.slice(0, 4)) {
      const cell = family.make(8, INPUT_SIZE);
      const data = sequenceData(311, 2, 500, cell, ctx.dtype);
      // The same Jacobian for both (the cost model's choice of structure has a case of its own):
      // 'auto''s Newton path adds no iterations to DEER's.
      const jacobian = { block: cell.exactBlockSize };
      const plain = await solveOnBackend(ctx.backend(), cell, data, 2, 500, ctx.dtype, { jacobian });
      const wide = withParallelism(ctx.backend(), WIDE);
      const auto = await solveOnBackend(wide, cell, data, 2, 500, ctx.dtype, { method: 'auto', jacobian });
      expect(plain.stats.converged).toBe(true);
      expect(auto.stats.converged).toBe(true);
      expect(auto.stats.iterations, cell.name).toBeLessThanOrEqual(plain.stats.iterations);
      expect(auto.stats.lyapunov!, 'a contractive GRU is not chaotic').toBeLessThan(0);
      expect(maxAbsDiff(auto.y, plain.y)).toBeLessThanOrEqual(ctx.tolerance);
    }
  });

  // A probe of one or two steps had estimated a positive exponent for a contractive GRU (one
  // Jacobian can stretch a vector, and the start vector was not of unit length) and sent the rows
  // sequential as 'chaotic': converged false, ConvergenceError with 'throw', h0 with 'none'.
  ctx.test('method/auto-short-rows-are-not-chaotic', async () => {
    const cell = CELL_FAMILIES[0]!.make(16, INPUT_SIZE);
    const wide = withParallelism(ctx.backend(), WIDE);
    // T = 1, 2, 5: the cost model may send them sequential before any probe; windows of 1 and 2 reach it.
    for (const [T, window] of [[1, undefined], [2, undefined], [5, undefined], [40, 1], [40, 2]] as const) {
      const data = sequenceData(317 + T, 2, T, cell, ctx.dtype);
      const ref = await oracleTrajectory(ctx.oracle(), cell, data, 2, T);
      const got = await solveOnBackend(wide, cell, data, 2, T, ctx.dtype, { method: 'auto', fallback: 'none', ...(window ? { window } : {}) });
      const what = `T=${T}, window ${window ?? 'none'}`;
      expect(got.stats.converged, what).toBe(true);
      // Newton, or sequential evaluation where the cost model prefers it: not 'chaotic'.
      expect(['tolerance', 'sequential'], what).toContain(got.stats.stopReason);
      expect(maxAbsDiff(got.y, ref), what).toBeLessThanOrEqual(ctx.tolerance);
    }
  });

  ctx.test('method/deer-judges-a-slow-front-patiently', async () => {
    // An Elman cell at 3× its initial scale: full Newton steps settle the trajectory a step or two
    // per iteration for a while, then the rest at once. A judge that projected the early rate gave
    // both rows up after 11 iterations (cpu, float32 and float64); DEER converges in under 30.
    const [B, T] = [2, 300];
    const data = scaledElman(3, 7, 107, B, T, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), data.cell, data, B, T);
    const got = await solveOnBackend(ctx.backend(), data.cell, data, B, T, ctx.dtype);
    expect(got.stats.converged).toBe(true);
    expect(got.stats.fallbackRows).toBe(0);
    expect(got.stats.iterations, 'longer than the slow phase').toBeGreaterThan(11);
    expect(got.stats.residual).toBeLessThanOrEqual(1);
    expect(maxAbsDiff(got.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    ctx.report(`elman ×3 T=${T}: DEER converged in ${got.stats.iterations} iterations`);
  });

  ctx.test('method/auto-damped-steps-rescue-overshoot', async () => {
    // An Elman cell with every parameter at 8× its initial scale: contractive along its trajectory
    // (saturated) and short of memory, but full Newton steps from the first guess overshoot
    // through the unsaturated region and DEER runs its budget out; 'auto' switches the rows to
    // damped steps, which its memory probe says finish in time, and converges without the fallback.
    const T = 300;
    const { plain, auto } = await autoWhereDeerFails(ctx, 8, 12, 101, T);
    expect(auto.elkIterations).toBeGreaterThan(0);
    expect(auto.switches.some((w) => w.includes('→ damped steps'))).toBe(true);
    expect(auto.residual).toBeLessThanOrEqual(1);
    ctx.report(`elman ×8 T=${T}: DEER fell back on ${plain.fallbackRows} rows; auto ${auto.deerIterations} full + ${auto.elkIterations} damped steps`);
  });

  ctx.test('method/auto-chaotic-goes-sequential', async () => {
    // Long enough that the cost model picks DEER: the chaos probe is what sends it sequential.
    const backend = withParallelism(ctx.backend(), WIDE);
    const T = 100_000;
    const x = backend.tensor(new Float64Array(2 * T), [2, T, 1], ctx.dtype);
    const counted = countSequentialSteps(ctx.backend());
    try {
      const { y, stats } = await deer(backend, logistic(), {}, x, { h0: [0.3, 0.6], method: 'auto' });
      // Every row chaotic: no memory runs, and the sequential answer continues the probe's
      // prefix — each step evaluated once.
      expect(counted.steps(), 'sequential row-steps run by auto').toBe(2 * T);
      counted.restore();
      const got = await backend.read(y);
      backend.dispose(y);
      const { y: ys } = await sequential(backend, logistic(), {}, x, { h0: [0.3, 0.6] });
      const seq = await backend.read(ys);
      backend.dispose(ys);
      // Recognised before any Newton work: the answer is the sequential one, bit for bit.
      expect(stats.stopReason).toBe('chaotic');
      expect(stats.iterations).toBe(0);
      expect(stats.fallbackRows).toBe(2);
      expect(stats.lyapunov!).toBeGreaterThan(0.3);
      expect(maxAbsDiff(got, seq)).toBe(0);
      // Sequential evaluation is 'auto''s way with chaotic rows, whatever `fallback` says: under
      // 'none' they had come back as zeros (the first iterate), under 'throw' as an error.
      for (const fallback of ['none', 'throw'] as const) {
        const other = await deer(backend, logistic(), {}, x, { h0: [0.3, 0.6], method: 'auto', fallback });
        const again = await backend.read(other.y);
        backend.dispose(other.y);
        expect(maxAbsDiff(again, seq), fallback).toBe(0);
        expect(other.stats.stopReason, fallback).toBe('chaotic');
        expect(other.stats.fallbackRows, fallback).toBe(2);
      }
      ctx.report(`logistic map: estimated Lyapunov exponent ${stats.lyapunov!.toFixed(3)} per step → sequential`);
    } finally {
      counted.restore();
      backend.dispose(x);
    }
  });

  ctx.test('method/auto-long-memory-shoots', async () => {
    // T = 20000: past the iteration budget (100), long enough for the probe (T/16 steps) to reach
    // it and for the cost model to pick Newton for a scalar cell. A latch holds whichever attractor
    // it sits at until a pulse (±6, every 500 steps) sets it: a start on the wrong attractor stays
    // wrong for up to 500 steps, more memory than the budget, so 'auto' sends the rows to parallel
    // shooting, where a chunk that starts wrong is set right by the next pulse within ~4 chunks.
    // A slowly forgetting linear recurrence has no nonlinear memory and runs DEER.
    const backend = withParallelism(ctx.backend(), WIDE);
    const [B, T] = [4, 20_000];
    const pulses = new Float64Array(B * T);
    for (let b = 0; b < B; b++) {
      for (let t = (250 + 13 * b) % 500; t < T; t += 500) pulses[b * T + t] = Math.floor(t / 500) % 2 ? 6 : -6;
    }
    for (const [cell, h0] of [
      [latch(), 0.05],
      [leaky(), 1],
    ] as const) {
      const x = backend.tensor(cell.name === 'latch' ? pulses : new Float64Array(B * T), [B, T, 1], ctx.dtype);
      try {
        const opts = { h0: new Array<number>(B).fill(h0) };
        const { y, stats } = await deer(backend, cell, {}, x, { ...opts, method: 'auto' });
        const got = await backend.read(y);
        backend.dispose(y);
        const { y: ys } = await sequential(backend, cell, {}, x, opts);
        const seq = await backend.read(ys);
        backend.dispose(ys);
        expect(maxAbsDiff(got, seq), cell.name).toBeLessThanOrEqual(ctx.tolerance);
        expect(stats.converged, cell.name).toBe(true);
        expect(stats.fallbackRows, cell.name).toBe(0);
        if (cell.name === 'latch') {
          expect(stats.lyapunov!, 'contractive at its attractor').toBeLessThan(0);
          expect(stats.memory!).toBeGreaterThan(100);
          // No Newton iteration but the full steps that confirm what shooting settled.
          expect(stats.iterations, 'every row remembers too long for Newton').toBeGreaterThanOrEqual(1);
          expect(stats.iterations).toBeLessThanOrEqual(3);
          expect(stats.switches.some((w) => w.includes('remember a perturbed start') && w.endsWith('→ parallel shooting'))).toBe(true);
          // A wrong start is set right within ~500 / (T / √T) ≈ 4 chunks, not the ~140 of T.
          expect(stats.shootingSweeps).toBeGreaterThanOrEqual(2);
          expect(stats.shootingSweeps).toBeLessThanOrEqual(10);
        } else {
          expect(stats.shootingSweeps).toBe(0);
          expect(stats.memory!).toBeLessThanOrEqual(1);
        }
        ctx.report(`${cell.name}: memory ${stats.memory}, ${stats.iterations} iterations, ${stats.shootingSweeps} sweeps of parallel shooting`);
      } finally {
        backend.dispose(x);
      }
    }
  });

  ctx.test('method/auto-long-memory-goes-sequential-whatever-the-fallback', async () => {
    // GRU ×8, T = 400: every row holds a perturbed start for longer than the budget, and a row of
    // the batch is within the margin of chaos, where shooting's sweeps are not foreseeable: 'auto'
    // sends the rows to sequential evaluation before any Newton work. That is its answer under
    // every `fallback`, as for chaotic rows: under 'none' the rows had come back as the zeros of
    // the first iterate while the switches said "→ sequential".
    const [B, T] = [3, 400];
    const data = scaledGru(8, 1, 1001, B, T, ctx.dtype);
    const backend = withParallelism(ctx.backend(), WIDE);
    const x = backend.tensor(data.x, [B, T, 2], ctx.dtype);
    try {
      const { y: ys } = await sequential(backend, data.cell, data.params, x, { h0: data.h0 });
      const seq = await backend.read(ys);
      backend.dispose(ys);
      for (const fallback of ['sequential', 'none', 'throw'] as const) {
        const got = await solveOnBackend(backend, data.cell, data, B, T, ctx.dtype, { method: 'auto', fallback });
        expect(got.stats.memory!, fallback).toBeGreaterThan(100);
        expect(got.stats.iterations, fallback).toBe(0);
        expect(got.stats.stopReason, fallback).toBe('longMemory');
        expect(got.stats.fallbackRows, fallback).toBe(B);
        expect(got.stats.switches.some((w) => w.includes('remember a perturbed start') && w.includes('→ sequential')), fallback).toBe(true);
        expect(maxAbsDiff(got.y, seq), fallback).toBeLessThanOrEqual(ctx.tolerance);
      }
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('method/auto-shooting-finishes-long-memory-rows', async () => {
    // Elman ×12, T = 1000: contractive along its trajectory (saturated) but holding a wrong state
    // for more steps than Newton's budget can carry one per iteration; DEER and ELK give the rows
    // up. 'auto' sends them to parallel shooting (chunks forget a wrong start within their
    // memory), which converges in a few sweeps without the fallback.
    const T = 1000;
    const { plain, auto } = await autoWhereDeerFails(ctx, 12, 13, 103, T);
    expect(auto.shootingSweeps).toBeGreaterThanOrEqual(2);
    expect(auto.shootingSweeps, 'far fewer than the chunks').toBeLessThanOrEqual(12);
    expect(auto.switches.some((w) => w.includes('by parallel shooting'))).toBe(true);
    ctx.report(`elman ×12 T=${T}: DEER fell back on ${plain.fallbackRows} rows; auto ${auto.iterations} iterations + ${auto.shootingSweeps} sweeps of parallel shooting`);
  });

  ctx.test('method/auto-cost-model', async () => {
    // Few lanes (a small CPU): DEER's extra work cannot pay, 'auto' evaluates sequentially; many
    // lanes: DEER, with the exact Jacobian for a small GRU and the diagonal for a wide one.
    const B = 3;
    const T = 200;
    const lengths = [T, 150, 7];
    for (const [lanes, n, want] of [
      [1, 8, 'sequential'],
      [WIDE, 8, 'exact'],
      [WIDE, 64, 'diagonal'],
    ] as const) {
      const backend = withParallelism(ctx.backend(), lanes);
      const cell = cells.gru({ inputSize: INPUT_SIZE, hiddenSize: n });
      const data = sequenceData(331 + n, B, T, cell, ctx.dtype);
      const ref = await oracleTrajectory(ctx.oracle(), cell, data, B, T);
      const got = await solveOnBackend(backend, cell, data, B, T, ctx.dtype, { method: 'auto' });
      const plan = got.stats.plan!;
      expect(plan, 'the plan is reported').toBeDefined();
      expect(got.stats.switches[0]).toBe(plan.reason);
      expect(got.stats.converged, `${n}/${lanes}`).toBe(true);
      expect(got.stats.fellBack).toBe(false);
      expect(maxAbsDiff(got.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
      if (want === 'sequential') {
        expect(plan.choice).toBe('sequential');
        expect(got.stats.stopReason).toBe('sequential');
        expect(got.stats.iterations).toBe(0);
        expect(got.stats.structure).toBe('none');
        // Padding past each row's length stays zero on the sequential path too.
        const x = backend.tensor(data.x, [B, T, INPUT_SIZE], ctx.dtype);
        try {
          const r = await deer(backend, cell, data.params, x, { h0: data.h0, method: 'auto', lengths });
          const y = await backend.read(r.y);
          backend.dispose(r.y);
          expect(r.stats.stopReason).toBe('sequential');
          for (let b = 0; b < B; b++) {
            const tail = y.subarray((b * T + lengths[b]!) * n, (b + 1) * T * n);
            expect(Math.max(0, ...Array.from(tail, Math.abs)), `row ${b} padding`).toBe(0);
            const head = y.subarray(b * T * n, (b * T + lengths[b]!) * n);
            const refHead = ref.subarray(b * T * n, (b * T + lengths[b]!) * n);
            expect(maxAbsDiff(head, refHead)).toBeLessThanOrEqual(ctx.tolerance);
          }
        } finally {
          backend.dispose(x);
        }
      } else {
        expect(got.stats.iterations).toBeGreaterThan(0);
        expect(plan.choice).toBe(want === 'exact' ? cell.exactBlockSize : 1);
        expect(got.stats.exactJacobian).toBe(want === 'exact');
        expect(got.stats.structure).toBe(want === 'exact' ? 'dense' : 'diagonal');
      }
      ctx.report(`GRU n=${n}, ${lanes} lanes: ${plan.reason}`);
    }
  });

  ctx.test('method/auto-sequential-overflow-is-not-converged', async () => {
    // y' = 4y + 2 through a relu MLP: the trajectory overflows (float32 by t ≈ 64, float64 by
    // t ≈ 512). Where the cost model evaluates sequentially, the answer is exact but not finite:
    // the stats must say what DEER's would (not converged, 'nonFinite'), and 'throw' throws.
    const cell = cells.mlp({ stateSize: 2, inputSize: 1, hidden: [2], activation: 'relu' });
    const params = { W0: [2, 0, 0, 0, 2, 0], b0: [1, 1], W1: [2, 0, 0, 2], b1: [0, 0] };
    const [B, T] = [2, 1000];
    const backend = withParallelism(ctx.backend(), 1);
    const x = backend.tensor(new Float64Array(B * T), [B, T, 1], ctx.dtype);
    try {
      const r = await deer(backend, cell, params, x, { method: 'auto' });
      const y = await backend.read(r.y);
      backend.dispose(r.y);
      expect(r.stats.plan?.choice).toBe('sequential');
      expect(Array.from(y).some((v) => !Number.isFinite(v)), 'the trajectory overflows').toBe(true);
      expect(r.stats.converged).toBe(false);
      expect(r.stats.stopReason).toBe('nonFinite');
      expect(r.stats.switches.at(-1)).toMatch(/rows 0, 1 hold NaN\/Inf/);
      // Before the overflow it is the sequential answer.
      expect(y[0]).toBe(2);
      expect(y[2 * 4]).toBe(4 * (4 * (4 * (4 * 2 + 2) + 2) + 2) + 2);
      await expect(deer(backend, cell, params, x, { method: 'auto', fallback: 'throw' })).rejects.toBeInstanceOf(ConvergenceError);
      // DEER on the same input says the same.
      const d = await deer(backend, cell, params, x, { method: 'deer' });
      backend.dispose(d.y);
      expect(d.stats.converged).toBe(false);
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('method/auto-sequential-tolerance-below-the-dtype', async () => {
    // A tolerance finer than the dtype resolves (rtol an eighth of its resolution, atol 0): no
    // residual in that dtype can vouch for any answer, so the cost model's sequential answer is
    // 'rounding', not converged — as DEER's and parallel shooting's answers are: the stats must not
    // depend on which path 'auto' took to the same numbers.
    const backend = withParallelism(ctx.backend(), 1);
    const cell = cells.gru({ inputSize: INPUT_SIZE, hiddenSize: 4 });
    const [B, T] = [2, 64];
    const data = sequenceData(4471, B, T, cell, ctx.dtype);
    const rtol = (ctx.dtype === 'float32' ? 4 * 2 ** -24 : 4 * 2 ** -53) / 8;
    const x = backend.tensor(data.x, [B, T, INPUT_SIZE], ctx.dtype);
    const h0 = backend.tensor(data.h0, [B, 4], ctx.dtype);
    try {
      const options = { h0, method: 'auto', atol: 0, rtol } as const;
      const r = await deer(backend, cell, data.params, x, options);
      const s = await sequential(backend, cell, data.params, x, { h0 });
      const [y, ys] = [await backend.read(r.y), await backend.read(s.y)];
      backend.dispose(r.y);
      backend.dispose(s.y);
      expect(r.stats.plan?.choice).toBe('sequential');
      expect(maxAbsDiff(y, ys), 'the sequential answer, kept').toBe(0);
      expect(r.stats.converged).toBe(false);
      expect(r.stats.stopReason).toBe('rounding');
      expect(r.stats.roundingRows).toBe(B);
      expect(r.stats.switches.at(-1)).toMatch(/only as rounded/);
      await expect(deer(backend, cell, data.params, x, { ...options, fallback: 'throw' })).rejects.toBeInstanceOf(ConvergenceError);
      const d = await deer(ctx.backend(), cell, data.params, x, { ...options, method: 'deer' });
      backend.dispose(d.y);
      expect(d.stats.converged, 'DEER on the same input').toBe(false);
    } finally {
      backend.dispose(x);
      backend.dispose(h0);
    }
  });

  ctx.test('method/overflowing-answer-says-nonFinite-whatever-the-method', async () => {
    // y_t = 3·y_{t−1} + x_t overflows (3^700 is past float64's range): whichever method gives the
    // rows up, and for whatever reason (ELK: they kept reaching the clip; 'auto': long memory or
    // chaos), the answer the fallback returns holds Inf, and stopReason must say 'nonFinite'.
    const cell = defineCell({ name: 'triple', state: 2, input: 2, params: {} }, (h, x) => add(mul(constant(3), h), x));
    const [B, T] = [3, 700];
    const xs = Float64Array.from({ length: B * T * 2 }, (_, i) => 1 + (i % 5) / 10);
    for (const method of ['deer', 'elk', 'shoot', 'auto'] as const) {
      const backend = method === 'auto' ? withParallelism(ctx.backend(), WIDE) : ctx.backend();
      const x = backend.tensor(xs, [B, T, 2], ctx.dtype);
      try {
        const r = await deer(backend, cell, {}, x, { method });
        const y = await backend.read(r.y);
        backend.dispose(r.y);
        expect(Array.from(y).some((v) => !Number.isFinite(v)), `${method}: the trajectory overflows`).toBe(true);
        expect(r.stats.converged, method).toBe(false);
        expect(r.stats.stopReason, `${method}: ${r.stats.switches.join('; ')}`).toBe('nonFinite');
        expect(y[0], `${method}: the sequential answer before the overflow`).toBe(ctx.dtype === 'float32' ? Math.fround(1) : 1);
      } finally {
        backend.dispose(x);
      }
    }
  });

  ctx.test('method/gradient-exact-whatever-the-method', async () => {
    const backend = ctx.backend();
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const B = 2;
    const T = 60;
    const data = sequenceData(321, B, T, cell, ctx.dtype);
    const x = backend.tensor(data.x, [B, T, INPUT_SIZE], ctx.dtype);
    const dy = backend.tensor(
      Float64Array.from({ length: B * T * 4 }, (_, i) => Math.cos(i)),
      [B, T, 4],
      ctx.dtype,
    );
    const grads: Record<string, Float64Array | Float32Array>[] = [];
    try {
      for (const method of ['deer', 'elk', 'auto', 'shoot'] as const) {
        const r = await deerWithGrad(backend, cell, data.params, x, { h0: data.h0, method });
        try {
          const g = await r.vjp(dy);
          const out: Record<string, Float64Array | Float32Array> = { x: await backend.read(g.x) };
          for (const [k, t] of Object.entries(g.params)) out[k] = await backend.read(t);
          for (const t of [g.x, g.h0, ...Object.values(g.params)]) backend.dispose(t);
          grads.push(out);
        } finally {
          r.dispose();
        }
      }
    } finally {
      backend.dispose(x);
      backend.dispose(dy);
    }
    const tol = ctx.dtype === 'float64' ? 1e-8 : 1e-3;
    for (const k of Object.keys(grads[0]!)) {
      expect(maxRelDiff(grads[1]![k]!, grads[0]![k]!, 1), `elk d${k}`).toBeLessThanOrEqual(tol);
      expect(maxRelDiff(grads[2]![k]!, grads[0]![k]!, 1), `auto d${k}`).toBeLessThanOrEqual(tol);
      expect(maxRelDiff(grads[3]![k]!, grads[0]![k]!, 1), `shoot d${k}`).toBeLessThanOrEqual(tol);
    }
  });

  ctx.test('method/bad-options', async () => {
    const backend = ctx.backend();
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const p = cell.init();
    const x = backend.tensor(new Float64Array(5 * INPUT_SIZE), [1, 5, INPUT_SIZE], ctx.dtype);
    try {
      await expect(deer(backend, cell, p, x, { method: 'newton' as never })).rejects.toThrow(UnsupportedOptionError);
      // Shooting's chunks start from h0: a trajectory guess is refused, not ignored.
      await expect(deer(backend, cell, p, x, { method: 'shoot', initialGuess: x })).rejects.toThrow(UnsupportedOptionError);
      // One sweep cannot confirm the chunks' starts.
      await expect(deer(backend, cell, p, x, { method: 'shoot', maxIter: 1 })).rejects.toThrow(UnsupportedOptionError);
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('method/shoot-matches-sequential', async () => {
    // Parallel shooting alone: no Newton iteration, √T chunks (T = 300: 18 of 17 steps), which a
    // GRU at its initial scale forgets a wrong start within a few of; padded rows (lengths) and
    // T = 1 (one chunk: a pass from the exact start, which the first check confirms) as well.
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    for (const [T, lengths] of [
      [300, undefined],
      [300, [300, 170]],
      [1, undefined],
    ] as const) {
      const data = sequenceData(331, 2, T, cell, ctx.dtype);
      const ref = await oracleTrajectory(ctx.oracle(), cell, data, 2, T);
      // Past a row's length the solve returns zeros.
      if (lengths) for (let b = 0; b < 2; b++) ref.fill(0, (b * T + lengths[b]!) * 4, (b + 1) * T * 4);
      const got = await solveOnBackend(ctx.backend(), cell, data, 2, T, ctx.dtype, { method: 'shoot', ...(lengths ? { lengths: [...lengths] } : {}) });
      const what = `T = ${T}${lengths ? ', lengths' : ''}`;
      // Shooting's answer, confirmed by a full Newton step (or a few).
      expect(got.stats.iterations, what).toBeGreaterThanOrEqual(1);
      expect(got.stats.iterations, what).toBeLessThanOrEqual(3);
      expect(got.stats.structure, what).toBe('none');
      expect(maxAbsDiff(got.y, ref), what).toBeLessThanOrEqual(ctx.tolerance);
      expect(got.stats.converged, what).toBe(true);
      expect(got.stats.fellBack, what).toBe(false);
      expect(got.stats.residual, what).toBeLessThanOrEqual(1);
      if (T === 1) expect(got.stats.shootingSweeps).toBe(1);
      else {
        expect(got.stats.shootingSweeps, what).toBeGreaterThanOrEqual(2);
        expect(got.stats.shootingSweeps, `${what}: well within the 18 that always finish`).toBeLessThanOrEqual(8);
      }
      ctx.report(`gru n=4 ${what}: shoot ${got.stats.shootingSweeps} sweeps`);
    }
    // Two sweeps and no fallback: not converged (this problem takes three or more), and the
    // answer is the last sweep's trajectory, whose first two chunks are exact.
    const data = sequenceData(331, 2, 300, cell, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, 2, 300);
    const cut = await solveOnBackend(ctx.backend(), cell, data, 2, 300, ctx.dtype, { method: 'shoot', maxIter: 2, fallback: 'none' });
    expect(cut.stats.converged).toBe(false);
    expect(cut.stats.fellBack).toBe(false);
    expect(cut.stats.shootingSweeps).toBe(2);
    const head = (v: ArrayLike<number>) => Array.from({ length: 2 * 17 * 4 }, (_, i) => v[i]!);
    expect(maxAbsDiff(head(cut.y), head(ref))).toBeLessThanOrEqual(ctx.tolerance);
  });

  // Parallel shooting had called a row converged when its chunk starts stopped moving (by a tenth
  // of the tolerance), and reported that as the residual. A step with a large gain carries such a
  // jump on many times over: float64, gain 1e3 at every chunk boundary, the one-step residual there
  // was ~100× the tolerance under `converged: true`. Whatever path the answer took, its one-step
  // residual (measured here in float64 on the host) meets the tolerance, up to the rounding of the
  // step itself.
  ctx.test('method/shoot-converges-only-by-its-residual', async () => {
    const { atol, rtol } = DEFAULT_TOLERANCE[ctx.dtype];
    const [T, gain] = [400, ctx.dtype === 'float64' ? 1e3 : 30];
    const eps = ctx.dtype === 'float64' ? 2 ** -52 : 2 ** -23;
    const round = ctx.dtype === 'float32' ? Math.fround : (v: number) => v;
    // y_t = a_t·y_{t−1} + c_t: a_t = gain at even t (the first step of every chunk of √T = 20),
    // 0.5 / gain at odd t (contractive by 1/2 every two steps), c_t holding the fixed point at 1.
    const cell = defineCell({ name: 'gain-switch', state: 1, input: 2, params: {} }, (h, x) => add(mul(slice(x, 0, 1), h), slice(x, 1, 1)));
    const x = new Float64Array(2 * T);
    for (let t = 0; t < T; t++) {
      x[2 * t] = round(t % 2 === 0 ? gain : 0.5 / gain);
      x[2 * t + 1] = round(t % 2 === 0 ? 1 - gain : 1 - 0.5 / gain);
    }
    const data = { x, h0: new Float64Array(1), params: {} };
    for (const method of ['shoot', 'auto'] as const) {
      const backend = method === 'auto' ? withParallelism(ctx.backend(), WIDE) : ctx.backend();
      const got = await solveOnBackend(backend, cell, data, 1, T, ctx.dtype, { method });
      let worst = 0;
      for (let t = 0; t < T; t++) {
        const [a, c, prev] = [x[2 * t]!, x[2 * t + 1]!, t > 0 ? got.y[t - 1]! : 0];
        const f = a * prev + c;
        const slack = 4 * eps * (Math.abs(a * prev) + Math.abs(c) + Math.abs(f));
        worst = Math.max(worst, Math.abs(got.y[t]! - f) / (atol + rtol * Math.abs(f) + slack));
      }
      expect(worst, `${method}: one-step residual / tolerance (${got.stats.switches.join('; ')})`).toBeLessThanOrEqual(1);
      expect(got.stats.residual, method).toBeLessThanOrEqual(1);
      ctx.report(`gain ${gain} ${method}: ${got.stats.shootingSweeps} sweeps, ${got.stats.fallbackRows} rows fell back, residual ${worst.toPrecision(2)}× tol`);
    }
  });
}
