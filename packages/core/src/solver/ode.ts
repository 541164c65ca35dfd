import { type Backend, type Tensor, UNIT_ROUNDOFF } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { describeStructure, structureFromBlockSize } from '../cell/structure.js';
import { DeerError, UnsupportedOptionError } from '../errors.js';
import type { DeerStats } from './deer.js';
import { type EngineStats, type NewtonProblem, newEngineStats, solveWindows, withoutSpanFlag } from './engine.js';
import { AbortCheck, type AbortSignalLike } from './abort.js';
import { awaitAsync, driveAsync, type Solve } from './solve.js';
import { affineExponentialSolve, EXPM_PEAK_BUFFERS, type MatrixOps } from './expm.js';
import { type OdeProblem, type PreparedOde, prepareOde, requireMatrixOps } from './ode-inputs.js';
import { dopri5 } from './ode-sequential.js';
import { resolutionOf, unresolvedRows } from './rounding.js';
import { checkOptionNames, type DeerOptions, flag, resolveDeerOptions } from './options.js';
import { checkInitialGuess, Owned, type ParamsInput } from './validate.js';
import { checkTrajectoryFits, chooseWindow } from './window.js';

/** The option names `solveIvp` and `solveIvpWithGrad` accept. */
export const IVP_OPTION_NAMES: readonly string[] = [
  'atol',
  'rtol',
  'maxIter',
  'jacobian',
  'fallback',
  'clip',
  'onIteration',
  'checkFinite',
  'window',
  'initialGuess',
  'method',
  'signal',
];

/** Jacobian-sized buffers one ODE Newton iteration holds at its peak (the exponential's, plus J). */
export const ODE_PEAK_JACOBIANS = EXPM_PEAK_BUFFERS + 1;

export interface IvpOptions
  extends Pick<
    DeerOptions,
    'atol' | 'rtol' | 'maxIter' | 'jacobian' | 'fallback' | 'clip' | 'onIteration' | 'checkFinite' | 'window' | 'method' | 'signal'
  > {
  /** First iterate: y0 held constant (default), zeros, or a [B, T, n] tensor (warm start). */
  readonly initialGuess?: 'y0' | 'zeros' | Tensor;
}

export interface IvpResult {
  /** y at t_1 … t_T: [B, T, n]. The caller owns it. */
  readonly y: Tensor;
  readonly stats: DeerStats;
}

/**
 * Solve dy/dt = f(y, x(t); θ) on the grid by DEER: linearise around the iterate, average the
 * endpoint Jacobians and offsets on each interval, solve that piecewise-constant linear ODE exactly
 * (`affineExponential`), and chain the intervals with the scan. The fixed point is an exponential
 * trapezoidal scheme, second order in the step. `field` is a cell whose body returns dy/dt.
 */
export async function solveIvp(
  backend: Backend,
  field: Cell,
  params: ParamsInput,
  problem: OdeProblem,
  options: IvpOptions = {},
): Promise<IvpResult> {
  checkOptionNames(options, IVP_OPTION_NAMES, 'solveIvp');
  const ops = requireMatrixOps(backend);
  const owned = new Owned(backend);
  try {
    const checkFinite = flag('checkFinite', options.checkFinite, true);
    const prep = await prepareOde(backend, field, params, problem, undefined, owned, checkFinite);
    const solved = await solvePrepared(ops, field, prep, options);
    return { y: solved.y, stats: solved.stats };
  } finally {
    owned.dispose();
  }
}

/**
 * @internal The Newton loop on a validated problem, in windows of grid intervals when the
 * Jacobians of all grid points would not fit (or `window` is set): each window starts from the
 * last state of the one before.
 */
export async function solvePrepared(
  backend: MatrixOps,
  field: Cell,
  prep: PreparedOde,
  options: IvpOptions,
): Promise<{ y: Tensor; stats: DeerStats }> {
  const { B, T } = prep;
  const n = field.stateSize;
  const { initialGuess, ...rest } = options;
  const opts = resolveDeerOptions(field, prep.dtype, rest, IVP_OPTION_NAMES, 'solveIvp');
  const abort = new AbortCheck(opts.signal);
  abort.checkSync();
  if (opts.method !== 'deer') {
    throw new UnsupportedOptionError(
      'method',
      opts.method,
      "'deer' for solveIvp (ELK's damped step is for recurrences; an ODE's interval maps are exponentials)",
    );
  }
  if (!opts.exact) {
    // For a recurrence a Jacobian coarser than the exact one changes only Newton's path; for an
    // ODE it is also inside each interval's exponential, so it changes the scheme and its answer
    // (a linear field is no longer solved exactly).
    throw new UnsupportedOptionError(
      'jacobian',
      rest.jacobian,
      `a structure exact for this field ('auto', 'dense' or { block: s } with s a multiple of ${field.exactBlockSize}): an ODE's interval maps use the Jacobian, so an approximate one changes the answer, not only the iterations`,
    );
  }
  // null is refused as `deer` refuses it (`??` would have read it as the default).
  if (initialGuess === null) throw new UnsupportedOptionError('initialGuess', null, 'a value, or the option left out');
  const guess = initialGuess ?? 'y0';
  if (typeof guess !== 'object' && guess !== 'y0' && guess !== 'zeros') {
    throw new UnsupportedOptionError('initialGuess', guess, "'y0', 'zeros' or a [B, T, n] tensor of the solve's dtype");
  }
  if (guess !== 'y0' && guess !== 'zeros') {
    await checkInitialGuess(backend, guess, { B, T, n, dtype: prep.dtype }, opts.checkFinite);
  }
  checkTrajectoryFits(backend, B, T, n, prep.dtype, 'solve on a coarser grid or a smaller batch');
  const s = opts.blockSize;
  const W =
    opts.window ??
    chooseWindow(backend, {
      B,
      T,
      n,
      s,
      dtype: prep.dtype,
      extra: 1,
      jacobians: ODE_PEAK_JACOBIANS,
      lastHasExtra: true,
    });
  const stats: EngineStats = newEngineStats('deer');
  const y = await driveAsync(
    backend,
    solveWindows(
      backend,
      T,
      W,
      prep.y0,
      (t0, len, start) => {
        const xw = prep.x && len < T ? backend.sliceTime(prep.x, t0, len + 1) : prep.x;
        const sub: PreparedOde = {
          ...prep,
          T: len,
          grid: prep.grid.subarray(t0, t0 + len + 1),
          dt: prep.dt.subarray(t0, t0 + len),
          y0: start,
          x: xw,
        };
        const initial = () =>
          guess === 'y0'
            ? backend.broadcastTime(start, len)
            : guess === 'zeros'
              ? backend.zeros([B, len, n], prep.dtype)
              : backend.sliceTime(guess, t0, len);
        const problem = odeProblem(backend, field, sub, s, initial, opts);
        return xw !== prep.x && xw ? { ...problem, release: () => backend.dispose(xw) } : problem;
      },
      { ...opts, solver: 'solveIvp: DEER' },
      stats,
    ),
    abort,
  );
  return {
    y,
    stats: {
      ...withoutSpanFlag(stats),
      structure: describeStructure(structureFromBlockSize(s, n)),
      exactJacobian: opts.exact,
      windows: Math.ceil(T / W),
    },
  };
}

/**
 * The ODE on one window of grid intervals as a Newton problem: the fixed point of
 * y_i = A_i(y) y_{i−1} + b_i(y), the exponential trapezoidal map linearised around y.
 */
function odeProblem(
  backend: MatrixOps,
  field: Cell,
  prep: PreparedOde,
  s: number,
  initial: () => Tensor,
  tol: { atol: number; rtol: number; signal?: AbortSignalLike | undefined },
): NewtonProblem {
  const program = field.linearizeProgram(s);
  const { B, T } = prep;
  const n = field.stateSize;
  /** The norm bound that scaled the last maps made (the exponentials' rounding grows with it). */
  let lastNorm = 0;
  /** Per block ([B, T, n/s]), the estimated rounding of the last maps made with `estimateRounding`. */
  let lastRounding: ArrayLike<number> = new Float64Array(0);
  function* linearize(y: Tensor, estimateRounding = false): Solve<{ A: Tensor; r: Tensor }> {
    const y0seq = backend.broadcastTime(prep.y0, 1);
    let maps: { A: Tensor; b: Tensor; norm: number; rounding: Float64Array };
    try {
      maps = yield* intervalMapsSolve(backend, program, prep, y0seq, y, s, estimateRounding);
      lastNorm = maps.norm;
      lastRounding = maps.rounding;
    } finally {
      backend.dispose(y0seq);
    }
    try {
      const yPrev = backend.shiftTime(y, prep.y0, 1);
      const Ay = backend.blockMatvec(maps.A, yPrev, s);
      backend.dispose(yPrev);
      const G = backend.add(Ay, maps.b);
      backend.dispose(Ay);
      const r = backend.sub(G, y);
      backend.dispose(G);
      return { A: maps.A, r };
    } catch (err) {
      backend.dispose(maps.A);
      throw err;
    } finally {
      backend.dispose(maps.b);
    }
  }

  /** Of `rows`, those where the interval maps' own rounding may exceed the tolerance. */
  function* unvouchedMaps(y: Tensor, rows: readonly number[]): Solve<number[]> {
    // Scaling and squaring rounds each map by up to about j·‖M‖·eps (M = J̄Δt, j squarings),
    // and the residual check reuses those rounded maps, so it cannot see that. Where that could
    // pass the tolerance, the maps are made once more with their rounding estimated level by
    // level and block by block (a rotation's errors grow through every squaring, a decay's die
    // out). A map's error acts on what it maps, so step t's error is about that estimate times
    // |y_{t−1}| + |y_t| (the offset b is of that size), judged against atol + rtol·|y_t|.
    const eps = UNIT_ROUNDOFF[prep.dtype];
    // Only where ‖M‖·eps alone passes rtol (or there is no rtol): below that the estimate, which
    // is entry-wise and so pessimistic for rotations by up to √2 per squaring, would flag
    // answers that are fine (a float64 rotation by 1e5 rad per interval: 5e-12 off).
    if (!Number.isFinite(lastNorm) || (tol.rtol > 0 && !(lastNorm * eps > tol.rtol))) return [];
    const { A, r } = yield* linearize(y, true);
    backend.dispose(A);
    backend.dispose(r);
    const yh = yield* awaitAsync(() => backend.read(y));
    const y0h = yield* awaitAsync(() => backend.read(prep.y0));
    const nb = n / s;
    const size = (from: ArrayLike<number>, at: number) => {
      let m = 0;
      for (let i = at; i < at + s; i++) m = Math.max(m, Math.abs(from[i]!));
      return m;
    };
    return rows.filter((b) => {
      for (let t = 0; t < T; t++) {
        for (let k = 0; k < nb; k++) {
          const now = size(yh, (b * T + t) * n + k * s);
          const before = t === 0 ? size(y0h, b * n + k * s) : size(yh, (b * T + t - 1) * n + k * s);
          // NaN counts: an estimate that overflowed vouches for nothing.
          if (!(lastRounding[(b * T + t) * nb + k]! * (before + now) <= tol.atol + tol.rtol * now)) return true;
        }
      }
      return false;
    });
  }

  return {
    B,
    T,
    n,
    blockSize: s,
    // The map at step i depends on both of its endpoints, so T iterations make nothing exact.
    finiteDepth: false,
    // The interval map's Jacobian comes from the linearised field, not from the map itself.
    exactJacobian: false,
    initial,
    linearize: (y) => linearize(y),
    *evaluate(y) {
      const { A, r } = yield* linearize(y);
      backend.dispose(A);
      return r;
    },
    roundingAdvice: `the interval maps' own rounding, or the ${prep.dtype} resolution of |y|, may exceed atol + rtol·|y| (use a finer grid, rtol ≥ ${resolutionOf(prep.dtype).toExponential(1)}, or float64)`,
    *certify(y, rows) {
      const unresolved = yield* unresolvedRows(y, rows, tol);
      return [...unresolved, ...(yield* unvouchedMaps(y, rows.filter((b) => !unresolved.includes(b))))];
    },
    *sequential(rows) {
      const all = rows.length === B;
      const y0 = all ? prep.y0 : backend.gatherRows(prep.y0, rows);
      const x = prep.x && !all ? backend.gatherRows(prep.x, rows) : prep.x;
      try {
        return yield* awaitAsync(() =>
          dopri5(backend, field, prep.params, y0, prep.grid, x, { atol: tol.atol, rtol: tol.rtol, ...(tol.signal ? { signal: tol.signal } : {}) }),
        );
      } catch (err) {
        // The error is dopri5's (same class and fields); its message says it came from the
        // fallback, after Newton gave these rows up, and what else the caller can ask for.
        if (err instanceof DeerError)
          err.message = `solveIvp: Newton did not finish row${rows.length === 1 ? '' : 's'} ${rows.join(', ')}, and its sequential fallback failed (fallback: 'none' returns Newton's last iterate instead, 'throw' stops at Newton) — ${err.message}`;
        throw err;
      } finally {
        if (!all) {
          backend.dispose(y0);
          if (x) backend.dispose(x);
        }
      }
    },
  };
}

/**
 * (A_i, b_i) for every interval, linearised around the trajectory y (at t_1..t_T, with y0 at t_0):
 * J̄_i and c̄_i are the means of the endpoint values of J = ∂f/∂y and c = f − J·y.
 */
export async function intervalMaps(
  backend: MatrixOps,
  program: ReturnType<Cell['linearizeProgram']>,
  prep: PreparedOde,
  y0seq: Tensor,
  y: Tensor,
  s: number,
): Promise<{ A: Tensor; b: Tensor; stiffness: number }> {
  return driveAsync(backend, intervalMapsSolve(backend, program, prep, y0seq, y, s, false, true));
}

function* intervalMapsSolve(
  backend: MatrixOps,
  program: ReturnType<Cell['linearizeProgram']>,
  prep: PreparedOde,
  y0seq: Tensor,
  y: Tensor,
  s: number,
  estimateRounding = false,
  measureStiffness = false,
): Solve<{ A: Tensor; b: Tensor; norm: number; rounding: Float64Array; stiffness: number }> {
  const T = prep.T;
  const temps = new Owned(backend);
  let Jsum: Tensor;
  let csum: Tensor;
  let stiffness = Number.NaN;
  try {
    const full = temps.add(backend.concatTime([y0seq, y]));
    const lin = backend.runStep(
      program,
      prep.x ? { state: full, input: prep.x, params: prep.params } : { state: full, params: prep.params },
    );
    const F = temps.add(lin.outputs[0]!);
    const J = temps.add(lin.jacobian!);
    const c = temps.add(backend.affineOffset(F, J, full, s));
    Jsum = backend.add(temps.add(backend.sliceTime(J, 0, T)), temps.add(backend.sliceTime(J, 1, T)));
    csum = backend.add(temps.add(backend.sliceTime(c, 0, T)), temps.add(backend.sliceTime(c, 1, T)));
  } finally {
    // J and its slices go before the exponential starts, so its peak is its own.
    temps.dispose();
  }
  try {
    if (measureStiffness) {
      // The largest entry of J̄·Δt over the intervals: a rate times a step.
      const M = backend.scaleTime(Jsum, prep.dt, 0.5);
      try {
        stiffness = yield* awaitAsync(() => backend.maxAbs(M));
      } finally {
        backend.dispose(M);
      }
    }
    const maps = yield* affineExponentialSolve(backend, Jsum, csum, prep.dt, 0.5, s, estimateRounding);
    return { ...maps, stiffness };
  } finally {
    backend.dispose(Jsum);
    backend.dispose(csum);
  }
}
