import type { Backend, NewtonUpdate, Tensor } from '../backend/types.js';
import { DTYPE_BYTES } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { describeStructure, structureFromBlockSize } from '../cell/structure.js';
import { OutOfMemoryError, ShapeError, UnsupportedOptionError } from '../errors.js';
import { driveAsync, driveSync, recordIteration, type UpdateRequest, unconverged } from './newton.js';
import { type DeerOptions, type ResolvedDeerOptions, resolveDeerOptions } from './options.js';
import {
  checkInputFinite,
  checkSequenceInput,
  checkTensor,
  checkTrajectory,
  Owned,
  type ParamsInput,
  prepareInitialState,
  prepareParams,
} from './validate.js';

export interface DeerStats {
  /** Newton iterations done (summed over windows). */
  readonly iterations: number;
  /** max |y_new − y_old| after each iteration, in order (all windows). */
  readonly residuals: readonly number[];
  /** Whether Newton met the tolerance (or reached T iterations with an exact Jacobian). */
  readonly converged: boolean;
  /** Whether the result came from the sequential fallback. */
  readonly fellBack: boolean;
  /** NaN/Inf entries of iterates that were replaced by 0. */
  readonly replaced: number;
  /** The Jacobian structure used, e.g. 'dense', 'diagonal', 'block(4)'. */
  readonly structure: string;
  /** Whether that structure is the exact Jacobian (false: quasi-DEER). */
  readonly exactJacobian: boolean;
  /** Windows of time steps solved one after another (1: the whole sequence at once). */
  readonly windows: number;
}

export interface DeerResult {
  /** [B, T, n]; the caller owns it and disposes it. */
  readonly y: Tensor;
  readonly stats: DeerStats;
}

/** Time steps per window: all of T unless J (B·W·n·s numbers) would exceed a buffer. */
export function chooseWindow(
  backend: Backend,
  B: number,
  T: number,
  n: number,
  s: number,
  bytes: number,
): number {
  const largest = B * n * Math.max(s, 1) * bytes;
  const fit = Math.floor(backend.capabilities.maxBufferBytes / largest);
  if (fit < 1) {
    throw new ShapeError(
      'x',
      `a batch whose per-step Jacobian (${largest} bytes) fits the backend's largest buffer (${backend.capabilities.maxBufferBytes} bytes)`,
      `batch ${B} with state ${n}`,
    );
  }
  return Math.min(T, fit);
}

/**
 * Evaluate y_t = f(y_{t−1}, x_t) for all t by DEER: Newton's method on the whole trajectory, each
 * iteration one parallel linear scan. x is [B, T, m]; returns y [B, T, n] and statistics.
 */
export async function deer(
  backend: Backend,
  cell: Cell,
  params: ParamsInput,
  x: Tensor,
  options: DeerOptions = {},
): Promise<DeerResult> {
  const { B, dtype } = checkSequenceInput(backend, cell, x);
  const opts = resolveDeerOptions(cell, dtype, options);
  const owned = new Owned(backend);
  try {
    if (opts.checkFinite) await checkInputFinite(backend, x);
    const p = await prepareParams(backend, cell, params, dtype, owned, opts.checkFinite);
    const y0 = await prepareInitialState(backend, cell, options.h0, B, dtype, owned, opts.checkFinite);
    const tol = { atol: opts.atol, rtol: opts.rtol, clip: opts.clip };
    return await driveAsync(deerSolve(backend, cell, p, x, y0, opts, options.onIteration, owned), (r) =>
      backend.newtonUpdate(r.raw, r.previous, tol),
    );
  } finally {
    owned.dispose();
  }
}

/**
 * `deer` for backends whose reads complete synchronously (`newtonUpdateSync`), for callers that
 * cannot await — such as a tfjs custom-gradient op. Parameters and h0 ([B, n]) are tensors; inputs
 * are not scanned for NaN/Inf (that check needs an asynchronous read).
 */
export function deerSync(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  h0: Tensor,
  options: Omit<DeerOptions, 'h0' | 'checkFinite'> = {},
): DeerResult {
  const { B, dtype } = checkSequenceInput(backend, cell, x);
  const update = backend.newtonUpdateSync?.bind(backend);
  if (!update) {
    throw new UnsupportedOptionError(
      'backend',
      backend.name,
      'a backend with synchronous reads (newtonUpdateSync)',
    );
  }
  checkTensor(backend, 'h0', h0);
  if (h0.shape.length !== 2 || h0.shape[0] !== B || h0.shape[1] !== cell.stateSize) {
    throw new ShapeError('h0', `[${B}, ${cell.stateSize}]`, `[${h0.shape.join(', ')}]`);
  }
  const opts = resolveDeerOptions(cell, dtype, options);
  const tol = { atol: opts.atol, rtol: opts.rtol, clip: opts.clip };
  const owned = new Owned(backend);
  try {
    return driveSync(deerSolve(backend, cell, params, x, h0, opts, options.onIteration, owned), (r) =>
      update(r.raw, r.previous, tol),
    );
  } finally {
    owned.dispose();
  }
}

/**
 * The whole solve — windows, Newton iterations, fallback — as a generator that yields at its only
 * read, so `deer` (async) and `deerSync` run the same steps.
 */
function* deerSolve(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  opts: ResolvedDeerOptions,
  report: DeerOptions['onIteration'],
  owned: Owned,
): Generator<UpdateRequest, DeerResult, NewtonUpdate> {
  const [B, T] = [x.shape[0]!, x.shape[1]!];
  const n = cell.stateSize;
  const dtype = x.dtype;
  const guess = opts.initialGuess;
  if (typeof guess === 'object') checkTrajectory(backend, 'initialGuess', guess, B, T, n);
  const yBytes = B * T * n * DTYPE_BYTES[dtype];
  if (yBytes > backend.capabilities.maxBufferBytes) {
    throw new OutOfMemoryError(
      backend.name,
      yBytes,
      `y [${B}, ${T}, ${n}] does not fit the largest buffer (${backend.capabilities.maxBufferBytes} bytes): solve shorter sequences or a smaller batch`,
    );
  }
  const W = opts.window ?? chooseWindow(backend, B, T, n, opts.blockSize, DTYPE_BYTES[dtype]);
  const windows = Math.ceil(T / W);
  const stats = {
    iterations: 0,
    residuals: [] as number[],
    converged: true,
    fellBack: false,
    replaced: 0,
    structure: describeStructure(structureFromBlockSize(opts.blockSize, n)),
    exactJacobian: opts.exact,
    windows,
  };
  const pieces: Tensor[] = [];
  let start = y0;
  try {
    for (let w = 0; w < windows; w++) {
      const t0 = w * W;
      const len = Math.min(W, T - t0);
      const xw = windows === 1 ? x : owned.add(backend.sliceTime(x, t0, len));
      const yw = yield* solveWindow(
        backend,
        cell,
        params,
        xw,
        start,
        opts,
        stats,
        report,
        w,
        windows,
        t0,
        len,
      );
      pieces.push(yw);
      if (w + 1 < windows) start = owned.add(backend.timeStep(yw, len - 1));
    }
  } catch (err) {
    for (const t of pieces) backend.dispose(t);
    throw err;
  }
  if (pieces.length === 1) return { y: pieces[0]!, stats };
  const y = backend.concatTime(pieces);
  for (const t of pieces) backend.dispose(t);
  return { y, stats };
}

interface MutableStats {
  iterations: number;
  residuals: number[];
  converged: boolean;
  fellBack: boolean;
  replaced: number;
}

function* solveWindow(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  opts: ResolvedDeerOptions,
  stats: MutableStats,
  report: DeerOptions['onIteration'],
  window: number,
  windows: number,
  t0: number,
  T: number,
): Generator<UpdateRequest, Tensor, NewtonUpdate> {
  const s = opts.blockSize;
  const program = cell.linearizeProgram(s);
  const guess = opts.initialGuess;
  let y: Tensor;
  if (guess === 'h0') y = backend.broadcastTime(y0, T);
  else if (guess === 'zeros') y = backend.zeros([x.shape[0]!, T, cell.stateSize], x.dtype);
  else y = backend.sliceTime(guess, t0, T);
  let converged = false;
  try {
    for (let it = 1; it <= opts.maxIter; it++) {
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
      let update: NewtonUpdate;
      try {
        update = yield { raw, previous: y };
      } finally {
        backend.dispose(raw);
      }
      backend.dispose(y);
      y = update.y;
      recordIteration(stats, update, report, { iteration: it, window, windows });
      // With the exact Jacobian, iteration k makes the first k states exact: T iterations suffice.
      if (update.maxScaledDiff <= 1 || (opts.exact && it >= T && update.replaced === 0)) {
        converged = true;
        break;
      }
    }
  } catch (err) {
    backend.dispose(y);
    throw err;
  }
  if (converged) return y;
  return (
    unconverged(backend, y, opts, stats, 'DEER') ??
    backend.runSequential(cell.stepProgram(), { input: x, y0, params })
  );
}
