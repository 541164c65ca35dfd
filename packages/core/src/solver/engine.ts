import {
  type Backend,
  counterDifference,
  type DeviceCounters,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  type Tensor,
  type TypedArray,
} from '../backend/types.js';
import { ConvergenceError, UnsupportedOptionError } from '../errors.js';
import type { FallbackOption, IterationInfo } from './options.js';

/**
 * The one Newton engine behind `deer`, `solveIvp` and their sync variants. A problem supplies
 * "linearise at y" and "evaluate the fixed-point map at y"; the engine owns everything else: the
 * δ-form update, the stopping rule, per-row convergence, the residual check, the fallback, stats.
 *
 * A solve is a generator that yields at its reads, so the same steps run under an async driver
 * (`driveAsync`) or a synchronous one (`driveSync`, for backends with synchronous reads).
 */

/** Why Newton stopped for a batch row (the stats report the worst row's). */
export type StopReason = 'tolerance' | 'stagnated' | 'diverged' | 'nonFinite' | 'maxIter';

export type ReadRequest =
  | {
      readonly kind: 'update';
      readonly raw: Tensor;
      readonly previous: Tensor;
      readonly opts: NewtonUpdateOptions;
    }
  | { readonly kind: 'read'; readonly tensor: Tensor }
  | { readonly kind: 'async'; readonly run: () => Promise<unknown> };

/** A solve (or part of one) that yields at its reads. */
export type Solve<R> = Generator<ReadRequest, R, unknown>;

/** Sanitize `raw` and measure it against `previous` (one small read). */
export function* readUpdate(raw: Tensor, previous: Tensor, opts: NewtonUpdateOptions): Solve<NewtonUpdate> {
  return (yield { kind: 'update', raw, previous, opts }) as NewtonUpdate;
}

/** A tensor's values on the host (sync drivers need `backend.readSync`). */
export function* readTensor(tensor: Tensor): Solve<TypedArray> {
  return (yield { kind: 'read', tensor }) as TypedArray;
}

/** Await `run` inside a solve (async drivers only). */
export function* awaitAsync<T>(run: () => Promise<T>): Solve<T> {
  return (yield { kind: 'async', run }) as T;
}

export async function driveAsync<R>(backend: Backend, solve: Solve<R>): Promise<R> {
  let step = solve.next();
  while (!step.done) {
    let answer: unknown;
    try {
      const r = step.value;
      answer =
        r.kind === 'update'
          ? await backend.newtonUpdate(r.raw, r.previous, r.opts)
          : r.kind === 'read'
            ? await backend.read(r.tensor)
            : await r.run();
    } catch (err) {
      // Raised inside the generator at its read, so it disposes what it holds.
      step = solve.throw(err);
      continue;
    }
    step = solve.next(answer);
  }
  return step.value;
}

export function driveSync<R>(backend: Backend, solve: Solve<R>): R {
  const update = backend.newtonUpdateSync?.bind(backend);
  if (!update) {
    throw new UnsupportedOptionError(
      'backend',
      backend.name,
      'a backend with synchronous reads (newtonUpdateSync)',
    );
  }
  let step = solve.next();
  while (!step.done) {
    let answer: unknown;
    try {
      const r = step.value;
      if (r.kind === 'update') answer = update(r.raw, r.previous, r.opts);
      else if (r.kind === 'read' && backend.readSync) answer = backend.readSync(r.tensor);
      else throw new UnsupportedOptionError('backend', backend.name, 'an asynchronous driver for this solve');
    } catch (err) {
      step = solve.throw(err);
      continue;
    }
    step = solve.next(answer);
  }
  return step.value;
}

/**
 * One window of a problem whose solution is the fixed point y = G(y), G(y)_t depending on y_{t−1}
 * (and y_0 = the window's boundary state): an RNN step, or an ODE's interval map.
 */
export interface NewtonProblem {
  readonly B: number;
  readonly T: number;
  readonly n: number;
  readonly blockSize: number;
  /**
   * Whether T iterations with the exact Jacobian make all T steps exact (recurrences: step t is
   * exact after t iterations). Then Newton stops after T + 1 iterations — as much sequential depth
   * as a step-by-step pass — and the fallback answers what has not converged by then.
   */
  readonly finiteDepth: boolean;
  /** The first iterate, [B, T, n]; the engine owns it. */
  initial(): Tensor;
  /** A = ∂G/∂y_{t−1} ([B, T, n/s, s, s]) and G(y) ([B, T, n]); the engine disposes both. */
  linearize(y: Tensor): Solve<{ A: Tensor; G: Tensor }>;
  /** G(y) alone, for the residual check. */
  evaluate(y: Tensor): Solve<Tensor>;
  /** The exact step-by-step answer for the rows `rows`: [rows.length, T, n]. */
  sequential(rows: readonly number[]): Solve<Tensor>;
  /** Free what the problem made for its window (slices of inputs). */
  release?(): void;
}

export interface EngineOptions {
  readonly atol: number;
  readonly rtol: number;
  readonly clip: number;
  readonly maxIter: number;
  readonly fallback: FallbackOption;
  /** Names the solver in errors, e.g. 'DEER'. */
  readonly solver: string;
  readonly onIteration?: (info: IterationInfo) => void;
}

/** What the engine records across the windows of one solve (read-only in DeerStats). */
export interface EngineStats {
  iterations: number;
  residuals: number[];
  converged: boolean;
  fellBack: boolean;
  replaced: number;
  clipped: number;
  residual: number;
  stopReason: StopReason;
  fallbackRows: number;
  /** Device work of the solve (summed over windows), when the backend counts it (`counters`). */
  device?: DeviceCounters;
}

export function newEngineStats(): EngineStats {
  return {
    iterations: 0,
    residuals: [],
    converged: true,
    fellBack: false,
    replaced: 0,
    clipped: 0,
    residual: 0,
    stopReason: 'tolerance',
    fallbackRows: 0,
  };
}

/**
 * Iterations without halving the best step before a row's progress is judged by its settled
 * front (and it counts as stagnated if that would not finish within the budget).
 */
export const STAGNATION_PATIENCE = 8;
/** Consecutive iterations with NaN/Inf (or clipped) entries before a row is given up. */
export const BAD_STREAK = 3;
/** Residual checks a row may fail (and go back to Newton) before it is given up. */
const RESIDUAL_RETRIES = 2;

const SEVERITY: readonly StopReason[] = ['tolerance', 'maxIter', 'stagnated', 'diverged', 'nonFinite'];

enum Row {
  Active = 0,
  /** Met the step tolerance with no replaced or clipped entry; awaiting the residual check. */
  Pending = 1,
  Converged = 2,
  Failed = 3,
}

/**
 * Newton on one window, each iteration in δ form: δ_t = A_t δ_{t−1} + (G(y)_t − y_t), δ_0 = 0,
 * y ← y + δ (so float32 rounding in the scan scales with the step, not with |y|). Rows converge
 * independently: a row that meets the tolerance is held while the others go on. A row counts as
 * converged only when its last step met the tolerance with nothing replaced or clipped *and* its
 * one-step residual |y − G(y)| meets the tolerance too. Rows that stagnate, diverge or stay
 * non-finite are given up at once; after maxIter iterations (or T + 1 for a problem of finite
 * depth) the rest are. Given-up rows go to the fallback, alone.
 */
export function* newtonWindow(
  backend: Backend,
  problem: NewtonProblem,
  opts: EngineOptions,
  stats: EngineStats,
  where: { window: number; windows: number },
): Solve<Tensor> {
  const { B, T, n, blockSize: s } = problem;
  const budget = problem.finiteDepth ? Math.min(opts.maxIter, T + 1) : opts.maxIter;
  const status = new Uint8Array(B);
  const reason: StopReason[] = new Array(B).fill('tolerance');
  const best = new Float64Array(B).fill(Number.POSITIVE_INFINITY);
  const since = new Uint32Array(B);
  /** Settled steps when the row last halved its step (progress is measured from there). */
  const mark = new Uint32Array(B);
  const nonFiniteStreak = new Uint32Array(B);
  const clipStreak = new Uint32Array(B);
  const residualFails = new Uint32Array(B);
  const tol = { atol: opts.atol, rtol: opts.rtol, clip: opts.clip };
  const mask = (want: Row) => Uint8Array.from(status, (v) => (v === want ? 1 : 0));
  const count = (want: Row) => status.reduce((k, v) => k + (v === want ? 1 : 0), 0);
  const fail = (b: number, why: StopReason) => {
    status[b] = Row.Failed;
    reason[b] = why;
  };

  let y = problem.initial();
  const zeros = backend.zeros([B, n], y.dtype);
  let iterations = 0;
  try {
    while (count(Row.Active) > 0) {
      // Newton iterations on the active rows.
      while (count(Row.Active) > 0 && iterations < budget) {
        iterations++;
        const { A, G } = yield* problem.linearize(y);
        let raw: Tensor;
        try {
          const r = backend.sub(G, y);
          backend.dispose(G);
          try {
            const delta = backend.scan({ A, c: r, y0: zeros, blockSize: s, reverse: false });
            try {
              raw = backend.add(y, delta);
            } finally {
              backend.dispose(delta);
            }
          } finally {
            backend.dispose(r);
          }
        } finally {
          backend.dispose(A);
        }
        let update: NewtonUpdate;
        try {
          update = yield* readUpdate(raw, y, { ...tol, active: mask(Row.Active) });
        } finally {
          backend.dispose(raw);
        }
        backend.dispose(y);
        y = update.y;
        stats.iterations++;
        stats.residuals.push(update.maxAbsDiff);
        stats.replaced += update.replaced;
        stats.clipped += update.clipped;
        for (let b = 0; b < B; b++) {
          if (status[b] !== Row.Active) continue;
          const sc = update.rows.maxScaledDiff[b]!;
          const rep = update.rows.replaced[b]!;
          const clp = update.rows.clipped[b]!;
          if (rep === 0 && clp === 0 && sc <= 1) {
            status[b] = Row.Pending;
            continue;
          }
          nonFiniteStreak[b] = rep > 0 ? nonFiniteStreak[b]! + 1 : 0;
          clipStreak[b] = clp > 0 ? clipStreak[b]! + 1 : 0;
          if (nonFiniteStreak[b]! >= BAD_STREAK) fail(b, 'nonFinite');
          else if (clipStreak[b]! >= BAD_STREAK) fail(b, 'diverged');
          else if (sc < 0.5 * best[b]!) {
            best[b] = sc;
            since[b] = 0;
            mark[b] = update.rows.settled[b]!;
          } else if (++since[b]! >= STAGNATION_PATIENCE) {
            // No halving for a while: progress only if the settled front moves fast enough to
            // reach T within the budget (exact Newton settles ≥ 1 step per iteration).
            const settled = update.rows.settled[b]!;
            const rate = (settled - mark[b]!) / since[b]!;
            if (!(rate > 0) || iterations + (T - settled) / rate > budget) fail(b, 'stagnated');
          }
        }
        opts.onIteration?.({
          iteration: iterations,
          maxAbsDiff: update.maxAbsDiff,
          maxScaledDiff: update.maxScaledDiff,
          activeRows: count(Row.Active),
          window: where.window,
          windows: where.windows,
        });
      }
      for (let b = 0; b < B; b++) if (status[b] === Row.Active) fail(b, 'maxIter');
      if (count(Row.Pending) === 0) break;
      // The residual check: one evaluation of G at the iterate.
      const check = yield* measureResidual(backend, problem, y, mask(Row.Pending), opts);
      for (let b = 0; b < B; b++) {
        if (status[b] !== Row.Pending) continue;
        const ok = check.rows.replaced[b] === 0 && check.rows.maxScaledDiff[b]! <= 1;
        if (ok) {
          status[b] = Row.Converged;
          stats.residual = Math.max(stats.residual, check.rows.maxScaledDiff[b]!);
        } else if (++residualFails[b]! > RESIDUAL_RETRIES) fail(b, 'stagnated');
        else if (iterations < budget) status[b] = Row.Active;
        else fail(b, 'maxIter');
      }
    }
    const failed = [...status.keys()].filter((b) => status[b] === Row.Failed);
    if (failed.length === 0) return y;
    stats.converged = false;
    for (const b of failed) {
      if (SEVERITY.indexOf(reason[b]!) > SEVERITY.indexOf(stats.stopReason)) stats.stopReason = reason[b]!;
    }
    if (opts.fallback === 'throw') {
      throw new ConvergenceError(
        `${opts.solver} did not converge for ${failed.length} of ${B} batch rows (${stats.stopReason} after ${iterations} iterations; last max |Δy| = ${stats.residuals.at(-1)}, atol ${opts.atol}, rtol ${opts.rtol})`,
        { ...stats, residuals: [...stats.residuals] },
      );
    }
    if (opts.fallback === 'none') {
      const failedRows = Uint8Array.from(status, (v) => (v === Row.Failed ? 1 : 0));
      const check = yield* measureResidual(backend, problem, y, failedRows, opts);
      stats.residual = Math.max(
        stats.residual,
        check.replaced > 0 ? Number.POSITIVE_INFINITY : check.maxScaledDiff,
      );
      return y;
    }
    stats.fellBack = true;
    stats.fallbackRows += failed.length;
    const exact = yield* problem.sequential(failed);
    try {
      if (failed.length === B) {
        backend.dispose(y);
        y = exact;
        return y;
      }
      const merged = backend.scatterRows(y, failed, exact);
      backend.dispose(y);
      y = merged;
      return y;
    } finally {
      if (failed.length !== B) backend.dispose(exact);
    }
  } catch (err) {
    backend.dispose(y);
    throw err;
  } finally {
    backend.dispose(zeros);
  }
}

/**
 * Per-row |y − G(y)| / (atol + rtol·|G(y)|) for the rows in `active`, unclipped (a clipped G
 * would hide the very residual being measured); NaN/Inf entries of G count as replaced.
 */
function* measureResidual(
  backend: Backend,
  problem: NewtonProblem,
  y: Tensor,
  active: Uint8Array,
  tol: { atol: number; rtol: number },
): Solve<NewtonUpdate> {
  const G = yield* problem.evaluate(y);
  let check: NewtonUpdate;
  try {
    check = yield* readUpdate(G, y, {
      atol: tol.atol,
      rtol: tol.rtol,
      clip: Number.POSITIVE_INFINITY,
      active,
    });
  } finally {
    backend.dispose(G);
  }
  backend.dispose(check.y);
  return check;
}

/**
 * Solve window after window of time steps (each starting from the last state of the one before)
 * and join the pieces. `window(t0, len, start)` builds the problem of steps t0 .. t0 + len − 1.
 */
export function* solveWindows(
  backend: Backend,
  T: number,
  W: number,
  start: Tensor,
  window: (t0: number, len: number, start: Tensor) => NewtonProblem,
  opts: EngineOptions,
  stats: EngineStats,
): Solve<Tensor> {
  const windows = Math.ceil(T / W);
  const pieces: Tensor[] = [];
  const starts: Tensor[] = [];
  const counted = backend.counters?.();
  try {
    let boundary = start;
    for (let w = 0; w < windows; w++) {
      const t0 = w * W;
      const len = Math.min(W, T - t0);
      const problem = window(t0, len, boundary);
      try {
        pieces.push(yield* newtonWindow(backend, problem, opts, stats, { window: w, windows }));
      } finally {
        problem.release?.();
      }
      const yw = pieces.at(-1)!;
      if (w + 1 < windows) {
        boundary = backend.timeStep(yw, len - 1);
        starts.push(boundary);
      }
    }
    if (pieces.length === 1) return pieces[0]!;
    const y = backend.concatTime(pieces);
    for (const t of pieces) backend.dispose(t);
    pieces.length = 0;
    return y;
  } catch (err) {
    for (const t of pieces) backend.dispose(t);
    throw err;
  } finally {
    for (const t of starts) backend.dispose(t);
    if (counted) addDeviceCounts(stats, counterDifference(counted, backend.counters!()));
  }
}

/** Add one solve's device counts to the stats (several solves may share them). */
function addDeviceCounts(stats: EngineStats, d: DeviceCounters): void {
  const o = stats.device;
  stats.device = o
    ? {
        dispatches: o.dispatches + d.dispatches,
        submits: o.submits + d.submits,
        reads: o.reads + d.reads,
        bytesWritten: o.bytesWritten + d.bytesWritten,
        bytesRead: o.bytesRead + d.bytesRead,
      }
    : d;
}
