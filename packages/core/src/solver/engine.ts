import {
  type Backend,
  counterDifference,
  type DeviceCounters,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  type Tensor,
} from '../backend/types.js';
import { underlyingBackend } from '../backend/with-capabilities.js';
import { ConvergenceError, OutOfMemoryError, UnsupportedOptionError } from '../errors.js';
import { lastStepMessage } from './convergence-message.js';
import { residualMerit } from './merit.js';
import { awaitAsync, readMaxAbs, readScanUpdate, readUpdate, type Solve } from './solve.js';
import type { FallbackOption, IterationInfo } from './options.js';
import type { SolvePlan } from './plan.js';
import { CHAOS_THRESHOLD, type DynamicsProbe, MERGE_TOLERANCE } from './probes.js';
import type { Chunking, ShootingResult } from './shooting.js';

/**
 * The one Newton engine behind `deer`, `solveIvp` and their sync variants. A problem supplies
 * "linearise at y" and "evaluate the fixed-point map at y"; the engine owns everything else: the
 * δ-form update, the stopping rule, per-row convergence, the residual check, the fallback, stats.
 *
 * A solve is a generator that yields at its reads, so the same steps run under an async driver
 * (`driveAsync`) or a synchronous one (`driveSync`, for backends with synchronous reads).
 */

/**
 * Why Newton stopped for a batch row (the stats report the worst row's). 'sequential': no Newton
 * at all — `method: 'auto'`'s cost model chose sequential evaluation (an exact answer). 'chaotic':
 * 'auto' sent the row to sequential evaluation before iterating (its Lyapunov exponent is
 * positive). 'longMemory': the row remembers a perturbed start for longer than Newton's iteration
 * budget, and parallel shooting did not take it (a row of the batch near chaos, or the cost model
 * declined) or did not finish it. 'rounding': the residual met the tolerance, but rounding at the
 * answer exceeds it (an ODE's interval exponentials over a very large ‖J·Δt‖ for the dtype; a
 * tolerance finer than the dtype resolves at |y|, e.g. rtol 1e-9 in float32), so the answer is not
 * vouched for; it is returned, not replaced.
 */
export type StopReason =
  | 'tolerance'
  | 'stagnated'
  | 'diverged'
  | 'nonFinite'
  | 'maxIter'
  | 'chaotic'
  | 'longMemory'
  | 'rounding'
  | 'sequential';

/** Newton's step: full (DEER), damped (ELK), or chosen as it goes ('auto'); or no Newton at all, parallel shooting ('shoot'). */
export type NewtonMethod = 'deer' | 'elk' | 'auto' | 'shoot';

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
  /**
   * Whether `linearize`'s A is ∂G/∂y_{t−1} itself (in its block structure), not an approximation
   * such as its diagonal: then the linear model predicts the merit to second order near y.
   */
  readonly exactJacobian: boolean;
  /**
   * The smallest block size whose `linearize` is ∂G/∂y_{t−1} itself, where one exists (recurrences:
   * the cell's). With it the engine knows a quasi structure (whose steps it judges by their rate of
   * convergence, `quasiSettled`) and confirms parallel shooting's settled starts by full steps in
   * this structure.
   */
  readonly exactBlockSize?: number;
  /** The first iterate, [B, T, n]; the engine owns it. */
  initial(): Tensor;
  /**
   * A = ∂G/∂y_{t−1} ([B, T, n/s, s, s], s = `blockSize` unless given) and the residual
   * r = G(y) − y ([B, T, n]); the engine disposes both.
   */
  linearize(y: Tensor, blockSize?: number): Solve<{ A: Tensor; r: Tensor }>;
  /**
   * A whole DEER step (linearise, scan, update) fused by the backend, or null where it has none
   * for this problem; absent where the problem has no such form.
   */
  fusedStep?(y: Tensor, opts: NewtonUpdateOptions): Solve<NewtonUpdate | null>;
  /**
   * Per-row estimates of the largest Lyapunov exponent along the trajectory (per step) and, where
   * the probe reaches `horizon` steps, of the nonlinear memory (steps, at most horizon + 1), for
   * 'auto' to recognise rows Newton cannot finish before iterating; absent where it does not apply.
   */
  probe?(horizon: number): Solve<DynamicsProbe>;
  /** The residual r = G(y) − y alone, for the residual check. */
  evaluate(y: Tensor): Solve<Tensor>;
  /**
   * The exact step-by-step answer for the rows `rows`: [rows.length, T, n]. `prefix` (every row,
   * from the probe) is that answer's first steps, which the pass continues from; it takes it over.
   */
  sequential(rows: readonly number[], prefix?: Tensor): Solve<Tensor>;
  /**
   * The rows `rows` by parallel shooting (`shooting.ts`): y [rows.length, T, n], which rows met
   * the tolerance, the sweeps and the chunks; null where it cannot pay on this backend (sweeps
   * that would cost more than two sequential passes). Absent where it does not apply.
   */
  shoot?(
    rows: readonly number[],
    tol: { atol: number; rtol: number },
    /** Sweeps asked for by the caller ('shoot'): √T chunks whatever the lanes, no cost bound. */
    sweeps?: number,
  ): Solve<(ShootingResult & Chunking) | null>;
  /** Whether `shoot` would run for `rows` rows at all (its cost model does not decline them). */
  canShoot?(rows: number): boolean;
  /**
   * Of the converged rows `rows`, those whose answer the residual check cannot vouch for because
   * rounding at y exceeds the tolerance: an ODE's exponentials over very large ‖J·Δt‖ (the check
   * reuses the same rounded maps), a tolerance finer than the dtype resolves at |y|. The solve
   * then reports `converged: false` and 'rounding' and keeps the answer — the fallback, in the
   * same dtype, is no better — (`fallback: 'throw'` throws, with `roundingAdvice`).
   */
  certify?(y: Tensor, rows: readonly number[]): Solve<readonly number[]>;
  /** Why certify's rows met the tolerance only as rounded, and what to do: for the error message. */
  readonly roundingAdvice?: string;
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
  readonly method?: NewtonMethod;
  readonly onIteration?: (info: IterationInfo) => void;
  /**
   * Full Newton steps run before each measured one without reading their measures (where the
   * backend has `scanUpdateUnread`; see `unreadIterations`). Default 0: every step is measured.
   */
  readonly unread?: number;
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
  roundingRows: number;
  method: NewtonMethod;
  deerIterations: number;
  elkIterations: number;
  switches: string[];
  /** 'auto': sweeps of parallel shooting (summed over windows). */
  shootingSweeps: number;
  lyapunov: number | undefined;
  /** 'auto': the largest per-row memory measured (steps; budget + 1 means longer than the budget). */
  memory?: number;
  /** Device work of the solve (summed over windows), when the backend counts it (`counters`). */
  device?: DeviceCounters;
  /** Another solve on the same backend overlapped a counted span: `device` is left out. */
  deviceShared?: boolean;
  /** 'auto': the cost model's estimates and choice, when the backend states its parallelism. */
  plan?: SolvePlan;
}

export function newEngineStats(method: NewtonMethod = 'deer'): EngineStats {
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
    roundingRows: 0,
    method,
    deerIterations: 0,
    elkIterations: 0,
    switches: [],
    shootingSweeps: 0,
    lyapunov: undefined,
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
/** ELK's damping: the first λ, its floor (≈ Newton) and the λ past which a row is given up. */
const LAMBDA_START = 1;
const LAMBDA_MIN = 1e-8;
const LAMBDA_MAX = 1e8;
/** ELK steps without halving the residual before a row counts as stagnated. */
const ELK_PATIENCE = 12;
/**
 * How much faster than its mean rate so far an ELK row is allowed to finish before it counts as
 * too slow for the budget: LM speeds up as λ falls (deer-study, 44 contractive problems: at 1×,
 * quasi-ELK handed over rows it had finished in 99 iterations and solved 26, ELK 31; at 2×, 27 and
 * 32, losing none that it solved before).
 */
const ELK_RATE_SLACK = 2;
/**
 * The damped DEER step ('auto', after full steps fail): its cap after the first step that does not
 * lower the merit, the cap past which it is a full step again, and the cap meaning "no cap" (what
 * `capTransitions` copies; damped rows start there).
 */
const CAP_START = 1;
/**
 * The fall of the merit in one damped step after which the cap grows ×4: cautiously for rows that
 * left full steps because they overshoot ('auto'), sooner for rows that left ELK's steps because
 * they were too short — with a quarter there, rows whose merit fell by a steady ~0.7 a step never
 * regained full steps (deer-study: ELK 28 → 32 of 44 contractive problems with a half; with a half
 * for 'auto' too, one problem DEER solves in 27 iterations took 'auto' 28).
 */
const REGROW_AFTER_OVERSHOOT = 0.25;
const REGROW_AFTER_SLOW_STEPS = 0.5;
const CAP_MAX = 1e3;
const FULL_STEP = -1;
/**
 * How much longer than the memory estimate damped steps took (deer-study, float64: rows of memory
 * 5–10 finished in 4–8 iterations per step of memory; rows of memory 16–17 did not within 89).
 */
const DAMPED_SLACK = 1.5;
const SEVERITY: readonly StopReason[] = [
  'tolerance',
  'sequential',
  'maxIter',
  'rounding',
  'stagnated',
  'chaotic',
  'longMemory',
  'diverged',
  'nonFinite',
];

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
  const { B, T, n } = problem;
  const method = opts.method ?? 'deer';
  const budget = problem.finiteDepth ? Math.min(opts.maxIter, T + 1) : opts.maxIter;
  const w: WindowState = {
    status: new Uint8Array(B),
    reason: new Array<StopReason>(B).fill('tolerance'),
    best: new Float64Array(B).fill(Number.POSITIVE_INFINITY),
    lastStep: new Float64Array(B).fill(Number.NaN),
    quasi: quasi(problem),
    since: new Uint32Array(B),
    mark: new Uint32Array(B),
    nonFiniteStreak: new Uint32Array(B),
    clipStreak: new Uint32Array(B),
    steps: new Uint32Array(B),
    lambda: new Float64Array(B).fill(LAMBDA_START),
    merit: new Float64Array(B).fill(Number.NaN),
    meritStart: new Float64Array(B).fill(Number.NaN),
    maxResidual: new Float64Array(B).fill(Number.POSITIVE_INFINITY),
    damped: new Uint8Array(B),
    cap: new Float64Array(B).fill(FULL_STEP),
    regrow: new Float64Array(B).fill(REGROW_AFTER_OVERSHOOT),
    patient: new Uint8Array(B).fill(method === 'deer' ? 1 : 0),
    front: new Uint32Array(B),
    frontSince: new Uint32Array(B),
    deadline: new Float64Array(B).fill(Number.POSITIVE_INFINITY),
    memory: new Float64Array(B).fill(Number.NaN),
    nearChaos: false,
    chosen: new Uint8Array(B),
  };
  const { status, reason } = w;
  const residualFails = new Uint32Array(B);
  const tol = { atol: opts.atol, rtol: opts.rtol, clip: opts.clip };
  const mask = (want: Row) => Uint8Array.from(status, (v) => (v === want ? 1 : 0));
  const count = (want: Row) => status.reduce((k, v) => k + (v === want ? 1 : 0), 0);

  let y = problem.initial();
  const zeros = backend.zeros([B, n], y.dtype);
  // The probe's sequential prefix, while every row may yet go to the fallback, which continues it.
  let prefix: Tensor | undefined;
  let iterations = 0;
  // Whether the last check replaced or clipped entries.
  let troubled = false;
  // 'elk' starts on Levenberg–Marquardt steps and hands the rows they stall on to damped DEER steps.
  let mode: 'deer' | 'elk' = method === 'elk' ? 'elk' : 'deer';
  try {
    if (method === 'shoot') {
      // No Newton: every row to parallel shooting, the ones it does not finish to the fallback.
      if (!problem.shoot) throw new UnsupportedOptionError('method', 'shoot', "'deer' for this problem (it has no step-by-step form to shoot)");
      for (let b = 0; b < B; b++) fail(w, b, 'maxIter');
    }
    if (method === 'auto' && problem.probe) {
      const probe = yield* problem.probe(budget);
      prefix = probe.prefix;
      // Chaotic rows (perturbations grow along the trajectory): no parallel Newton method
      // converges in few iterations there, so they go straight to the sequential answer.
      for (let b = 0; b < B; b++) {
        // −∞: not estimated (too short a row).
        if (probe.lyapunov[b]! > Number.NEGATIVE_INFINITY) stats.lyapunov = Math.max(stats.lyapunov ?? Number.NEGATIVE_INFINITY, probe.lyapunov[b]!);
        if (probe.lyapunov[b]! > CHAOS_THRESHOLD) {
          fail(w, b, 'chaotic');
          w.chosen[b] = 1;
        }
      }
      const chaotic = count(Row.Failed);
      if (chaotic > 0) stats.switches.push(`window ${where.window}: ${chaotic} chaotic rows → sequential`);
      w.nearChaos = nearChaos(probe.lyapunov, T, opts);
      // Rows that hold a perturbation, beyond what their Jacobians carry, for longer than the
      // budget: far from the solution Newton learns about one step per iteration there, so it
      // would run the budget out and fall back anyway (deer-study).
      if (probe.memory && budget < T) {
        const long: number[] = [];
        for (let b = 0; b < B; b++) {
          stats.memory = Math.max(stats.memory ?? 0, probe.memory[b]!);
          w.memory[b] = probe.memory[b]!;
          if (status[b] === Row.Active && probe.memory[b]! > budget) {
            fail(w, b, 'longMemory');
            long.push(b);
          }
        }
        const shoots = problem.canShoot?.(long.length) === true && !w.nearChaos;
        // Rows that do not shoot are evaluated step by step whatever `fallback` says, as chaotic
        // rows are: no Newton iteration ran, so there is no iterate to return or to fail on.
        if (!shoots) for (const b of long) w.chosen[b] = 1;
        const why = w.nearChaos
          ? ' (a row of the batch is within the margin of chaos: shooting rows whose memory is past the budget would take about as many sweeps as chunks)'
          : ' (parallel shooting cannot pay on this backend)';
        const next = shoots ? 'parallel shooting' : `sequential${problem.shoot ? why : ''}`;
        if (long.length > 0) stats.switches.push(`window ${where.window}: ${long.length} rows remember a perturbed start for more than ${budget} steps (the iteration budget) → ${next}`);
      }
    }
    // The probe's prefix serves only a sequential pass over every row.
    if (prefix && count(Row.Active) > 0) {
      backend.dispose(prefix);
      prefix = undefined;
    }
    while (count(Row.Active) > 0) {
      while (count(Row.Active) > 0 && iterations < budget) {
        const before = iterations++;
        let update: NewtonUpdate;
        if (mode === 'deer' && w.damped.some((d, b) => d === 1 && status[b] === Row.Active)) {
          update = yield* dampedDeerIteration(backend, problem, y, zeros, w, { ...tol, active: mask(Row.Active) });
          stats.elkIterations++;
        } else if (mode === 'deer') {
          const active = mask(Row.Active);
          // Steps whose measures nobody waits for: the check after them judges where they led. The
          // first step of a window is measured (a warm start may already be converged), and so is
          // every step after a check that replaced or clipped entries (the judge counts those
          // streaks step by step).
          const unread = backend.scanUpdateUnread && before > 0 && !troubled ? Math.min(opts.unread ?? 0, budget - iterations) : 0;
          for (let k = 0; k < unread; k++) {
            const next = yield* unreadDeerIteration(backend, problem, y, zeros, { ...tol, active });
            backend.dispose(y);
            y = next;
            iterations++;
            stats.iterations++;
            stats.deerIterations++;
          }
          update = yield* deerIteration(backend, problem, y, zeros, { ...tol, active });
          stats.deerIterations++;
        } else {
          update = yield* elkIteration(backend, problem, y, w, tol);
          stats.elkIterations++;
        }
        backend.dispose(y);
        y = update.y;
        troubled = update.replaced > 0 || update.clipped > 0;
        stats.iterations++;
        stats.residuals.push(update.maxAbsDiff);
        stats.replaced += update.replaced;
        stats.clipped += update.clipped;
        const gaveUp = mode === 'deer' ? judgeDeer(w, update, T, iterations, budget, iterations - before) : judgeElk(w, update, iterations, budget);
        if (method === 'auto') {
          // A row that full steps fail (overshoot, overflow, slow progress) gets one more chance:
          // damped steps (a trust region on the linear model's transitions) where they can finish
          // within the budget, else parallel shooting (after the loop, `shootFailedRows`) where
          // its sweeps are foreseeable, else full steps judged patiently; a row that fails that
          // too goes to the sequential fallback.
          for (const b of gaveUp) {
            const shoots = problem.canShoot?.(1) === true && shootable(w, b, budget);
            const after = shoots ? 'parallel shooting' : fallbackName(opts.fallback);
            if (!w.damped[b] && !w.patient[b] && iterations < budget) {
              const need = dampedIterations(w.memory[b]!, opts);
              const damped = iterations + need <= budget;
              const next = damped ? 'damped steps' : shoots ? after : 'full steps, judged patiently';
              stats.switches.push(`window ${where.window}, iteration ${iterations}: row ${b}${Number.isFinite(w.memory[b]!) ? ` (memory ${w.memory[b]})` : ''} ${reason[b]} under DEER → ${next}`);
              if (damped) startDamped(w, b, Number.isFinite(w.memory[b]!) ? iterations + 2 * need : Number.POSITIVE_INFINITY);
              else if (!shoots) resumePatient(w, b);
            } else {
              stats.switches.push(`window ${where.window}, iteration ${iterations}: row ${b} ${reason[b]} under ${w.damped[b] ? 'damped steps' : 'DEER'} → ${after}`);
            }
          }
        }
        const reported: unknown = opts.onIteration?.({
          iteration: iterations,
          maxAbsDiff: update.maxAbsDiff,
          maxScaledDiff: update.maxScaledDiff,
          activeRows: count(Row.Active),
          window: where.window,
          windows: where.windows,
        });
        // An async callback: the solve waits for it, and its rejection is the solve's error (it
        // had been an unhandled rejection that ended the process). deerSync cannot wait.
        if (isThenable(reported)) {
          reported.then(undefined, () => {});
          yield* awaitAsync(
            () => Promise.resolve(reported),
            () => new UnsupportedOptionError('onIteration', 'a function returning a promise', 'a synchronous function under deerSync (it cannot wait)'),
          );
        }
      }
      for (let b = 0; b < B; b++) if (status[b] === Row.Active) fail(w, b, 'maxIter');
      if (mode === 'elk') {
        // Rows ELK settled take full DEER steps until one is within tolerance: a damped step and a
        // small residual do not bound the error where the recurrence expands (tanh(1.5·h) over a
        // zero prefix: ELK settled 0.15–0.55 off the answer, every step's residual under 1e-15), and
        // the full step is the linear model's estimate of it. With no budget left they fall back.
        const settled = [...status.keys()].filter((b) => status[b] === Row.Pending);
        // Far from the solution of a saturated recurrence, Levenberg–Marquardt's steps range from
        // the Gauss–Newton step, which overshoots, to a short step down the merit's gradient,
        // and the merit barely falls (deer-study: Elman ×12, Lyapunov exponent −1.3, stalled
        // after 20 iterations). Damped DEER steps, down to the fixed-point sweep y ← G(y), keep
        // Newton's prefix property whatever their cap and go on making steps exact.
        const stalled = [...status.keys()].filter((b) => status[b] === Row.Failed && reason[b] === 'stagnated');
        if (iterations >= budget) {
          for (const b of settled) fail(w, b, 'maxIter');
        } else if (settled.length + stalled.length > 0) {
          mode = 'deer';
          for (const b of settled) restart(w, b);
          for (const b of stalled) startDamped(w, b, Number.POSITIVE_INFINITY, REGROW_AFTER_SLOW_STEPS);
          if (stalled.length > 0)
            stats.switches.push(`window ${where.window}, iteration ${iterations}: ${stalled.length} rows stalled under ELK's trust region → damped DEER steps`);
          continue;
        }
      }
      if (count(Row.Pending) === 0) break;
      // The residual check: one evaluation of G at the iterate.
      const check = yield* measureResidual(backend, problem, y, mask(Row.Pending), opts);
      for (let b = 0; b < B; b++) {
        if (status[b] !== Row.Pending) continue;
        const ok = check.rows.replaced[b] === 0 && check.rows.maxScaledDiff[b]! <= 1;
        if (ok) {
          status[b] = Row.Converged;
          stats.residual = Math.max(stats.residual, check.rows.maxScaledDiff[b]!);
        } else if (++residualFails[b]! > RESIDUAL_RETRIES) fail(w, b, 'stagnated');
        else if (iterations < budget) status[b] = Row.Active;
        else fail(w, b, 'maxIter');
      }
    }
    if ((method === 'auto' || method === 'shoot') && problem.shoot) {
      y = yield* shootFailedRows(backend, problem, y, w, stats, opts, where.window, budget, method === 'shoot' ? opts.maxIter : undefined);
    }
    if (problem.certify) {
      const converged = [...status.keys()].filter((b) => status[b] === Row.Converged);
      const unvouched = converged.length > 0 ? yield* problem.certify(y, converged) : [];
      if (unvouched.length > 0) {
        // Not converged, but kept: the fallback, at the same dtype, is no better.
        stats.converged = false;
        stats.roundingRows += unvouched.length;
        if (SEVERITY.indexOf('rounding') > SEVERITY.indexOf(stats.stopReason)) stats.stopReason = 'rounding';
        if (opts.fallback === 'throw') {
          throw new ConvergenceError(
            `${opts.solver}: the answer of ${unvouched.length} of ${B} batch rows met the tolerance only as rounded (atol ${opts.atol}, rtol ${opts.rtol}): ${problem.roundingAdvice ?? 'its rounding may exceed atol + rtol·|y|'}`,
            { ...stats, residuals: [...stats.residuals] },
          );
        }
      }
    }
    const failed = [...status.keys()].filter((b) => status[b] === Row.Failed);
    if (failed.length === 0) return y;
    stats.converged = false;
    for (const b of failed) {
      if (SEVERITY.indexOf(reason[b]!) > SEVERITY.indexOf(stats.stopReason)) stats.stopReason = reason[b]!;
    }
    // 'auto' evaluates the rows it sent to sequential evaluation before any Newton work (chaotic,
    // or long memory where parallel shooting does not take them) step by step whatever `fallback`
    // says: that is its way of solving them, not a failure to (under 'none' they had come back as
    // the zeros of the first iterate, under 'throw' as an error, where the cost model's own choice
    // of sequential evaluation is an answer).
    const chosen = failed.filter((b) => w.chosen[b] === 1);
    const unfinished = failed.filter((b) => !chosen.includes(b));
    if (opts.fallback === 'throw' && unfinished.length > 0) {
      throw new ConvergenceError(
        `${opts.solver} did not converge for ${unfinished.length} of ${B} batch rows (${stats.stopReason} after ${iterations} iterations${stats.shootingSweeps > 0 ? ` and ${stats.shootingSweeps} sweeps of parallel shooting` : ''}; ${lastStepMessage(stats.stopReason, stats.residuals, opts.clip)}, atol ${opts.atol}, rtol ${opts.rtol})`,
        { ...stats, residuals: [...stats.residuals] },
      );
    }
    if (opts.fallback === 'none' && unfinished.length > 0) {
      const failedRows = Uint8Array.from(status, (v, b) => (v === Row.Failed && !chosen.includes(b) ? 1 : 0));
      const check = yield* measureResidual(backend, problem, y, failedRows, opts);
      stats.residual = Math.max(
        stats.residual,
        check.replaced > 0 ? Number.POSITIVE_INFINITY : check.maxScaledDiff,
      );
    }
    const sequentialRows = opts.fallback === 'sequential' ? failed : chosen;
    if (sequentialRows.length === 0) return y;
    stats.fellBack = true;
    stats.fallbackRows += sequentialRows.length;
    const from = sequentialRows.length === B ? prefix : undefined;
    if (from) prefix = undefined;
    const exact = yield* problem.sequential(sequentialRows, from);
    try {
      // Whatever made Newton give these rows up, an answer that holds NaN/Inf is reported as such:
      // the trajectory itself overflows the dtype (as for the cost model's sequential answer).
      const overflowed = (yield* nonFiniteRows(backend, exact)).map((i) => sequentialRows[i]!);
      if (overflowed.length > 0) {
        stats.stopReason = 'nonFinite';
        stats.switches.push(
          `window ${where.window}: sequential evaluation of rows ${overflowed.join(', ')} holds NaN/Inf (the trajectory overflows ${exact.dtype})`,
        );
      }
      if (sequentialRows.length === B) {
        backend.dispose(y);
        y = exact;
        return y;
      }
      const merged = backend.scatterRows(y, sequentialRows, exact);
      backend.dispose(y);
      y = merged;
      return y;
    } finally {
      if (sequentialRows.length !== B) backend.dispose(exact);
    }
  } catch (err) {
    backend.dispose(y);
    throw err;
  } finally {
    backend.dispose(zeros);
    if (prefix) backend.dispose(prefix);
  }
}

/**
 * Whether some row's largest Lyapunov exponent is within the margin of 0 at which a perturbation,
 * decaying at that rate, would not fall from order 1 to the tolerance in T/2 steps:
 * λ > −2·ln(1/(atol + rtol))/T. The rows share the recurrence (only inputs and h0 differ), so such
 * a row says it has regimes where perturbations barely decay, and the probe's short estimates for
 * the other rows are not to be trusted there (deer-study: rows of GRU 8× and 12× whose probe gave
 * λ ≈ −0.05 needed 31–45 sweeps of 45 chunks, rows of systems clear of the margin 4–17).
 */
function nearChaos(lyapunov: ArrayLike<number>, T: number, tol: { atol: number; rtol: number }): boolean {
  const margin = (2 * Math.log(1 / (tol.atol + tol.rtol))) / T;
  return Array.prototype.some.call(lyapunov, (l: number) => l > -margin);
}

/**
 * Whether row b's shooting sweeps are foreseeable: its memory was measured within the budget, or
 * the recurrence is clear of the margin of chaos (`nearChaos`).
 */
const shootable = (w: WindowState, b: number, budget: number) => w.memory[b]! <= budget || !w.nearChaos;

/**
 * 'auto': the rows Newton gave up, chaotic ones aside, by parallel shooting — on a contractive
 * recurrence each chunk forgets a wrong start, which is exactly where Newton's linear model learns
 * one step per iteration (long memory). A row goes only where its sweeps are foreseeable
 * (`shootable`). The shot rows' trajectories replace their iterates in y; rows whose starts
 * settled and whose one-step residual then meets the tolerance are converged, the others stay
 * failed for the fallback. Returns the new y (the old one disposed).
 */
function* shootFailedRows(
  backend: Backend,
  problem: NewtonProblem,
  y: Tensor,
  w: WindowState,
  stats: EngineStats,
  tol: { atol: number; rtol: number; clip: number; fallback: FallbackOption },
  window: number,
  budget: number,
  sweeps?: number,
): Solve<Tensor> {
  const rows = [...w.status.keys()].filter((b) => w.status[b] === Row.Failed && !w.chosen[b] && shootable(w, b, budget));
  if (rows.length === 0) return y;
  const shot = yield* problem.shoot!(rows, tol, sweeps);
  if (!shot) {
    // Rows the probe sent here have no Newton iterate: sequential evaluation is their answer.
    const fresh = rows.filter((b) => w.reason[b] === 'longMemory');
    for (const b of fresh) w.chosen[b] = 1;
    const to = fresh.length === rows.length ? 'sequential' : fresh.length === 0 ? fallbackName(tol.fallback) : `sequential (${fresh.join(', ')}), ${fallbackName(tol.fallback)} (the rest)`;
    stats.switches.push(`window ${window}: rows ${rows.join(', ')}: parallel shooting cannot pay for ${rows.length} rows on this backend → ${to}`);
    return y;
  }
  stats.shootingSweeps += shot.sweeps;
  // A row whose last sweep held NaN/Inf overflows, as Newton's rows that keep holding it do.
  rows.forEach((b, k) => {
    if (shot.nonFinite[k] === 1) w.reason[b] = 'nonFinite';
  });
  const settled = rows.filter((_, k) => shot.converged[k] === 1);
  let merged: Tensor;
  try {
    // Every shot row takes the last sweep's trajectory: exact up to the chunks it settled, so what
    // `fallback: 'none'` returns for a row shooting did not finish is at least that good.
    merged = backend.scatterRows(y, rows, shot.y);
  } finally {
    backend.dispose(shot.y);
  }
  backend.dispose(y);
  // Settled starts bound the jump at each chunk boundary, not the one-step residual there: a step
  // whose Jacobian is large carries a small jump on many times over. Rows count as converged only
  // by the same residual check Newton's rows pass.
  const done: number[] = [];
  let worst = 0;
  if (settled.length > 0) {
    let check: NewtonUpdate;
    try {
      check = yield* measureResidual(backend, problem, merged, Uint8Array.from(w.status, (_, b) => (settled.includes(b) ? 1 : 0)), tol);
    } catch (err) {
      // An abort (or a device error) at this read: the caller still holds y, which is gone.
      backend.dispose(merged);
      throw err;
    }
    for (const b of settled) {
      const scaled = check.rows.maxScaledDiff[b]!;
      if (check.rows.replaced[b] === 0 && scaled <= 1) {
        done.push(b);
        w.status[b] = Row.Converged;
        stats.residual = Math.max(stats.residual, scaled);
      } else {
        // NaN/Inf past the last chunk boundary: the starts settled, the trajectory overflows.
        if (check.rows.replaced[b]! > 0) w.reason[b] = 'nonFinite';
        worst = Math.max(worst, check.rows.replaced[b]! > 0 ? Number.POSITIVE_INFINITY : scaled);
      }
    }
  }
  const refused = settled.length - done.length;
  // Settled starts and small jumps bound the residual, not the error: where the recurrence expands
  // over a chunk, a start error below the tolerance grows on through it (a state growing ×1.1 a
  // step from 1e-12 inputs: every start settled after one sweep at ~0, the answer 5.03 there). A
  // full step in the exact structure estimates the error; rows it moves beyond the tolerance are
  // not converged.
  // Rounding in a strongly expanding chunk can leave the first step just past the tolerance, so
  // as for the rows ELK settles, a few full steps may finish what shooting nearly did.
  let unconfirmed: number[] = [];
  if (done.length > 0 && (problem.exactBlockSize !== undefined || problem.exactJacobian)) {
    unconfirmed = [...done];
    const zeros = backend.zeros([problem.B, problem.n], merged.dtype);
    try {
      for (let k = 0; k < CONFIRMING_STEPS && unconfirmed.length > 0; k++) {
        const active = Uint8Array.from(w.status, (_, b) => (unconfirmed.includes(b) ? 1 : 0));
        // Where the exact Jacobians do not fit in memory, nothing confirms the rows: not converged.
        // Unclipped: shooting's states may be far past `clip`, which bounds Newton's steps, not y.
        const step = yield* unlessOutOfMemory(fullStep(backend, problem, merged, zeros, { atol: tol.atol, rtol: tol.rtol, clip: Number.MAX_VALUE, active }, problem.exactBlockSize ?? problem.blockSize));
        if (!step) break;
        backend.dispose(merged);
        merged = step.y;
        stats.iterations++;
        stats.deerIterations++;
        unconfirmed = unconfirmed.filter((b) => step.rows.replaced[b] !== 0 || step.rows.clipped[b] !== 0 || step.rows.maxScaledDiff[b]! > 1);
      }
      // The steps moved the iterate: what they confirmed passes the residual check again.
      const confirmed = done.filter((b) => !unconfirmed.includes(b));
      if (confirmed.length > 0) {
        const check = yield* measureResidual(backend, problem, merged, Uint8Array.from(w.status, (_, b) => (confirmed.includes(b) ? 1 : 0)), tol);
        for (const b of confirmed) if (check.rows.replaced[b] !== 0 || check.rows.maxScaledDiff[b]! > 1) unconfirmed.push(b);
      }
    } catch (err) {
      backend.dispose(merged);
      throw err;
    } finally {
      backend.dispose(zeros);
    }
    for (const b of unconfirmed) {
      w.status[b] = Row.Failed;
      // A row the probe sent here has no Newton iterate: sequential evaluation is its answer.
      if (w.reason[b] === 'longMemory') w.chosen[b] = 1;
    }
  }
  stats.switches.push(
    `window ${window}: rows ${rows.join(', ')} by parallel shooting (${shot.chunks} chunks of ${shot.length} steps): ${done.length - unconfirmed.length} converged in ${shot.sweeps} sweeps` +
      (refused > 0 ? `; ${refused} whose starts settled failed the one-step residual check (${worst.toPrecision(3)}× the tolerance at a chunk boundary)` : '') +
      (unconfirmed.length > 0 ? `; rows ${unconfirmed.join(', ')} settled, but full Newton steps from there did not come within the tolerance (a settled start's error grows where the recurrence expands over a chunk)` : ''),
  );
  return merged;
}

/** Per-row bookkeeping of one window. */
interface WindowState {
  readonly status: Uint8Array;
  readonly reason: StopReason[];
  /** Best (smallest) scaled step (DEER) or residual (ELK) so far, and iterations since it halved. */
  readonly best: Float64Array;
  /** The last measured full step's scaled size (NaN before one): a quasi step's rate of progress. */
  readonly lastStep: Float64Array;
  /** Whether the steps are quasi-Newton ones (`quasi`): their size alone does not bound the error. */
  readonly quasi: boolean;
  readonly since: Uint32Array;
  /** Settled steps when the row last halved its step (progress is measured from there). */
  readonly mark: Uint32Array;
  readonly nonFiniteStreak: Uint32Array;
  readonly clipStreak: Uint32Array;
  /** Steps taken by the row in the current method. */
  readonly steps: Uint32Array;
  /** ELK: the damping λ (trust region ~ 1/λ) and the scaled residual of the current iterate. */
  readonly lambda: Float64Array;
  readonly merit: Float64Array;
  /** ELK: the merit of the row's first iterate (its mean rate of progress is measured from there). */
  readonly meritStart: Float64Array;
  /** ELK: max scaled one-step residual of the current iterate (∞ until measured). */
  readonly maxResidual: Float64Array;
  /** 'auto': rows that left full steps for damped ones, and each row's transition cap (FULL_STEP: none). */
  readonly damped: Uint8Array;
  readonly cap: Float64Array;
  /** Damped rows: the fall of the merit in one step after which the cap grows (`dampedDeerIteration`). */
  readonly regrow: Float64Array;
  /**
   * Rows whose slow settled front is not held against them (only a front that stops is): 'deer'
   * (the user chose full steps and the budget) and rows 'auto' keeps on full or damped steps after
   * a first failure. Newton's front is bursty — it creeps while the region behind it converges,
   * then jumps — so a projection of its rate gives up rows that finish well within the budget.
   */
  readonly patient: Uint8Array;
  /** The furthest settled front so far, and iterations since it last moved on. */
  readonly front: Uint32Array;
  readonly frontSince: Uint32Array;
  /**
   * 'auto': the iteration past which a damped row is given up — twice what its memory predicts
   * (`dampedIterations`) after it started them: a row that takes longer is not the forgetful one
   * the probe measured (its first guess sat in another basin, say). ∞ where the memory is unknown.
   */
  readonly deadline: Float64Array;
  /** 'auto': each row's probed nonlinear memory (steps; NaN where not measured). */
  readonly memory: Float64Array;
  /** 'auto': whether the probe found a row within the margin of chaos (`nearChaos`). */
  nearChaos: boolean;
  /**
   * 'auto': rows it sent to sequential evaluation before any Newton work (chaotic, or long memory
   * that parallel shooting does not take), evaluated so whatever `fallback` says.
   */
  readonly chosen: Uint8Array;
}

/** Where a row given up goes, as the switches say it: the fallback the caller chose. */
const fallbackName = (fallback: FallbackOption) =>
  fallback === 'sequential' ? 'sequential' : fallback === 'none' ? "fallback 'none' (its last iterate returned)" : "fallback 'throw'";

function fail(w: WindowState, b: number, why: StopReason): void {
  w.status[b] = Row.Failed;
  w.reason[b] = why;
}


/** One full Newton step (DEER): δ by the scan, the raw iterate measured against y. */
function* deerIteration(
  backend: Backend,
  problem: NewtonProblem,
  y: Tensor,
  zeros: Tensor,
  opts: NewtonUpdateOptions,
): Solve<NewtonUpdate> {
  const fused = problem.fusedStep ? yield* problem.fusedStep(y, opts) : null;
  if (fused) return fused;
  return yield* fullStep(backend, problem, y, zeros, opts, problem.blockSize);
}

/** A full Newton step with Jacobian blocks of s, as scan and update. */
function* fullStep(backend: Backend, problem: NewtonProblem, y: Tensor, zeros: Tensor, opts: NewtonUpdateOptions, s: number): Solve<NewtonUpdate> {
  const { A, r } = yield* problem.linearize(y, s);
  try {
    // The scan gives the step δ; the update forms y + δ as it sanitises (one pass fewer, and none
    // at all where the backend fuses the two).
    return yield* readScanUpdate({ A, c: r, y0: zeros, blockSize: s, reverse: false }, y, opts);
  } finally {
    backend.dispose(A);
    backend.dispose(r);
  }
}

/** `solve`'s result, or null where it ran out of device memory (it frees what it made). */
function* unlessOutOfMemory<R>(solve: Solve<R>): Solve<R | null> {
  try {
    return yield* solve;
  } catch (err) {
    if (err instanceof OutOfMemoryError) return null;
    throw err;
  }
}

/** Full steps that may confirm what parallel shooting settled before its rows count as not converged. */
const CONFIRMING_STEPS = 3;

/**
 * Whether a quasi step of scaled size `step` (≤ 1) bounds the error too. A quasi iteration
 * converges linearly, at a rate ρ its last two measured steps estimate (`stride` iterations apart);
 * the error left after a step of size s is then about s·ρ / (1 − ρ), which must be within the
 * tolerance. With ρ ≥ 1, or no earlier step to tell it by, the row goes on: with a zero diagonal
 * the quasi step is the fixed-point sweep y ← G(y), whose first step from 0 is below the tolerance
 * everywhere while a 1e-12 input grows ×1.2 a step through the off-diagonal terms (quasi-DEER and
 * quasi-ELK had converged 0.66 off the answer after 1–2 iterations); its later steps grow.
 */
function quasiSettled(step: number, previous: number, stride: number): boolean {
  if (!(previous > 0)) return step === 0;
  const rho = (step / previous) ** (1 / stride);
  return rho < 1 && (step * rho) / (1 - rho) <= 1;
}

/** Whether the problem's steps are quasi-Newton ones: its block size is not a multiple of the exact one. */
function quasi(problem: NewtonProblem): boolean {
  return problem.exactBlockSize !== undefined && problem.blockSize % problem.exactBlockSize !== 0;
}


/** `deerIteration` without its read: the new iterate only (`Backend.scanUpdateUnread`). */
function* unreadDeerIteration(
  backend: Backend,
  problem: NewtonProblem,
  y: Tensor,
  zeros: Tensor,
  opts: NewtonUpdateOptions,
): Solve<Tensor> {
  const { A, r } = yield* problem.linearize(y);
  try {
    return backend.scanUpdateUnread!({ A, c: r, y0: zeros, blockSize: problem.blockSize, reverse: false }, y, opts);
  } finally {
    backend.dispose(A);
    backend.dispose(r);
  }
}

/**
 * Iterations damped steps take to finish a row: far from the solution they learn about one step of
 * the past per iteration, like a fixed-point sweep, so they need about the row's memory in
 * iterations to shrink an error to the probe's MERGE_TOLERANCE and that many again per further
 * factor of it down to the step tolerance — times DAMPED_SLACK. 0 where the memory was not measured
 * (damped steps are tried).
 */
function dampedIterations(memory: number, tol: { atol: number; rtol: number }): number {
  if (!Number.isFinite(memory)) return 0;
  return Math.ceil((DAMPED_SLACK * memory * Math.log(tol.atol + tol.rtol)) / Math.log(MERGE_TOLERANCE));
}

/** Row b stays on full steps after their judge gave it up, now judged patiently. */
function resumePatient(w: WindowState, b: number): void {
  restart(w, b);
  w.patient[b] = 1;
}

/**
 * Row b leaves full steps for damped ones: its judge starts afresh, and its transitions stay
 * uncapped until a step fails to lower its merit (then CAP_START), so that a row full steps were
 * about to finish takes no more iterations than under DEER.
 */
function startDamped(w: WindowState, b: number, deadline: number, regrow = REGROW_AFTER_OVERSHOOT): void {
  restart(w, b);
  w.damped[b] = 1;
  w.regrow[b] = regrow;
  w.patient[b] = 1;
  w.cap[b] = FULL_STEP;
  w.deadline[b] = deadline;
}

/** Row b's judge starts afresh. */
function restart(w: WindowState, b: number): void {
  w.status[b] = Row.Active;
  w.reason[b] = 'tolerance';
  w.merit[b] = Number.NaN;
  w.front[b] = 0;
  w.frontSince[b] = 0;
  w.best[b] = Number.POSITIVE_INFINITY;
  w.lastStep[b] = Number.NaN;
  w.since[b] = 0;
  w.mark[b] = 0;
  w.steps[b] = 0;
  w.nonFiniteStreak[b] = 0;
  w.clipStreak[b] = 0;
}

/**
 * One damped DEER step for the rows that left full steps ('auto'): every transition A_t of row b
 * scaled down to ‖A_t‖∞ ≤ cap_b (`capTransitions`), so that the linear model cannot carry a
 * correction on with more than cap_b times its size per step — wrong far from the solution, it
 * would overflow — while the step still takes G(y) − y in full. Any such step makes the steps up to
 * the settled front exact, like DEER's (the transitions only weight what the step before it moved),
 * so it cannot lose what full steps gain; with every cap 0 it is the fixed-point sweep y ← G(y).
 * The cap follows the row's merit (scaled 2-norm of the residual): CAP_START (from none) or ÷4 after
 * it did not fall, ×4 after it fell below `regrow` times what it was (past CAP_MAX: none again).
 * Rows on full steps keep them.
 */
function* dampedDeerIteration(
  backend: Backend,
  problem: NewtonProblem,
  y: Tensor,
  zeros: Tensor,
  w: WindowState,
  opts: NewtonUpdateOptions & { active: Uint8Array },
): Solve<NewtonUpdate> {
  const { A, r } = yield* problem.linearize(y);
  try {
    const merit = yield* residualMerit(backend, r, y, opts);
    for (let b = 0; b < problem.B; b++) {
      if (!w.damped[b] || !opts.active[b]) continue;
      const m = finiteOr(merit[b]!);
      const before = w.merit[b]!;
      if (!Number.isNaN(before)) {
        const cap = w.cap[b]!;
        if (!(m < before)) w.cap[b] = cap === FULL_STEP ? CAP_START : cap / 4;
        else if (m < w.regrow[b]! * before && cap !== FULL_STEP) w.cap[b] = cap * 4 > CAP_MAX ? FULL_STEP : cap * 4;
      }
      w.merit[b] = m;
    }
    const capped = backend.capTransitions(A, problem.blockSize, w.cap);
    try {
      return yield* readScanUpdate({ A: capped, c: r, y0: zeros, blockSize: problem.blockSize, reverse: false }, y, opts);
    } finally {
      backend.dispose(capped);
    }
  } finally {
    backend.dispose(A);
    backend.dispose(r);
  }
}

/**
 * What a row's progress is judged by: its scaled step under full steps, the residual's merit under
 * damped ones (whose size follows the cap, not progress).
 */
const progress = (w: WindowState, b: number, step: number) => (w.damped[b] ? w.merit[b]! : step);

/**
 * After a DEER step: rows within tolerance become pending (the residual check confirms them);
 * rows that keep producing NaN/Inf, keep reaching the clip, or stop progressing are given up.
 * Returns the rows given up in this step.
 */
/**
 * Judges the rows after a measured step; `stride` is the iterations since the last check (1, or more
 * where steps ran unread before it): patience and pace count iterations, not checks.
 */
function judgeDeer(w: WindowState, update: NewtonUpdate, T: number, iterations: number, budget: number, stride: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < w.status.length; b++) {
    if (w.status[b] !== Row.Active) continue;
    const sc = update.rows.maxScaledDiff[b]!;
    const rep = update.rows.replaced[b]!;
    const clp = update.rows.clipped[b]!;
    const prev = w.lastStep[b]!;
    w.lastStep[b] = rep === 0 && clp === 0 ? sc : Number.NaN;
    if (rep === 0 && clp === 0 && sc <= 1 && (!w.quasi || quasiSettled(sc, prev, stride))) {
      if (w.damped[b] && w.cap[b] !== FULL_STEP) {
        // A capped step within tolerance bounds the residual, not the error: full steps from here
        // (judged patiently still), until one is within tolerance too (as rows ELK settled).
        restart(w, b);
        w.damped[b] = 0;
        continue;
      }
      w.status[b] = Row.Pending;
      continue;
    }
    const settled = update.rows.settled[b]!;
    if (settled > w.front[b]!) {
      w.front[b] = settled;
      w.frontSince[b] = 0;
    } else w.frontSince[b]! += stride;
    w.nonFiniteStreak[b] = rep > 0 ? w.nonFiniteStreak[b]! + 1 : 0;
    w.clipStreak[b] = clp > 0 ? w.clipStreak[b]! + 1 : 0;
    if (iterations > w.deadline[b]!) fail(w, b, 'stagnated');
    else if (w.nonFiniteStreak[b]! >= BAD_STREAK) fail(w, b, 'nonFinite');
    else if (w.clipStreak[b]! >= BAD_STREAK) fail(w, b, 'diverged');
    else if ((w.steps[b]! += stride) === stride) {
      // The first step measures how far the initial guess was, not Newton's progress.
    } else if (progress(w, b, sc) < 0.5 * w.best[b]!) {
      w.best[b] = progress(w, b, sc);
      w.since[b] = 0;
      w.mark[b] = update.rows.settled[b]!;
    } else if ((w.since[b]! += stride) >= (w.damped[b] ? ELK_PATIENCE : STAGNATION_PATIENCE)) {
      // No halving for a while: progress only if the settled front still moves on (exact Newton
      // settles ≥ 1 step per iteration) and, unless the row is judged patiently, fast enough to
      // reach T within the budget.
      const rate = (settled - w.mark[b]!) / w.since[b]!;
      const still = w.frontSince[b]! >= (w.damped[b] ? ELK_PATIENCE : STAGNATION_PATIENCE);
      if (still || !(rate > 0) || (!w.patient[b] && iterations + (T - settled) / rate > budget)) fail(w, b, 'stagnated');
    }
    if (w.status[b] === Row.Failed) out.push(b);
  }
  return out;
}

/**
 * One damped step (ELK: Levenberg–Marquardt on the Jacobian in the problem's block structure;
 * quasi-ELK where that is the diagonal): δ by the damped scan with each row's λ; the
 * candidate y + δ is accepted for a row only if it lowers the row's merit, the scaled 2-norm of the
 * one-step residual (then λ shrinks: the trust region grows), else the row keeps its iterate and λ
 * grows. Costs one linearisation, one damped scan, one evaluation of G and three small reads (four
 * with an exact Jacobian: the model's predicted merit).
 */
function* elkIteration(
  backend: Backend,
  problem: NewtonProblem,
  y: Tensor,
  w: WindowState,
  tol: { atol: number; rtol: number; clip: number },
): Solve<NewtonUpdate> {
  const B = problem.B;
  const active = Uint8Array.from(w.status, (v) => (v === Row.Active ? 1 : 0));
  const { A, r } = yield* problem.linearize(y);
  let raw: Tensor;
  let predicted: Float64Array | undefined;
  try {
    if (active.some((a, b) => a === 1 && Number.isNaN(w.merit[b]!))) {
      const merit = yield* residualMerit(backend, r, y, tol);
      for (let b = 0; b < B; b++) if (active[b] && Number.isNaN(w.merit[b]!)) w.merit[b] = finiteOr(merit[b]!);
    }
    const delta = backend.dampedScan({ A, c: r, lambda: w.lambda });
    try {
      raw = backend.add(y, delta);
      try {
        if (problem.exactJacobian) predicted = yield* modelMerit(backend, problem, A, r, delta, raw, tol);
      } catch (err) {
        backend.dispose(raw);
        throw err;
      }
    } finally {
      backend.dispose(delta);
    }
  } finally {
    backend.dispose(A);
    backend.dispose(r);
  }
  try {
    const rc = yield* problem.evaluate(raw);
    let candMerit: Float64Array;
    let cand: NewtonUpdate;
    try {
      candMerit = yield* residualMerit(backend, rc, raw, tol);
      cand = yield* readUpdate(rc, raw, { ...tol, clip: Number.POSITIVE_INFINITY, active, delta: true });
    } finally {
      backend.dispose(rc);
    }
    backend.dispose(cand.y);
    const accepted = new Uint8Array(B);
    for (let b = 0; b < B; b++) {
      if (!active[b]) continue;
      candMerit[b] = cand.rows.replaced[b]! > 0 ? Number.POSITIVE_INFINITY : finiteOr(candMerit[b]!);
      // A merit of at most 1 bounds every scaled residual by 1. Where both iterates are that close,
      // rounding decides which merit is lower (started at the answer, ELK had rejected every step
      // until its trust region stalled); the candidate is accepted, and judged as any other.
      accepted[b] = candMerit[b]! < w.merit[b]! || (candMerit[b]! <= 1 && w.merit[b]! <= 1) ? 1 : 0;
    }
    const update = yield* readUpdate(raw, y, { ...tol, active: accepted });
    for (let b = 0; b < B; b++) {
      if (!active[b]) continue;
      if (accepted[b] && update.rows.clipped[b] === 0 && update.rows.replaced[b] === 0) {
        // The trust region follows how well the linear model predicted the step: with the exact
        // Jacobian, by the gain ratio (actual over predicted reduction of the merit), grown where
        // the model held and shrunk where it was too optimistic. An approximate Jacobian's model
        // does not predict the merit, so there the rule is how much of the residual the step
        // removed (GRU 3×, T = 300, patience off: with the gain ratio quasi-ELK had not converged
        // after 100 iterations; with this rule it converges in 32–37).
        const m = w.merit[b]!;
        const [grow, shrink] = predicted
          ? [(m - candMerit[b]!) / Math.max(m - predicted[b]!, Number.MIN_VALUE), [0.75, 0.25]]
          : [1 - candMerit[b]! / m, [0.5, 0.1]];
        if (grow > shrink[0]!) w.lambda[b] = Math.max(LAMBDA_MIN, w.lambda[b]! / 3);
        else if (grow < shrink[1]!) w.lambda[b] = w.lambda[b]! * 2;
        w.merit[b] = candMerit[b]!;
        w.maxResidual[b] = cand.rows.maxScaledDiff[b]!;
      } else {
        // A rejected (or clipped) candidate: keep the iterate, shrink the trust region.
        if (accepted[b]) w.merit[b] = Number.NaN;
        w.maxResidual[b] = Number.POSITIVE_INFINITY;
        w.lambda[b] = w.lambda[b]! * 4;
      }
    }
    return update;
  } finally {
    backend.dispose(raw);
  }
}

/**
 * The merit the damped step's linear model predicts at y + δ: that of its residual
 * r − (δ_t − A_t δ_{t−1}), weighted at the model's G (the candidate plus that residual).
 */
function* modelMerit(
  backend: Backend,
  problem: NewtonProblem,
  A: Tensor,
  r: Tensor,
  delta: Tensor,
  raw: Tensor,
  tol: { atol: number; rtol: number },
): Solve<Float64Array> {
  const prev = backend.shiftTime(delta, null, 1);
  let left: Tensor;
  try {
    const applied = backend.affineOffset(delta, A, prev, problem.blockSize);
    try {
      left = backend.sub(r, applied);
    } finally {
      backend.dispose(applied);
    }
  } finally {
    backend.dispose(prev);
  }
  try {
    return yield* residualMerit(backend, left, raw, tol);
  } finally {
    backend.dispose(left);
  }
}

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';

const finiteOr = (v: number) => (Number.isNaN(v) ? Number.POSITIVE_INFINITY : v);

/**
 * After an ELK step: a row whose accepted step and one-step residual are both within tolerance
 * everywhere is settled (pending: full DEER steps confirm it, `newtonWindow`); a row
 * whose merit has not halved in ELK_PATIENCE steps, whose λ ran past LAMBDA_MAX, or whose merit
 * falls too slowly to finish within the budget, is given up (to damped DEER steps, `newtonWindow`).
 */
function judgeElk(w: WindowState, update: NewtonUpdate, iterations: number, budget: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < w.status.length; b++) {
    if (w.status[b] !== Row.Active) continue;
    // The last step and the residual both within tolerance: settled, to be confirmed by full steps.
    const settled = update.rows.maxScaledDiff[b]! <= 1 && update.rows.clipped[b] === 0 && update.rows.replaced[b] === 0;
    if (settled && w.maxResidual[b]! <= 1) {
      w.status[b] = Row.Pending;
      continue;
    }
    const m = w.merit[b]!;
    if (Number.isNaN(w.meritStart[b]!) && Number.isFinite(m)) w.meritStart[b] = m;
    w.steps[b]!++;
    if (m < 0.5 * w.best[b]!) {
      w.best[b] = m;
      w.since[b] = 0;
    } else if (++w.since[b]! >= ELK_PATIENCE || w.lambda[b]! > LAMBDA_MAX) fail(w, b, 'stagnated');
    // A row whose merit falls, but at a rate that would not bring it to the tolerance (a merit of
    // about 1) within the budget, leaves the trust region while budget is left for damped DEER
    // steps (deer-study, Elman ×3: one row's residual fell 4.5e9 → 1.9e9 in 65 steps).
    if (w.status[b] === Row.Active && w.steps[b]! >= ELK_PATIENCE && Number.isFinite(m) && m > 1) {
      const perStep = Math.log(w.meritStart[b]! / m) / w.steps[b]!;
      if (!(perStep > 0) || iterations + Math.log(m) / (ELK_RATE_SLACK * perStep) > budget) fail(w, b, 'stagnated');
    }
    if (w.status[b] === Row.Failed) out.push(b);
  }
  return out;
}

/**
 * The NaN/±Inf entries of t ([B, ...]): how many, and which batch rows hold them. A max |t| first
 * (one reduction, a scalar read), and only where that is not finite the update's per-row counts of
 * t against itself.
 */
export function* nonFiniteEntries(backend: Backend, t: Tensor): Solve<{ readonly count: number; readonly rows: number[] }> {
  if (Number.isFinite(yield* readMaxAbs(t))) return { count: 0, rows: [] };
  const check = yield* readUpdate(t, t, { atol: 1, rtol: 0, clip: Number.POSITIVE_INFINITY });
  backend.dispose(check.y);
  return { count: check.replaced, rows: [...check.rows.replaced.keys()].filter((b) => check.rows.replaced[b]! > 0) };
}

/** The batch rows of y ([B, ...]) that hold NaN or ±Inf (`nonFiniteEntries`). */
export function* nonFiniteRows(backend: Backend, y: Tensor): Solve<number[]> {
  return (yield* nonFiniteEntries(backend, y)).rows;
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
  // With delta, the update measures |(y + r) − y| = |r| against atol + rtol·|G(y)|.
  const r = yield* problem.evaluate(y);
  let check: NewtonUpdate;
  try {
    check = yield* readUpdate(r, y, {
      atol: tol.atol,
      rtol: tol.rtol,
      clip: Number.POSITIVE_INFINITY,
      active,
      delta: true,
    });
  } finally {
    backend.dispose(r);
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
  return yield* countDeviceWork(backend, stats, eachWindow());

  function* eachWindow(): Solve<Tensor> {
    const windows = Math.ceil(T / W);
    const pieces: Tensor[] = [];
    const starts: Tensor[] = [];
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
    }
  }
}

/**
 * Runs a solve's device work as a counted span: its counters' difference goes into
 * `stats.device`, unless another span on the same backend overlapped it (then `device` is left out).
 */
export function* countDeviceWork<T>(backend: Backend, stats: EngineStats, body: Solve<T>): Solve<T> {
  const counted = backend.counters?.();
  if (!counted) return yield* body;
  const span = openCountedSpan(backend);
  try {
    return yield* body;
  } finally {
    const shared = closeCountedSpan(backend, span);
    if (shared) stats.deviceShared = true;
    if (stats.deviceShared) delete stats.device;
    else addDeviceCounts(stats, counterDifference(counted, backend.counters!()));
  }
}

/** Stats as a solve reports them: without the engine's internal span flag. */
export function withoutSpanFlag(stats: EngineStats): Omit<EngineStats, 'deviceShared'> {
  const { deviceShared: _, ...rest } = stats;
  return rest;
}

/**
 * Counted spans in flight per backend. The counters are the backend's, so a span that another
 * solve on the same backend overlapped cannot be split between them: it is marked shared.
 */
const inFlight = new WeakMap<Backend, { active: number; overlaps: number }>();

function openCountedSpan(view: Backend): { seen: number; shared: boolean } {
  // A withCapabilities view counts on the backend it wraps.
  const backend = underlyingBackend(view);
  let state = inFlight.get(backend);
  if (!state) inFlight.set(backend, (state = { active: 0, overlaps: 0 }));
  state.active++;
  if (state.active > 1) state.overlaps++;
  return { seen: state.overlaps, shared: state.active > 1 };
}

/**
 * Device work that is not a solve — a sequential pass, a backward pass, dopri5 or rk4 — marked in
 * flight for as long as it runs, so that a solve it overlaps leaves `device` out instead of
 * counting that work as its own.
 */
export async function asDeviceActivity<T>(backend: Backend, body: () => Promise<T>): Promise<T> {
  if (!backend.counters) return body();
  const span = openCountedSpan(backend);
  try {
    return await body();
  } finally {
    closeCountedSpan(backend, span);
  }
}

/** `asDeviceActivity` for synchronous work. */
export function asDeviceActivitySync<T>(backend: Backend, body: () => T): T {
  if (!backend.counters) return body();
  const span = openCountedSpan(backend);
  try {
    return body();
  } finally {
    closeCountedSpan(backend, span);
  }
}

/** Ends a span; true when another span overlapped it. */
function closeCountedSpan(view: Backend, span: { seen: number; shared: boolean }): boolean {
  const state = inFlight.get(underlyingBackend(view))!;
  state.active--;
  return span.shared || state.overlaps !== span.seen;
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
