import {
  ConvergenceError,
  DTypeError,
  deer,
  deerWithGrad,
  defineCell,
  InvalidArgumentError,
  lang,
  NonFiniteError,
  OutOfMemoryError,
  sequential,
  solveIvp,
  ShapeError,
  type Tensor,
  TensorStateError,
  UnsupportedOptionError,
  withCapabilities,
} from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { CELL_FAMILIES, INPUT_SIZE, maxAbsDiff, sequenceData } from './fixtures.js';
import { oracleTrajectory, solveOnBackend } from './solve-cases.js';

export function defineInputCases(ctx: SuiteContext): void {
  const cell = () => CELL_FAMILIES[0]!.make(4, INPUT_SIZE);

  /** Run body with a fresh x of the given shape, disposed afterwards. */
  async function withX(shape: number[], values: number[] | null, body: (x: Tensor) => Promise<void>) {
    const backend = ctx.backend();
    const size = shape.reduce((a, b) => a * b, 1);
    const x = backend.tensor(values ?? new Array<number>(size).fill(0.1), shape, ctx.dtype);
    try {
      await body(x);
    } finally {
      backend.dispose(x);
    }
  }

  ctx.test('input/trajectory-past-the-largest-buffer', async () => {
    // y is one buffer: deer, sequential and solveIvp refuse one larger than the backend's largest
    // (sequential and solveIvp had gone on past it).
    const small = withCapabilities(ctx.backend(), { maxBufferBytes: 256 });
    const c = cell();
    await withX([2, 20, INPUT_SIZE], null, async (x) => {
      await expect(deer(small, c, c.init(), x)).rejects.toThrow(OutOfMemoryError);
      await expect(sequential(small, c, c.init(), x)).rejects.toThrow(OutOfMemoryError);
    });
    const decay = defineCell({ name: 'decay', state: 4, input: 0, params: {} }, (y) => lang.neg(y));
    const t = Array.from({ length: 21 }, (_, i) => i / 20);
    await expect(solveIvp(small, decay, {}, { y0: [1, 2, 3, 4], t })).rejects.toThrow(/y \[1, 20, 4\] does not fit the largest buffer/);
  });

  ctx.test('input/wrong-shapes', async () => {
    const c = cell();
    const p = c.init();
    const backend = ctx.backend();
    await withX([2, 5, INPUT_SIZE + 1], null, async (x) => {
      await expect(deer(backend, c, p, x)).rejects.toThrow(ShapeError);
      await expect(sequential(backend, c, p, x)).rejects.toThrow(ShapeError);
    });
    await withX([2, 5], null, async (x) => {
      await expect(deer(backend, c, p, x)).rejects.toThrow(/expected shape \[B ≥ 1, T ≥ 1, 3\]/);
    });
    await withX([2, 5, INPUT_SIZE], null, async (x) => {
      await expect(deer(backend, c, p, x, { h0: [1, 2, 3] })).rejects.toThrow(ShapeError);
      await expect(deer(backend, c, { ...p, R: p.R!.slice(1) }, x)).rejects.toThrow(/params\.R/);
      const { W: _w, ...missing } = p;
      await expect(deer(backend, c, missing, x)).rejects.toThrow(/params\.W.*missing/);
      await expect(deer(backend, c, { ...p, Q: new Float64Array(1) }, x)).rejects.toThrow(ShapeError);
      // A tensor parameter has its own shape or is flat: transposed R ([n, 3n] for [3n, n]) is refused.
      const n = c.stateSize;
      const shaped = (shape: number[]) => backend.tensor(p.R!, shape, ctx.dtype);
      for (const [shape, ok] of [
        [[3 * n, n], true],
        [[3 * n * n], true],
        [[n, 3 * n], false],
        [[1, 3 * n * n], false],
      ] as const) {
        const R = shaped([...shape]);
        try {
          const run = deer(backend, c, { ...p, R }, x);
          if (ok) backend.dispose((await run).y);
          else await expect(run, `R as [${shape}]`).rejects.toThrow(/params\.R/);
        } finally {
          backend.dispose(R);
        }
      }
    });
  });

  ctx.test('input/wrong-dtype-and-options', async () => {
    const c = cell();
    const p = c.init();
    const backend = ctx.backend();
    const other = ctx.dtype === 'float64' ? 'float32' : 'float64';
    await withX([1, 4, INPUT_SIZE], null, async (x) => {
      if (backend.capabilities.dtypes.includes(other)) {
        // A parameter tensor of another dtype than x.
        const R = backend.tensor(p.R!, [p.R!.length], other);
        try {
          await expect(deer(backend, c, { ...p, R }, x)).rejects.toThrow(DTypeError);
        } finally {
          backend.dispose(R);
        }
      } else {
        expect(() => backend.tensor([1], [1], other)).toThrow(DTypeError);
      }
      await expect(deer(backend, c, p, x, { jacobian: 'sparse' as never })).rejects.toThrow(UnsupportedOptionError);
      await expect(deer(backend, c, p, x, { jacobian: { block: 3 } })).rejects.toThrow(UnsupportedOptionError);
      await expect(deer(backend, c, p, x, { maxIter: 0 })).rejects.toThrow(UnsupportedOptionError);
      await expect(deer(backend, c, p, x, { fallback: 'retry' as never })).rejects.toThrow(UnsupportedOptionError);
      // null had been read as the default (jacobian, method, fallback, initialGuess, tolerances).
      for (const key of ['jacobian', 'method', 'fallback', 'initialGuess', 'atol', 'window'])
        await expect(deer(backend, c, p, x, { [key]: null } as never)).rejects.toThrow(UnsupportedOptionError);
      // A falsy non-boolean had turned sequential's and solveIvp's NaN checks off in silence.
      await expect(sequential(backend, c, p, x, { checkFinite: 0 as never })).rejects.toThrow(UnsupportedOptionError);
      const decay = defineCell({ name: 'decay', state: 2, input: 0, params: {} }, (y) => lang.neg(y));
      await expect(solveIvp(backend, decay, {}, { y0: [0.1, 0.2], t: [0, 1] }, { checkFinite: '' as never })).rejects.toThrow(UnsupportedOptionError);
    });
  });

  // A tensor belongs to the instance that made it: on webgpu another device cannot bind it (Dawn's
  // validation error had stuck to the backend for good); elsewhere the other instance's leak count
  // (and pooled memory) would be the wrong one.
  ctx.test('input/tensor-of-another-instance', async () => {
    const backend = ctx.backend();
    const other = await ctx.another();
    try {
      const cell = CELL_FAMILIES[0]!.make(2, INPUT_SIZE);
      const params = cell.init({ seed: 1 });
      const xs = new Float64Array(2 * 3 * INPUT_SIZE).map((_, i) => Math.sin(i));
      const foreign = other.tensor(xs, [2, 3, INPUT_SIZE], ctx.dtype);
      await expect(deer(backend, cell, params, foreign)).rejects.toThrow(TensorStateError);
      await expect(backend.read(foreign)).rejects.toThrow(TensorStateError);
      expect(() => backend.dispose(foreign)).toThrow(TensorStateError);
      other.dispose(foreign);
      const x = backend.tensor(xs, [2, 3, INPUT_SIZE], ctx.dtype);
      try {
        const { y, stats } = await deer(backend, cell, params, x);
        expect(stats.converged).toBe(true);
        backend.dispose(y);
      } finally {
        backend.dispose(x);
      }
      expect(other.liveTensors()).toBe(0);
    } finally {
      await other.destroy();
    }
  });

  // The interface's contract: after destroy(), every use but dispose, liveTensors and destroy is a
  // TensorStateError (webgpu had answered with DeviceLostError, the error of a hardware event).
  ctx.test('input/use-after-destroy', async () => {
    const other = await ctx.another();
    const cell = CELL_FAMILIES[0]!.make(2, INPUT_SIZE);
    const params = cell.init({ seed: 1 });
    const xs = new Float64Array(2 * 3 * INPUT_SIZE).map((_, i) => Math.cos(i));
    const x = other.tensor(xs, [2, 3, INPUT_SIZE], ctx.dtype);
    await other.destroy();
    expect(() => other.tensor(xs, [2, 3, INPUT_SIZE], ctx.dtype)).toThrow(TensorStateError);
    expect(() => other.zeros([2, 2], ctx.dtype)).toThrow(TensorStateError);
    await expect(other.read(x)).rejects.toThrow(TensorStateError);
    await expect(deer(other, cell, params, x)).rejects.toThrow(TensorStateError);
    await expect(sequential(other, cell, params, x)).rejects.toThrow(TensorStateError);
    other.dispose(x);
    expect(other.liveTensors()).toBe(0);
    await other.destroy();
  });

  ctx.test('input/not-a-cell', async () => {
    const backend = ctx.backend();
    const p = cell().init();
    await withX([1, 4, INPUT_SIZE], null, async (x) => {
      for (const bad of [null, undefined, {}, { stateSize: 4, inputSize: INPUT_SIZE }]) {
        await expect(deer(backend, bad as never, p, x)).rejects.toThrow(InvalidArgumentError);
        await expect(sequential(backend, bad as never, p, x)).rejects.toThrow(InvalidArgumentError);
        await expect(deerWithGrad(backend, bad as never, p, x)).rejects.toThrow(InvalidArgumentError);
        await expect(solveIvp(backend, bad as never, p, { y0: [0], t: [0, 1] })).rejects.toThrow(InvalidArgumentError);
      }
    });
  });

  ctx.test('input/non-finite', async () => {
    const c = cell();
    const p = c.init();
    const backend = ctx.backend();
    const values = new Array<number>(2 * 3 * INPUT_SIZE).fill(0.2);
    values[7] = Number.NaN;
    await withX([2, 3, INPUT_SIZE], values, async (x) => {
      await expect(deer(backend, c, p, x)).rejects.toThrow(NonFiniteError);
      await expect(sequential(backend, c, p, x)).rejects.toThrow(/x: expected finite values, got NaN at flat index 7/);
    });
    await withX([2, 3, INPUT_SIZE], null, async (x) => {
      const R = p.R!.slice();
      R[2] = Number.POSITIVE_INFINITY;
      await expect(deer(backend, c, { ...p, R }, x)).rejects.toThrow(/params\.R.*Infinity/);
      await expect(deer(backend, c, p, x, { h0: [0, Number.NaN, 0, 0] })).rejects.toThrow(NonFiniteError);
      const Rt = backend.tensor(R, [R.length], ctx.dtype);
      try {
        await expect(deer(backend, c, { ...p, R: Rt }, x)).rejects.toThrow(NonFiniteError);
      } finally {
        backend.dispose(Rt);
      }
    });
    // Finite in float64 but past float32's range: ±Infinity once stored as float32 (they had given
    // a NaN trajectory, or a converged one from an infinite weight).
    if (ctx.dtype === 'float32') {
      await withX([2, 3, INPUT_SIZE], null, async (x) => {
        const R = p.R!.slice();
        R[2] = -1e39;
        await expect(deer(backend, c, { ...p, R }, x)).rejects.toThrow(/params\.R \(as float32\): expected finite values, got -Infinity at flat index 2/);
        await expect(sequential(backend, c, p, x, { h0: [0, 1e39, 0, 0] })).rejects.toThrow(/h0 \(as float32\).*Infinity at flat index 1/);
      });
    }
  });

  ctx.test('fallback/max-iter-1', async () => {
    const c = cell();
    const B = 2;
    const T = 50;
    const data = sequenceData(61, B, T, c, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), c, data, B, T);
    const seq = await solveOnBackend(ctx.backend(), c, data, B, T, ctx.dtype, { maxIter: 1 });
    expect(seq.stats.fellBack).toBe(true);
    expect(seq.stats.converged).toBe(false);
    expect(seq.stats.iterations).toBe(1);
    expect(maxAbsDiff(seq.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    const none = await solveOnBackend(ctx.backend(), c, data, B, T, ctx.dtype, { maxIter: 1, fallback: 'none' });
    expect(none.stats.fellBack).toBe(false);
    expect(none.stats.converged).toBe(false);
    await expect(
      solveOnBackend(ctx.backend(), c, data, B, T, ctx.dtype, { maxIter: 1, fallback: 'throw' }),
    ).rejects.toThrow(ConvergenceError);
  });
}
