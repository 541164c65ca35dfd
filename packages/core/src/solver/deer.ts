import type { StepProgram } from '../backend/program.js';
import type { Backend, DeviceCounters, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { describeStructure, structureFromBlockSize } from '../cell/structure.js';
import { ConvergenceError, ShapeError, UnsupportedOptionError } from '../errors.js';
import {
  countDeviceWork,
  type EngineStats,
  type NewtonMethod,
  type NewtonProblem,
  newEngineStats,
  nonFiniteRows,
  type StopReason,
  solveWindows,
  withoutSpanFlag,
} from './engine.js';
import { AbortCheck } from './abort.js';
import { driveAsync, driveSync, readDeerStep, type Solve } from './solve.js';
import { type DeerOptions, type ResolvedDeerOptions, resolveDeerOptions } from './options.js';
import {
  checkInitialGuess,
  checkLengths,
  checkInputFinite,
  checkParamTensors,
  checkSequenceInput,
  checkTensor,
  Owned,
  type ParamsInput,
  prepareInitialState,
  prepareParams,
  windowLengths,
} from './validate.js';
import { planShooting, planShootingUpFront, planSolve, shootingChunks, type SolvePlan, unreadIterations } from './plan.js';
import { probeDynamics } from './probes.js';
import { toleranceCanBeUnresolved, unresolvedAdvice, unresolvedRows } from './rounding.js';
import { shoot } from './shooting.js';
import { checkTrajectoryFits, chooseWindow } from './window.js';

export interface DeerStats {
  /** Newton iterations done (summed over windows). */
  readonly iterations: number;
  /**
   * max |y_new − y_old| after each measured iteration, in order (all windows): every iteration,
   * except where steps run unread between checks (a GPU), one entry per check.
   */
  readonly residuals: readonly number[];
  /**
   * Whether every batch row converged: its last Newton step met the tolerance with no replaced
   * and no clipped entry, and its one-step residual (see `residual`) is within tolerance.
   */
  readonly converged: boolean;
  /** Whether some rows of the result came from the sequential fallback. */
  readonly fellBack: boolean;
  /** Batch rows recomputed by the fallback, summed over windows. */
  readonly fallbackRows: number;
  /**
   * Batch rows kept although they met the tolerance only as rounded (`stopReason` 'rounding' for
   * them, though a worse reason of other rows may stand in `stopReason`), summed over windows.
   */
  readonly roundingRows: number;
  /** Why Newton stopped: 'tolerance' when every row converged, else the worst row's reason. */
  readonly stopReason: StopReason;
  /**
   * max over t of |y_t − f(y_{t−1}, x_t)| / (atol + rtol·|f(y_{t−1}, x_t)|) for the rows Newton
   * returned (≤ 1 when converged; rows from the sequential fallback are exact by construction).
   */
  readonly residual: number;
  /** NaN/Inf entries of iterates that were replaced by 0. */
  readonly replaced: number;
  /** Entries of iterates that reached ±clip and were clipped. */
  readonly clipped: number;
  /** The Jacobian structure used, e.g. 'dense', 'diagonal', 'block(4)'. */
  readonly structure: string;
  /** Whether that structure is the exact Jacobian (false: quasi-DEER). */
  readonly exactJacobian: boolean;
  /** Windows of time steps solved one after another (1: the whole sequence at once). */
  readonly windows: number;
  /** The method asked for ('deer', 'elk', 'auto' or 'shoot'). */
  readonly method: NewtonMethod;
  /** Iterations with full steps (DEER) and with damped steps (ELK), summed over windows. */
  readonly deerIterations: number;
  readonly elkIterations: number;
  /**
   * What 'auto' decided and why, and when 'elk' handed rows its trust region stalled on to damped
   * DEER steps: one line per decision (e.g. "row 2 stagnated under DEER → damped steps").
   */
  readonly switches: readonly string[];
  /**
   * Sweeps of parallel shooting, summed over windows: 'shoot' (every row), and 'auto' (rows Newton
   * gave up, chaotic ones aside, or every row where its cost model chose shooting up front). Rows
   * run in chunks side by side until each chunk continues its predecessor; rows it finishes count
   * as converged, not as fallen back. `onIteration` reports Newton iterations only.
   */
  readonly shootingSweeps: number;
  /** 'auto': the largest estimated Lyapunov exponent per step over the rows (above CHAOS_THRESHOLD, 0.01: chaotic); undefined where no row was long enough to estimate one (rows of fewer than 10 steps). */
  readonly lyapunov: number | undefined;
  /**
   * 'auto': the largest per-row memory measured — steps a trajectory from a perturbed start took to
   * join the true one (within 1e-2 relative) —, up to the iteration budget + 1; rows above the
   * budget go to parallel shooting ('longMemory'). Absent where not measured (T within budget, or
   * every row chaotic).
   */
  readonly memory?: number;
  /**
   * 'auto' on a backend that states its parallelism: the cost model's estimates and its choice
   * (the structure DEER used, or sequential evaluation; the reason is also in `switches`).
   */
  readonly plan?: SolvePlan;
  /**
   * Device work of the Newton solve (dispatches, submits, host reads, bytes written), when the
   * backend counts it (`backend.counters`, e.g. webgpu). The counts are the backend's over the
   * solve's span: absent when another deer/ELK solve on the same backend ran at the same time
   * (they cannot be split); other work on the backend in that span (a `sequential` call, the
   * caller's own ops) is counted in.
   */
  readonly device?: DeviceCounters;
}

export interface DeerResult {
  /** [B, T, n]; the caller owns it and disposes it. */
  readonly y: Tensor;
  readonly stats: DeerStats;
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
  const abort = new AbortCheck(opts.signal);
  abort.checkSync();
  const owned = new Owned(backend);
  try {
    if (opts.checkFinite) await checkInputFinite(backend, x);
    const p = await prepareParams(backend, cell, params, dtype, owned, opts.checkFinite);
    const y0 = await prepareInitialState(backend, cell, options.h0, B, dtype, owned, opts.checkFinite);
    await checkInitialGuess(backend, opts.initialGuess, { B, T: x.shape[1]!, n: cell.stateSize, dtype }, opts.checkFinite);
    const lengths = checkLengths(options.lengths, B, x.shape[1]!);
    return await driveAsync(backend, deerSolve(backend, cell, p, x, y0, opts, lengths), abort);
  } finally {
    owned.dispose();
  }
}

/**
 * `deer` for backends whose reads complete synchronously (`newtonUpdateSync`), for callers that
 * cannot await — such as a tfjs custom-gradient op. Parameters and h0 ([B, n]) are tensors; inputs
 * are not scanned for NaN/Inf (that check needs an asynchronous read): a non-finite input shows
 * as a non-converged solve (NaN in the one-step residual), never as a converged one.
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
  // h0 is an argument here, and nothing is read to check values: both options would be ignored.
  for (const key of ['h0', 'checkFinite'] as const) {
    if (typeof options === 'object' && options !== null && key in options)
      throw new UnsupportedOptionError(key, (options as Record<string, unknown>)[key], key === 'h0' ? "deerSync's h0 argument" : 'nothing (deerSync does not check values)');
  }
  checkParamTensors(backend, cell, params, dtype, 'deerSync');
  checkTensor(backend, 'h0', h0);
  if (h0.shape.length !== 2 || h0.shape[0] !== B || h0.shape[1] !== cell.stateSize) {
    throw new ShapeError('h0', `[${B}, ${cell.stateSize}]`, `[${h0.shape.join(', ')}]`);
  }
  const opts = resolveDeerOptions(cell, dtype, { ...options, checkFinite: false });
  const lengths = checkLengths(options.lengths, B, x.shape[1]!);
  const abort = new AbortCheck(opts.signal);
  abort.checkSync();
  return driveSync(backend, deerSolve(backend, cell, params, x, h0, opts, lengths), abort);
}

/** The recurrence y_t = f(y_{t−1}, x_t) on steps t0 .. t0 + len − 1, as a Newton problem. */
export function recurrenceProblem(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  blockSize: number,
  initial: () => Tensor,
  lengths?: Uint32Array,
  tol?: { readonly atol: number; readonly rtol: number },
): NewtonProblem {
  const [B, T] = [x.shape[0]!, x.shape[1]!];
  const n = cell.stateSize;
  /** Past a row's end (padding): G = 0 and A = 0, so it settles at once and feeds nothing back. */
  const mask = (t: Tensor, rows?: readonly number[]) => {
    if (!lengths) return t;
    const masked = backend.maskTime(t, rows ? rows.map((r) => lengths[r]!) : lengths);
    backend.dispose(t);
    return masked;
  };
  const shootingPlan = (rows: number) => {
    const { parallelism, iterationOverhead, sequentialStep } = backend.capabilities;
    return planShooting(cell, rows, T, parallelism, { iterationOverhead, sequentialStep });
  };
  /** r = f(y_{t−1}, x_t) − y_t (and J), in one step program. */
  const evalAt = (y: Tensor, withJacobian: boolean, s = blockSize) => {
    const yPrev = backend.shiftTime(y, y0, 1);
    try {
      const program = cell.residualProgram(withJacobian ? s : undefined);
      const out = backend.runStep(program, { state: yPrev, input: x, cotangent: y, params });
      return { r: mask(out.outputs[0]!), J: out.jacobian ? mask(out.jacobian) : undefined };
    } finally {
      backend.dispose(yPrev);
    }
  };
  return {
    B,
    T,
    n,
    blockSize,
    finiteDepth: true,
    exactJacobian: blockSize % cell.exactBlockSize === 0,
    exactBlockSize: cell.exactBlockSize,
    initial: () => mask(initial()),
    // biome-ignore lint/correctness/useYield: reads nothing; a generator to fit the engine
    *linearize(y, s) {
      const { r, J } = evalAt(y, true, s);
      return { A: J!, r };
    },
    // Masking padded steps (lengths) happens between the step and the scan: not fused.
    *fusedStep(y, opts) {
      if (lengths) return null;
      return yield* readDeerStep(cell.residualProgram(blockSize), { input: x, y0, params }, y, opts);
    },
    *probe(horizon) {
      return yield* probeDynamics(backend, cell, params, x, y0, lengths, horizon);
    },
    ...(tol &&
      toleranceCanBeUnresolved(x.dtype, tol) && {
        roundingAdvice: unresolvedAdvice(x.dtype),
        certify: (y: Tensor, rows: readonly number[]) => unresolvedRows(y, rows, tol, lengths),
      }),
    // biome-ignore lint/correctness/useYield: as above
    *evaluate(y) {
      return evalAt(y, false).r;
    },
    canShoot: (rows) => shootingPlan(rows) !== null,
    *shoot(rows, tol, sweeps) {
      // Asked for ('shoot'): √T chunks; one chunk (T ≤ 2) is a pass from the exact start, which
      // its first check confirms.
      const asked = sweeps === undefined ? null : shootingChunks(T);
      const plan = asked ? { ...asked, maxSweeps: Math.min(asked.chunks, sweeps!) } : shootingPlan(rows.length);
      if (!plan) return null;
      const all = rows.length === B;
      const xs = all ? x : backend.gatherRows(x, rows);
      const y0s = all ? y0 : backend.gatherRows(y0, rows);
      try {
        const rowLengths = lengths && (all ? lengths : rows.map((r) => lengths[r]!));
        const shot = yield* shoot(backend, cell.stepProgram(), { input: xs, y0: y0s, params }, plan, tol, plan.maxSweeps, rowLengths);
        let y: Tensor;
        try {
          y = mask(shot.y, all ? undefined : rows);
        } catch (err) {
          backend.dispose(shot.y);
          throw err;
        }
        return { ...shot, y, chunks: plan.chunks, length: plan.length };
      } finally {
        if (!all) {
          backend.dispose(xs);
          backend.dispose(y0s);
        }
      }
    },
    // biome-ignore lint/correctness/useYield: as above
    *sequential(rows, prefix) {
      if (prefix) return mask(continueSequential(backend, cell.stepProgram(), params, x, prefix));
      if (rows.length === B) return mask(backend.runSequential(cell.stepProgram(), { input: x, y0, params }));
      const xs = backend.gatherRows(x, rows);
      const y0s = backend.gatherRows(y0, rows);
      try {
        return mask(backend.runSequential(cell.stepProgram(), { input: xs, y0: y0s, params }), rows);
      } finally {
        backend.dispose(xs);
        backend.dispose(y0s);
      }
    },
  };
}

/**
 * The sequential pass over x for every row, from `prefix` — its first P steps, which it takes over
 * (disposes or returns): the rest runs from the prefix's last state.
 */
function continueSequential(
  backend: Backend,
  program: StepProgram,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  prefix: Tensor,
): Tensor {
  const [T, P] = [x.shape[1]!, prefix.shape[1]!];
  if (P >= T) return prefix;
  let last: Tensor | undefined;
  let xs: Tensor | undefined;
  let rest: Tensor | undefined;
  try {
    last = backend.timeStep(prefix, P - 1);
    xs = backend.sliceTime(x, P, T - P);
    rest = backend.runSequential(program, { input: xs, y0: last, params });
    return backend.concatTime([prefix, rest]);
  } finally {
    for (const t of [last, xs, rest, prefix]) if (t) backend.dispose(t);
  }
}

/**
 * The cost model's sequential answer is exact by construction, but not necessarily finite: a
 * trajectory that overflows holds NaN/Inf. The stats then say so as Newton's would on the same
 * input (not converged, 'nonFinite'), and `fallback: 'throw'` throws as it would for DEER. Nor is
 * it vouched for where the tolerance is finer than the dtype resolves: 'rounding', as for any
 * other path to the same answer (the stats must not depend on which path the cost model took).
 */
function* judgeSequentialAnswer(
  backend: Backend,
  y: Tensor,
  stats: EngineStats,
  opts: ResolvedDeerOptions,
  lengths?: ArrayLike<number>,
): Solve<void> {
  const rows = yield* nonFiniteRows(backend, y);
  let why: string;
  if (rows.length > 0) {
    stats.stopReason = 'nonFinite';
    why = `sequential evaluation: rows ${rows.join(', ')} hold NaN/Inf (the trajectory overflows ${y.dtype})`;
  } else {
    const unvouched = yield* unresolvedRows(y, [...Array(y.shape[0]!).keys()], opts, lengths);
    if (unvouched.length === 0) return;
    stats.stopReason = 'rounding';
    stats.roundingRows += unvouched.length;
    why = `sequential evaluation: ${unvouched.length} of ${y.shape[0]} batch rows meet the tolerance (atol ${opts.atol}, rtol ${opts.rtol}) only as rounded: ${unresolvedAdvice(y.dtype)}`;
  }
  stats.converged = false;
  stats.switches.push(why);
  if (opts.fallback === 'throw') throw new ConvergenceError(why, { ...stats, residuals: [...stats.residuals] });
}

/** The whole solve — windows, Newton iterations, fallback — as a generator that yields at its reads. */
function* deerSolve(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  opts: ResolvedDeerOptions,
  lengths?: Uint32Array,
): Solve<DeerResult> {
  const [B, Tfull] = [x.shape[0]!, x.shape[1]!];
  // Nothing past the longest row is solved: it is padding, zeros.
  const T = lengths ? lengths.reduce((a, b) => Math.max(a, b), 0) : Tfull;
  const n = cell.stateSize;
  const dtype = x.dtype;
  checkTrajectoryFits(backend, B, Tfull, n, dtype, 'solve shorter sequences or a smaller batch');
  let s = opts.blockSize;
  const stats: EngineStats = newEngineStats(opts.method);
  const describe = (windows: number): DeerStats => ({
    ...withoutSpanFlag(stats),
    // No Jacobian at all when the cost model chose sequential evaluation (exact by construction).
    structure: stats.stopReason === 'sequential' || opts.method === 'shoot' ? 'none' : describeStructure(structureFromBlockSize(s, n)),
    exactJacobian: stats.stopReason === 'sequential' || opts.method === 'shoot' || s % cell.exactBlockSize === 0,
    windows,
  });
  if (T === 0) return { y: backend.zeros([B, Tfull, n], dtype), stats: describe(0) };
  const lanes = backend.capabilities.parallelism;
  if (opts.method === 'auto' && lanes !== undefined) {
    // 'auto' asks the cost model first: a coarser Jacobian, or no Newton at all, may be faster.
    const candidates = opts.structureGiven || s === 1 ? [s] : [s, 1];
    const { iterationOverhead, sequentialStep } = backend.capabilities;
    // DEER under 'auto' first probes the rows (probes.ts) with the iteration budget as horizon.
    // Priced where the backend states a round trip per read: there (a GPU: the H200 run) its
    // reads and host walk cost as much as the solve; on backends that state none it was not
    // measured, and the model leaves it out as before.
    const probeHorizon = iterationOverhead === undefined ? undefined : Math.min(opts.maxIter, T + 1);
    const plan = planSolve(cell, B, T, lanes, candidates, { iterationOverhead, sequentialStep, probeHorizon });
    stats.plan = plan;
    stats.switches.push(plan.reason);
    const shooting = plan.choice === 'sequential' && planShootingUpFront(cell, B, T, {
      iterationOverhead,
      sequentialStep,
      rowGain: backend.capabilities.sequentialRowGain?.[dtype],
      confirm: plan.deer[0]!.perIteration / plan.sequential,
    });
    if (shooting) {
      // Rows in the lanes beat rows one by one: parallel shooting, within the user's maxIter, and
      // sequential evaluation — the alternative the cost model weighed it against — for what it
      // leaves, whatever `fallback` says.
      stats.plan = { ...plan, choice: 'shoot', reason: shooting.reason };
      stats.switches.push(shooting.reason);
      opts = { ...opts, method: 'shoot', maxIter: Math.min(opts.maxIter, shooting.maxSweeps), fallback: 'sequential' };
    } else if (plan.choice === 'sequential') {
      stats.stopReason = 'sequential';
      const problem = recurrenceProblem(backend, cell, params, x, y0, s, () => backend.zeros([B, Tfull, n], dtype), lengths);
      const answer = function* (): Solve<Tensor> {
        const y = yield* problem.sequential([...Array(B).keys()]);
        try {
          yield* judgeSequentialAnswer(backend, y, stats, opts, lengths);
        } catch (err) {
          backend.dispose(y);
          throw err;
        }
        return y;
      };
      // Counted as a solve's span (stats.device), as Newton's windows are.
      const y = yield* countDeviceWork(backend, stats, answer());
      return { y, stats: describe(0) };
    }
    if (typeof plan.choice === 'number') s = plan.choice;
  }
  // ELK's damped scan keeps workspace beside A: webgpu's cyclic reduction holds two buffers of
  // 4 values per (b, t, i) for the diagonal, three of 2s + 1 per (b, t, i) for s × s blocks.
  // Shooting builds no Jacobians: its peak is y, the folded input (m per step) and a sweep's y.
  const m = cell.inputSize / n;
  const workspace =
    opts.method === 'shoot'
      ? { s: 1, largest: Math.max(1, m), jacobians: 3 + Math.ceil(m) }
      : opts.method !== 'elk'
        ? { s, largest: 1, jacobians: 1 }
        : s === 1
          ? { s, largest: 4, jacobians: 9 }
          : { s, largest: (2 * s + 1) / s, jacobians: 1 + (3 * (2 * s + 1)) / s };
  const W = opts.window ?? chooseWindow(backend, { B, T, n, dtype, extra: 0, ...workspace, lastHasExtra: false });
  const guess = opts.initialGuess;
  const solved = yield* solveWindows(
    backend,
    T,
    W,
    y0,
    (t0, len, start) => {
      const xw = len === Tfull ? x : backend.sliceTime(x, t0, len);
      const initial = () =>
        guess === 'h0'
          ? backend.broadcastTime(start, len)
          : guess === 'zeros'
            ? backend.zeros([B, len, n], dtype)
            : backend.sliceTime(guess, t0, len);
      const problem = recurrenceProblem(backend, cell, params, xw, start, s, initial, windowLengths(lengths, t0, len), opts);
      return xw === x ? problem : { ...problem, release: () => backend.dispose(xw) };
    },
    {
      ...opts,
      solver: { deer: 'DEER', elk: 'ELK', auto: 'DEER/ELK (auto)', shoot: 'parallel shooting' }[opts.method],
      unread: unreadIterations(cell, B, Math.min(T, W), s, lanes, backend.capabilities.iterationOverhead),
    },
    stats,
  );
  if (T === Tfull) return { y: solved, stats: describe(Math.ceil(T / W)) };
  const pad = backend.zeros([B, Tfull - T, n], dtype);
  const y = backend.concatTime([solved, pad]);
  backend.dispose(solved);
  backend.dispose(pad);
  return { y, stats: describe(Math.ceil(T / W)) };
}
