import {
  type Backend,
  ConvergenceError,
  cells,
  type DType,
  DTypeError,
  deer,
  deerWithGrad,
  defineCell,
  InvalidArgumentError,
  lang,
  sequential,
  solveIvp,
} from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

const { add, clip, concat, constant, exp, maximum, minimum, mul, slice, tanh } = lang;

/** The error a promise rejected with (undefined: none). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  return undefined;
}

async function withBackend(dtype: DType, body: (be: Backend) => Promise<void>): Promise<void> {
  const be = createCpuBackend({ dtype, threads: 1 });
  try {
    await body(be);
    expect(be.liveTensors(), 'leak check').toBe(0);
  } finally {
    await be.destroy();
  }
}

describe('host arrays of the solvers hold numbers, in every dtype', () => {
  for (const dtype of ['float64', 'float32'] as const) {
    it(`refuses string entries in params, h0 and y0 with an InvalidArgumentError (${dtype})`, async () => {
      await withBackend(dtype, async (be) => {
        const cell = cells.elman({ inputSize: 1, hiddenSize: 3 });
        const p = cell.init({ seed: 7 });
        const x = be.tensor(new Float64Array(2 * 5).map((_, i) => Math.sin(i)), [2, 5, 1], dtype);
        try {
          // '1' had passed in float32 (Math.fround('1') is 1) and been a NonFiniteError "got 1" in float64.
          const strings = { ...p, Wb: ['1', '1', '1'] as unknown as number[] };
          for (const run of [() => deer(be, cell, strings, x), () => sequential(be, cell, strings, x), () => deerWithGrad(be, cell, strings, x)]) {
            const err = await rejection(run());
            expect(err).toBeInstanceOf(InvalidArgumentError);
            expect((err as Error).message).toMatch(/params\.Wb\[0\]: expected a number, got "1"/);
          }
          // ['a', 'b', 'c'] had been a NonFiniteError.
          const err = await rejection(deer(be, cell, p, x, { h0: ['a', 'b', 'c'] as unknown as number[] }));
          expect(err).toBeInstanceOf(InvalidArgumentError);
          expect((err as Error).message).toMatch(/h0\[0\]: expected a number, got "a"/);
          // Numbers are taken as before.
          const { y } = await deer(be, cell, p, x, { h0: [0.1, 0.2, 0.3] });
          be.dispose(y);
        } finally {
          be.dispose(x);
        }
        const decay = defineCell({ name: 'decay', state: 2, input: 0, params: {} }, (y) => lang.neg(y));
        const err = await rejection(solveIvp(be, decay, {}, { y0: [1, '2'] as unknown as number[], t: [0, 0.5, 1] }));
        expect(err).toBeInstanceOf(InvalidArgumentError);
        expect((err as Error).message).toMatch(/y0\[1\]: expected a number, got "2"/);
      });
    });
  }
});

describe('cell constants past float32 range', () => {
  const huge = (c: number) =>
    defineCell({ name: 'huge', state: 2, input: 1, params: { w: [2] } }, (h, x, p) => tanh(add(mul(mul(h, c), p.w!), x)));

  it('are refused by a float32 solve with a DTypeError naming them, as a parameter that size is', async () => {
    await withBackend('float32', async (be) => {
      const x = be.tensor(new Float32Array(2 * 4).fill(0.25), [2, 4, 1]);
      try {
        for (const c of [1e40, -1e39]) {
          const cell = huge(c);
          const p = { w: [1e-40, 1e-40] };
          // Had run as a multiplication by ±Infinity (NaN once h = 0), in silence.
          for (const run of [() => deer(be, cell, p, x), () => sequential(be, cell, p, x), () => deerWithGrad(be, cell, p, x)]) {
            const err = await rejection(run());
            expect(err).toBeInstanceOf(DTypeError);
            expect((err as Error).message).toContain(`cell huge: the constant ${c}, used in mul: expected dtype float64 (in float32 it is ${c > 0 ? '' : '-'}Infinity`);
          }
        }
        // The largest float32 is taken, and so is a constant past it as a bound of minimum, maximum
        // or clip, where ±Infinity changes nothing (conformance graph/constant-past-float32).
        const { y } = await deer(be, huge(3.4e38), { w: [1e-39, 1e-39] }, x);
        be.dispose(y);
        const bounded = defineCell({ name: 'bounded', state: 2, input: 1, params: {} }, (h, xt) =>
          add(minimum(mul(h, 0.5), 1e39), clip(maximum(xt, slice(concat(constant([-1e40]), h), 0, 1)), 1e39)),
        );
        const r = await deer(be, bounded, {}, x);
        expect(r.stats.converged).toBe(true);
        be.dispose(r.y);
        // Reaching the output or arithmetic through a slice or concat is refused.
        const sliced = defineCell({ name: 'sliced', state: 2, input: 1, params: {} }, (h, xt) =>
          add(mul(h, 0.5), mul(xt, slice(concat(constant([1e39]), h), 0, 1))),
        );
        await expect(deer(be, sliced, {}, x)).rejects.toThrow(/cell sliced: the constant 1e\+39, used in mul/);
      } finally {
        be.dispose(x);
      }
      const field = defineCell({ name: 'huge-field', state: 1, input: 0, params: {} }, (y) => mul(y, -1e300));
      const err = await rejection(solveIvp(be, field, {}, { y0: [1], t: [0, 1e-300] }));
      expect(err).toBeInstanceOf(DTypeError);
    });
  });

  it('are taken by a float64 solve', async () => {
    await withBackend('float64', async (be) => {
      const x = be.tensor(new Float64Array(2 * 4).fill(0.25), [2, 4, 1]);
      try {
        const { y, stats } = await deer(be, huge(1e40), { w: [1e-41, 1e-41] }, x);
        expect(stats.converged).toBe(true);
        be.dispose(y);
      } finally {
        be.dispose(x);
      }
    });
  });
});

describe('a solve that blows up says so', () => {
  /** y_t = e^{3·y_{t−1}} + x_t: overflows within a few steps. */
  const blowUp = defineCell({ name: 'blow-up', state: 2, input: 1, params: {} }, (h, x) => add(exp(mul(h, 3)), x));
  /** y_t = 3·y_{t−1} + x_t: grows past the clip (finite in float64). */
  const grows = defineCell({ name: 'grows', state: 2, input: 1, params: {} }, (h, x) => add(mul(h, 3), x));

  async function thrownBy(be: Backend, cell: typeof blowUp, method: 'deer' | 'elk' | 'shoot', T = 20): Promise<ConvergenceError> {
    const x = be.tensor(new Float64Array(2 * T).fill(0.5), [2, T, 1]);
    try {
      const err = await rejection(deer(be, cell, {}, x, { method, fallback: 'throw' }));
      expect(err, method).toBeInstanceOf(ConvergenceError);
      return err as ConvergenceError;
    } finally {
      be.dispose(x);
    }
  }

  it("ConvergenceError says the iterates held NaN/Inf or reached the clip, not 'last max |Δy| = 0'", async () => {
    await withBackend('float32', async (be) => {
      for (const method of ['deer', 'elk'] as const) {
        const err = await thrownBy(be, blowUp, method);
        expect((err.stats as { stopReason: string }).stopReason).toBe('nonFinite');
        expect(err.message).not.toMatch(/\|Δy\|/);
        expect(err.message).toMatch(/nonFinite after \d+ iterations; its iterates kept holding NaN\/Inf/);
      }
    });
    await withBackend('float64', async (be) => {
      const err = await thrownBy(be, grows, 'deer');
      expect((err.stats as { stopReason: string }).stopReason).toBe('diverged');
      expect(err.message).toMatch(/diverged after \d+ iterations; its iterates kept reaching the clip ±100000000/);
    });
  });

  for (const dtype of ['float64', 'float32'] as const) {
    it(`method 'shoot' reports 'nonFinite' for a trajectory that overflows, as the Newton methods do (${dtype})`, async () => {
      await withBackend(dtype, async (be) => {
        const err = await thrownBy(be, blowUp, 'shoot');
        const stats = err.stats as { stopReason: string; shootingSweeps: number };
        // Had been 'maxIter' after √T sweeps of the 100 allowed.
        expect(stats.stopReason).toBe('nonFinite');
        expect(stats.shootingSweeps).toBeGreaterThan(0);
        expect(err.message).toMatch(/nonFinite after 0 iterations and \d+ sweeps of parallel shooting; its iterates kept holding NaN\/Inf/);
        // With the fallback: the stats say the same, and the sequential answer holds the overflow.
        const x = be.tensor(new Float64Array(2 * 20).fill(0.5), [2, 20, 1]);
        try {
          const { y, stats: s } = await deer(be, blowUp, {}, x, { method: 'shoot', fallback: 'none' });
          expect([s.stopReason, s.converged]).toEqual(['nonFinite', false]);
          be.dispose(y);
        } finally {
          be.dispose(x);
        }
      });
    });
  }
});
