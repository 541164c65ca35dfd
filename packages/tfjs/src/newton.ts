import {
  blockSize,
  type Cell,
  ConvergenceError,
  DEFAULT_CLIP,
  DEFAULT_MAX_ITER,
  DEFAULT_TOLERANCE,
  type FallbackOption,
  type JacobianOption,
  type Tensor,
  UnsupportedOptionError,
} from '@deerjs/core';
import type { TfjsBackend } from './backend.js';

export interface SyncDeerOptions {
  readonly atol?: number;
  readonly rtol?: number;
  readonly maxIter?: number;
  /** 'auto' (default): the cell's cheapest exact structure; coarser gives quasi-DEER. */
  readonly jacobian?: JacobianOption;
  /** When Newton does not converge in maxIter: 'sequential' (default), 'throw' or 'none'. */
  readonly fallback?: FallbackOption;
  readonly clip?: number;
}

export interface SyncDeerResult {
  readonly y: Tensor;
  readonly iterations: number;
  readonly converged: boolean;
  readonly fellBack: boolean;
}

function nonNegative(name: string, v: number | undefined, fallback: number, integer = false): number {
  if (v === undefined) return fallback;
  if (!(v >= 0) || !Number.isFinite(v) || (integer && (!Number.isInteger(v) || v < 1))) {
    throw new UnsupportedOptionError(name, v, integer ? 'a positive integer' : 'a finite number ≥ 0');
  }
  return v;
}

/**
 * DEER's Newton loop, synchronous. Core's `deer` is async (its convergence test awaits a read);
 * tf.customGrad needs the forward value synchronously, so the tfjs op runs this copy of the loop
 * (same steps as core's solveWindow, one window, zeros as first iterate) with a dataSync read.
 */
export function deerSync(
  backend: TfjsBackend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  options: SyncDeerOptions = {},
): SyncDeerResult {
  const n = cell.stateSize;
  const [B, T] = x.shape as [number, number];
  const jac = options.jacobian ?? 'auto';
  const s = jac === 'auto' ? cell.exactBlockSize : blockSize(jac, n);
  const exact = s % cell.exactBlockSize === 0;
  const tol = DEFAULT_TOLERANCE.float32;
  const atol = nonNegative('atol', options.atol, tol.atol);
  const rtol = nonNegative('rtol', options.rtol, tol.rtol);
  if (atol === 0 && rtol === 0) throw new UnsupportedOptionError('atol/rtol', 0, 'at least one of them > 0');
  const maxIter = nonNegative('maxIter', options.maxIter, DEFAULT_MAX_ITER, true);
  const clip = nonNegative('clip', options.clip, DEFAULT_CLIP);
  const fallback = options.fallback ?? 'sequential';
  const program = cell.linearizeProgram(s);
  let y = backend.zeros([B, T, n]);
  let iterations = 0;
  let last = Number.NaN;
  try {
    for (let it = 1; it <= maxIter; it++) {
      const yPrev = backend.shiftTime(y, y0, 1);
      const { outputs, jacobian } = backend.runStep(program, { state: yPrev, input: x, params });
      const F = outputs[0]!;
      const A = jacobian!;
      const c = backend.affineOffset(F, A, yPrev, s);
      backend.dispose(F);
      backend.dispose(yPrev);
      const raw = backend.scan({ A, c, y0, blockSize: s, reverse: false });
      backend.dispose(A);
      backend.dispose(c);
      let update: ReturnType<TfjsBackend['newtonUpdateSync']>;
      try {
        update = backend.newtonUpdateSync(raw, y, { atol, rtol, clip });
      } finally {
        backend.dispose(raw);
      }
      backend.dispose(y);
      y = update.y;
      iterations = it;
      last = update.maxAbsDiff;
      if (update.maxScaledDiff <= 1 || (exact && it >= T && update.replaced === 0)) {
        return { y, iterations, converged: true, fellBack: false };
      }
    }
  } catch (err) {
    backend.dispose(y);
    throw err;
  }
  if (fallback === 'none') return { y, iterations, converged: false, fellBack: false };
  backend.dispose(y);
  if (fallback === 'throw') {
    throw new ConvergenceError(`DEER did not converge in ${maxIter} iterations (last max |Δy| = ${last})`, {
      iterations,
    });
  }
  const ys = backend.runSequential(cell.stepProgram(), { input: x, y0, params });
  return { y: ys, iterations, converged: false, fellBack: true };
}
