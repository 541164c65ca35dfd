import type { DType, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { type JacobianStructure, blockSize } from '../cell/structure.js';
import { UnsupportedOptionError } from '../errors.js';

export type JacobianOption = JacobianStructure | 'auto';
export type FallbackOption = 'sequential' | 'throw' | 'none';
export type InitialGuess = 'zeros' | 'h0' | Tensor;

/** Default tolerances: the convergence test is |y_new − y_old| ≤ atol + rtol·|y_new|. */
export const DEFAULT_TOLERANCE: Readonly<Record<DType, { readonly atol: number; readonly rtol: number }>> = {
  float64: { atol: 1e-10, rtol: 1e-10 },
  float32: { atol: 1e-5, rtol: 1e-5 },
};

export const DEFAULT_MAX_ITER = 100;
export const DEFAULT_CLIP = 1e8;

export interface IterationInfo {
  readonly iteration: number;
  readonly maxAbsDiff: number;
  readonly maxScaledDiff: number;
  /** Window index (0-based) and count, when the problem is solved in windows of time steps. */
  readonly window: number;
  readonly windows: number;
}

export interface SolveOptions {
  /** Initial state: [B, n] or [n], a tensor or an array. Default zeros. */
  readonly h0?: ArrayLike<number> | Tensor;
  /** Check x, h0 and params for NaN/Inf before solving (default true). */
  readonly checkFinite?: boolean;
}

export interface DeerOptions extends SolveOptions {
  readonly atol?: number;
  readonly rtol?: number;
  readonly maxIter?: number;
  /**
   * Jacobian structure: 'auto' (default) picks the cheapest exact one for the cell. A structure
   * coarser than the cell's (e.g. 'diagonal' for a GRU) gives quasi-DEER: same answer, more
   * iterations.
   */
  readonly jacobian?: JacobianOption;
  /** First iterate: zeros (default), h0 broadcast over time, or a [B, T, n] tensor (warm start). */
  readonly initialGuess?: InitialGuess;
  /** What to do when Newton does not converge in maxIter: default evaluate sequentially. */
  readonly fallback?: FallbackOption;
  /** Iterates are clipped to ±clip (default 1e8). */
  readonly clip?: number;
  /** Time steps per window; default: all of T unless a buffer limit needs less. */
  readonly window?: number;
  /** Called after every Newton iteration (progress). */
  readonly onIteration?: (info: IterationInfo) => void;
}

export interface ResolvedDeerOptions {
  readonly atol: number;
  readonly rtol: number;
  readonly maxIter: number;
  readonly blockSize: number;
  readonly exact: boolean;
  readonly fallback: FallbackOption;
  readonly clip: number;
  readonly initialGuess: InitialGuess;
  readonly window: number | undefined;
  readonly checkFinite: boolean;
}

function positive(name: string, v: number | undefined, fallback: number, integer = false): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v) || (integer && (!Number.isInteger(v) || v < 1))) {
    throw new UnsupportedOptionError(name, v, integer ? 'a positive integer' : 'a finite number ≥ 0');
  }
  return v;
}

export function resolveDeerOptions(cell: Cell, dtype: DType, o: DeerOptions): ResolvedDeerOptions {
  const tol = DEFAULT_TOLERANCE[dtype];
  const n = cell.stateSize;
  const jac = o.jacobian ?? 'auto';
  let s: number;
  if (jac === 'auto') s = cell.exactBlockSize;
  else if (jac === 'dense' || jac === 'diagonal' || (typeof jac === 'object' && jac !== null && 'block' in jac)) {
    s = blockSize(jac, n);
  } else {
    throw new UnsupportedOptionError('jacobian', jac, "'auto', 'dense', 'diagonal' or { block: s }");
  }
  const fallback = o.fallback ?? 'sequential';
  if (!['sequential', 'throw', 'none'].includes(fallback)) {
    throw new UnsupportedOptionError('fallback', fallback, "'sequential', 'throw' or 'none'");
  }
  const guess = o.initialGuess ?? 'zeros';
  if (guess !== 'zeros' && guess !== 'h0' && (typeof guess !== 'object' || guess === null)) {
    throw new UnsupportedOptionError('initialGuess', guess, "'zeros', 'h0' or a [B, T, n] tensor");
  }
  const atol = positive('atol', o.atol, tol.atol);
  const rtol = positive('rtol', o.rtol, tol.rtol);
  if (atol === 0 && rtol === 0) throw new UnsupportedOptionError('atol/rtol', 0, 'at least one of them > 0');
  return {
    atol,
    rtol,
    maxIter: positive('maxIter', o.maxIter, DEFAULT_MAX_ITER, true),
    blockSize: s,
    // A block structure is exact when it holds every block of the cell's smallest exact one.
    exact: s % cell.exactBlockSize === 0,
    fallback,
    clip: positive('clip', o.clip, DEFAULT_CLIP),
    initialGuess: guess,
    window: o.window === undefined ? undefined : positive('window', o.window, 1, true),
    checkFinite: o.checkFinite ?? true,
  };
}
