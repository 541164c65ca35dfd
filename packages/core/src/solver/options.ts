import type { DType, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { blockSize, type JacobianStructure } from '../cell/structure.js';
import { UnsupportedOptionError } from '../errors.js';
import { type AbortSignalLike, signalOption } from './abort.js';
import type { NewtonMethod } from './engine.js';

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
  /** Iteration within the window (1-based). */
  readonly iteration: number;
  readonly maxAbsDiff: number;
  readonly maxScaledDiff: number;
  /** Batch rows still iterating after this iteration (the others converged or were given up). */
  readonly activeRows: number;
  /** Window index (0-based) and count, when the problem is solved in windows of time steps. */
  readonly window: number;
  readonly windows: number;
}

export interface SolveOptions {
  /** Initial state: [B, n] or [n], a tensor or an array. Default zeros. */
  readonly h0?: ArrayLike<number> | Tensor;
  /**
   * Padded batches: row b is lengths[b] steps long (0 ≤ lengths[b] ≤ T). y is 0 past a row's end,
   * no Newton work is spent past the longest row, and gradients ignore the padding.
   */
  readonly lengths?: ArrayLike<number>;
  /** Check x, h0 and params for NaN/Inf before solving (default true). */
  readonly checkFinite?: boolean;
  /**
   * Cancels the solve: once aborted, the solve frees what it holds and rejects with
   * `signal.reason` (an `AbortError` DOMException unless the abort gave another). It is checked
   * before the solve starts, at every read (each Newton iteration, sweep and convergence check)
   * and, where reads complete at once (a CPU backend), after letting queued tasks run every 20 ms,
   * so `AbortSignal.timeout(ms)` and events abort too; one backend call (a sequential pass) runs
   * to its end.
   */
  readonly signal?: AbortSignalLike;
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
  /**
   * Iterates are clipped to ±clip (default 1e8) so a wild Newton step cannot overflow. A row whose
   * iterate reaches the clip never counts as converged (the fallback answers it).
   */
  readonly clip?: number;
  /** Time steps per window; default: all of T unless a buffer limit needs less. */
  readonly window?: number;
  /**
   * Called after every measured Newton iteration (progress): every iteration, except where the
   * backend runs steps unread between convergence checks (a GPU: `Backend.scanUpdateUnread`),
   * where it is called at each check with `iteration` counting the unread steps too. It may be
   * async (the type says void so that any callback fits): the solve waits for the promise it returns, and a rejection ends the solve with that
   * error, as a throw does (`deerSync` cannot wait: there it is an UnsupportedOptionError).
   */
  readonly onIteration?: (info: IterationInfo) => void;
  /**
   * Newton's step: 'deer' (default) full steps; 'elk' damped steps with a trust region that adapts
   * (Levenberg–Marquardt on the Jacobian in the structure `jacobian` picks: ELK with the cell's
   * exact structure, quasi-ELK with 'diagonal'), which converge where full steps overshoot on
   * moderate problems; rows on which the trust region stalls go on with damped DEER steps
   * (transitions capped, as under 'auto') for the rest of the budget (see the convergence study:
   * still not on problems of long memory); 'auto'
   * evaluates sequentially up front the rows whose dynamics are chaotic (a Lyapunov estimate over
   * the first T/16 steps, or two iteration budgets), sends rows that remember a perturbed start,
   * beyond what their Jacobians carry, for longer than the iteration budget (`stats.memory`) to
   * parallel shooting, takes DEER's full steps for the rest, and damped steps (transitions capped)
   * or parallel shooting for rows full steps fail, handing what is left to the fallback; 'shoot'
   * parallel shooting alone, no Newton: about √T chunks run step by step side by side, each
   * restarted from its predecessor's end, for at most `maxIter` sweeps (K sweeps always finish) —
   * for contractive recurrences and few batch rows, where a backend evaluates many rows per step
   * much faster than one (see the README's CPU figures).
   */
  readonly method?: NewtonMethod;
}

export interface ResolvedDeerOptions {
  readonly atol: number;
  readonly rtol: number;
  readonly maxIter: number;
  readonly blockSize: number;
  readonly exact: boolean;
  /** Whether the structure was asked for (not 'auto'): the cost model then keeps it. */
  readonly structureGiven: boolean;
  readonly fallback: FallbackOption;
  readonly clip: number;
  readonly initialGuess: InitialGuess;
  readonly window: number | undefined;
  readonly checkFinite: boolean;
  readonly onIteration: ((info: IterationInfo) => void) | undefined;
  readonly method: NewtonMethod;
  readonly signal: AbortSignalLike | undefined;
}

/** The option names `deer` and `deerWithGrad` accept. */
export const DEER_OPTION_NAMES: readonly string[] = [
  'h0',
  'lengths',
  'checkFinite',
  'atol',
  'rtol',
  'maxIter',
  'jacobian',
  'initialGuess',
  'fallback',
  'clip',
  'window',
  'onIteration',
  'method',
  'signal',
];

/** Reject option objects that are not objects, and option names the function does not know. */
export function checkOptionNames(options: unknown, known: readonly string[], fn: string): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new UnsupportedOptionError(`${fn} options`, options, 'an object of options (or nothing)');
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const near = known.find((k) => k.toLowerCase() === key.toLowerCase());
      throw new UnsupportedOptionError(
        key,
        (options as Record<string, unknown>)[key],
        `one of the options of ${fn} (${near ? `did you mean '${near}'? ` : ''}known: ${known.join(', ')})`,
      );
    }
  }
}

/** A numeric option: `fallback` when undefined, else checked to be of `kind` (UnsupportedOptionError). */
export function numberOption(
  name: string,
  v: number | undefined,
  fallback: number,
  kind: 'nonneg' | 'positive' | 'integer' = 'nonneg',
): number {
  if (v === undefined) return fallback;
  const ok =
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (kind === 'nonneg' ? v >= 0 : kind === 'positive' ? v > 0 : Number.isSafeInteger(v) && v >= 1);
  if (!ok) {
    const want = {
      nonneg: 'a finite number ≥ 0',
      positive: 'a finite number > 0',
      integer: 'a positive integer',
    }[kind];
    throw new UnsupportedOptionError(name, v, want);
  }
  return v;
}

export function resolveDeerOptions(
  cell: Cell,
  dtype: DType,
  o: DeerOptions,
  known: readonly string[] = DEER_OPTION_NAMES,
  fn = 'deer',
): ResolvedDeerOptions {
  checkOptionNames(o, known, fn);
  // `??` below would read null as "the default": refused instead, as any other wrong value is.
  for (const [key, value] of Object.entries(o)) if (value === null) throw new UnsupportedOptionError(key, null, 'a value, or the option left out');
  const tol = DEFAULT_TOLERANCE[dtype];
  const n = cell.stateSize;
  const jac = o.jacobian ?? 'auto';
  let s: number;
  if (jac === 'auto') s = cell.exactBlockSize;
  else if (
    jac === 'dense' ||
    jac === 'diagonal' ||
    (typeof jac === 'object' && jac !== null && 'block' in jac)
  ) {
    s = blockSize(jac, n);
  } else {
    throw new UnsupportedOptionError('jacobian', jac, "'auto', 'dense', 'diagonal' or { block: s }");
  }
  const method = o.method ?? 'deer';
  if (!['deer', 'elk', 'auto', 'shoot'].includes(method)) {
    throw new UnsupportedOptionError('method', method, "'deer', 'elk', 'auto' or 'shoot'");
  }
  const fallback = o.fallback ?? 'sequential';
  if (!['sequential', 'throw', 'none'].includes(fallback)) {
    throw new UnsupportedOptionError('fallback', fallback, "'sequential', 'throw' or 'none'");
  }
  const guess = o.initialGuess ?? 'zeros';
  if (method === 'shoot' && typeof guess === 'object' && guess !== null) {
    // Its chunks start from h0 and converge from any start; a trajectory guess has no use there.
    throw new UnsupportedOptionError('initialGuess', 'a tensor', "'zeros' or 'h0' with method 'shoot' (its chunks start from h0)");
  }
  if (guess !== 'zeros' && guess !== 'h0' && (typeof guess !== 'object' || guess === null)) {
    throw new UnsupportedOptionError('initialGuess', guess, "'zeros', 'h0' or a [B, T, n] tensor");
  }
  const atol = numberOption('atol', o.atol, tol.atol);
  const rtol = numberOption('rtol', o.rtol, tol.rtol);
  if (atol === 0 && rtol === 0) throw new UnsupportedOptionError('atol/rtol', 0, 'at least one of them > 0');
  const maxIter = numberOption('maxIter', o.maxIter, DEFAULT_MAX_ITER, 'integer');
  if (method === 'shoot' && maxIter < 2) {
    throw new UnsupportedOptionError('maxIter', maxIter, "at least 2 with method 'shoot' (its sweeps; one cannot confirm its chunks' starts)");
  }
  return {
    atol,
    rtol,
    maxIter,
    blockSize: s,
    // A block structure is exact when it holds every block of the cell's smallest exact one.
    exact: s % cell.exactBlockSize === 0,
    structureGiven: jac !== 'auto',
    fallback,
    clip: numberOption('clip', o.clip, DEFAULT_CLIP, 'positive'),
    initialGuess: guess,
    window: o.window === undefined ? undefined : numberOption('window', o.window, 1, 'integer'),
    checkFinite: flag('checkFinite', o.checkFinite, true),
    onIteration: callback('onIteration', o.onIteration),
    method,
    signal: signalOption(o.signal),
  };
}

/** A boolean option: `fallback` when undefined (UnsupportedOptionError if not a boolean). */
export function flag(name: string, v: boolean | undefined, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new UnsupportedOptionError(name, v, 'true or false');
  return v;
}

function callback<F>(name: string, v: F | undefined): F | undefined {
  if (v !== undefined && typeof v !== 'function') throw new UnsupportedOptionError(name, v, 'a function');
  return v;
}

/**
 * Check `options` as `deerWithGrad` would for `cell` (names, values, combinations:
 * UnsupportedOptionError), without solving: for callers that take DEER options but may not solve
 * by DEER (a training loop on its sequential solver), so that a wrong option is refused either way.
 */
export function checkDeerOptions(cell: Cell, options: DeerOptions, fn = 'deerWithGrad'): void {
  // The dtype picks only the default tolerances, not what is valid.
  resolveDeerOptions(cell, 'float64', options, DEER_OPTION_NAMES, fn);
}
