import type { Backend, DType, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { DTypeError, describeValue, InvalidArgumentError, NonFiniteError, ShapeError, UnsupportedOptionError } from '../errors.js';
import { isTensor } from '../backend/arg-checks.js';
import type { MatrixOps } from './expm.js';
import { checkOptionNames } from './options.js';
import {
  checkBackend,
  checkCell,
  checkCellConstants,
  checkTensor,
  type Owned,
  type ParamsInput,
  prepareInitialState,
  prepareParams,
} from './validate.js';

/** Inputs common to every ODE solver: dy/dt = f(y, x(t); θ) on a time grid t_0 < … < t_T. */
export interface OdeProblem {
  /** y(t_0): [B, n] or [n], array or tensor. */
  readonly y0: ArrayLike<number> | Tensor;
  /** The grid t_0 < t_1 < … < t_T (T ≥ 1). Outputs are at t_1 … t_T. */
  readonly t: ArrayLike<number>;
  /** Inputs on the grid, [B, T + 1, m] (required when the field has inputs). */
  readonly x?: Tensor;
  /** Batch size when neither y0 nor x says it (default 1). */
  readonly batch?: number;
}

export interface PreparedOde {
  readonly B: number;
  readonly T: number;
  readonly dtype: DType;
  readonly grid: Float64Array;
  /** Interval lengths Δ_i = t_{i+1} − t_i, i = 0..T−1. */
  readonly dt: Float64Array;
  readonly y0: Tensor;
  readonly params: Record<string, Tensor>;
  readonly x: Tensor | undefined;
}

export function checkGrid(t: ArrayLike<number>): { grid: Float64Array; dt: Float64Array } {
  if (!t || typeof t !== 'object' || typeof t.length !== 'number' || t.length < 2) {
    throw new ShapeError('t', 'a grid of at least 2 times', `${t?.length ?? 'nothing'}`);
  }
  for (let i = 0; i < t.length; i++) {
    if (typeof t[i] !== 'number') throw new InvalidArgumentError(`t[${i}]`, 'a number (a time)', describeValue(t[i]));
  }
  const grid = Float64Array.from(t);
  const dt = new Float64Array(grid.length - 1);
  for (let i = 0; i < dt.length; i++) {
    dt[i] = grid[i + 1]! - grid[i]!;
    if (
      !Number.isFinite(grid[i]!) ||
      !Number.isFinite(grid[i + 1]!) ||
      !Number.isFinite(dt[i]!) ||
      !(dt[i]! > 0)
    ) {
      throw new ShapeError(
        't',
        'strictly increasing finite times',
        `t[${i}] = ${grid[i]}, t[${i + 1}] = ${grid[i + 1]}`,
      );
    }
  }
  return { grid, dt };
}

export async function prepareOde(
  backend: Backend,
  field: Cell,
  params: ParamsInput,
  problem: OdeProblem,
  dtype: DType | undefined,
  owned: Owned,
  checkFinite: boolean,
): Promise<PreparedOde> {
  checkBackend(backend);
  checkCell('field', field);
  checkOptionNames(problem, ['y0', 't', 'x', 'batch'], 'the ODE problem');
  if (problem === undefined) throw new InvalidArgumentError('problem', '{ y0, t, x?, batch? }', 'undefined');
  const given = problem.y0 as unknown;
  if (given === undefined || given === null || (!isTensor(given) && typeof (given as { length?: unknown }).length !== 'number'))
    throw new InvalidArgumentError(
      'problem.y0',
      `the initial state ([B, ${field.stateSize}] or [${field.stateSize}])`,
      describeValue(given),
    );
  const { grid, dt } = checkGrid(problem.t);
  const T = dt.length;
  const n = field.stateSize;
  const x = problem.x;
  const y0 = problem.y0;
  // The batch comes from x, else from a [B, n] y0, else from `batch` (a [n] y0 is broadcast).
  let B = problem.batch ?? 1;
  if (isTensor(y0) ? y0.shape.length === 2 : y0.length !== n) B = isTensor(y0) ? y0.shape[0]! : y0.length / n;
  const dt0 = dtype ?? (isTensor(y0) ? y0.dtype : x ? x.dtype : backend.capabilities.defaultDType);
  checkCellConstants(field, dt0);
  if (problem.batch !== undefined && (!Number.isSafeInteger(problem.batch) || problem.batch < 1)) {
    throw new ShapeError('batch', 'a positive integer', String(problem.batch));
  }
  if (problem.batch !== undefined && B !== problem.batch)
    throw new ShapeError('batch', `${B} (the batch of y0) or nothing`, String(problem.batch));
  if (!Number.isInteger(B) || B < 1) {
    throw new ShapeError(
      'y0',
      `[B, ${n}] or [${n}]`,
      isTensor(y0) ? `[${y0.shape.join(', ')}]` : `${y0.length} values`,
    );
  }
  if (field.inputSize > 0) {
    if (!x) throw new ShapeError('x', `[B, ${T + 1}, ${field.inputSize}] inputs on the grid`, 'nothing');
    checkTensor(backend, 'x', x);
    if (x.shape.length !== 3 || x.shape[1] !== T + 1 || x.shape[2] !== field.inputSize) {
      throw new ShapeError(
        'x',
        `[B, ${T + 1}, ${field.inputSize}] (one input per grid time)`,
        `[${x.shape.join(', ')}]`,
      );
    }
    B = x.shape[0]!;
    if (B < 1) throw new ShapeError('x', `[B, ${T + 1}, ${field.inputSize}] with B ≥ 1`, `[${x.shape.join(', ')}]`);
    if (x.dtype !== dt0) throw new DTypeError('x', `${dt0} (the dtype of ${isTensor(y0) ? 'y0' : 'the solve'})`, x.dtype);
    if (problem.batch !== undefined && problem.batch !== B)
      throw new ShapeError('batch', `${B} (the batch of x) or nothing`, String(problem.batch));
    if (checkFinite) {
      const bad = await backend.findNonFinite(x);
      if (bad) throw new NonFiniteError('x', bad.index, bad.value);
    }
  } else if (x) {
    throw new UnsupportedOptionError('x', 'a tensor', `no inputs: ${field.name} has input size 0`);
  }
  const start = await prepareInitialState(backend, field, y0, B, dt0, owned, checkFinite, 'y0');
  const p = await prepareParams(backend, field, params, dt0, owned, checkFinite);
  return { B, T, dtype: dt0, grid, dt, y0: start, params: p, x };
}

/**
 * The backend, checked for the batched small-matrix ops: a backend written against an older
 * interface gets a clear error naming what it lacks rather than a TypeError deep in a solve.
 */
export function requireMatrixOps(backend: Backend): MatrixOps {
  checkBackend(backend);
  const missing = (['blockMatmul', 'blockMatvec', 'scaleTime', 'addIdentity', 'maxAbs'] as const).filter(
    (k) => typeof backend[k] !== 'function',
  );
  if (missing.length > 0) {
    throw new UnsupportedOptionError(
      'backend',
      backend.name,
      `a backend with the ODE matrix ops (missing: ${missing.join(', ')})`,
    );
  }
  return backend;
}
