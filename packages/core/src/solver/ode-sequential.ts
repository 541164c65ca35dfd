import { HostStep } from '../backend/host-step.js';
import type { Backend, Tensor, TypedArray } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { ConvergenceError, NonFiniteError, StepSizeError, UnsupportedOptionError } from '../errors.js';
import { AbortCheck, type AbortSignalLike, signalOption } from './abort.js';
import { asDeviceActivity } from './engine.js';
import { type OdeProblem, type PreparedOde, prepareOde } from './ode-inputs.js';
import { stepCost } from './plan.js';
import { checkOptionNames, flag, numberOption } from './options.js';
import { Owned, type ParamsInput } from './validate.js';

/** The largest finite value of each dtype. */
const LARGEST = { float32: 3.4028234663852886e38, float64: Number.MAX_VALUE } as const;

/**
 * A field evaluation at most this big (multiply-adds over the batch, solver/plan.ts's units) runs on
 * the host interpreter (3–7 ns a unit here) rather than as a backend call, whose tensor upload, step
 * and read cost 0.03–0.1 ms on the cpu backend and 0.25 ms through tfjs's ops whatever the size.
 * A backend that states a round trip (`capabilities.iterationOverhead`, a GPU's: 0.5–0.8 ms on a
 * software adapter) keeps fields up to half of it on the host. Bigger fields go to the backend,
 * whose compiled or parallel step wins there.
 */
export const HOST_FIELD_WORK = 10_000;

/** The largest field evaluation (B × step cost) that `backend` evaluates on the host. */
export function hostFieldWork(backend: Backend): number {
  const overhead = backend.capabilities.iterationOverhead;
  return overhead === undefined ? HOST_FIELD_WORK : Math.max(HOST_FIELD_WORK, overhead / 2);
}

/**
 * Evaluates the field at host-side states: the sequential baselines step on the host and need f
 * only. A small field (B × its step's cost ≤ hostFieldWork(backend)) runs on the host interpreter in the
 * backend's dtype (float32 rounds every node as float32 tensor ops do); a bigger one is one batched
 * backend call per evaluation.
 */
class FieldEvaluator {
  private constructor(
    private readonly backend: Backend,
    private readonly field: Cell,
    private readonly params: Readonly<Record<string, Tensor>>,
    private readonly B: number,
    private readonly grid: Float64Array,
    private readonly xHost: Float64Array | undefined,
    private readonly dtype: Tensor['dtype'],
    private readonly host: HostStep | undefined,
  ) {}

  static async create(
    backend: Backend,
    field: Cell,
    params: Readonly<Record<string, Tensor>>,
    B: number,
    grid: Float64Array,
    x: Tensor | undefined,
    dtype: Tensor['dtype'],
  ): Promise<FieldEvaluator> {
    const xHost = x ? Float64Array.from(await backend.read(x)) : undefined;
    const program = field.stepProgram();
    let host: HostStep | undefined;
    if (B * stepCost(program.graph, program.outputs) <= hostFieldWork(backend)) {
      const values: Record<string, TypedArray> = {};
      for (const [name, t] of Object.entries(params)) values[name] = await backend.read(t);
      host = new HostStep(program, values, dtype);
    }
    return new FieldEvaluator(backend, field, params, B, grid, xHost, dtype, host);
  }

  /**
   * f(y, x(t)) at t = t_i + tau, with x linearly interpolated on grid interval i (tau in
   * [0, t_{i+1} − t_i]). The field is autonomous in t but for x, so only tau is needed: it stays
   * exact where t_i is large and t_i + tau would round.
   */
  async eval(tau: number, i: number, y: Float64Array): Promise<Float64Array> {
    const B = this.B;
    const m = this.field.inputSize;
    let xi: Float64Array | undefined;
    if (m > 0) {
      const x = this.xHost!;
      const T1 = this.grid.length;
      const w = tau / (this.grid[i + 1]! - this.grid[i]!);
      xi = new Float64Array(B * m);
      for (let b = 0; b < B; b++) {
        for (let k = 0; k < m; k++) {
          const lo = x[(b * T1 + i) * m + k]!;
          const hi = x[(b * T1 + i + 1) * m + k]!;
          // Not lo + w·(hi − lo): hi − lo overflows for finite x of opposite signs near the
          // largest doubles, and an end's value stays its own (NaN at one end stays there).
          xi[b * m + k] = w === 0 ? lo : w === 1 ? hi : (1 - w) * lo + w * hi;
        }
      }
    }
    return this.host ? this.evalOnHost(this.host, y, xi) : await this.evalOnBackend(y, xi);
  }

  private evalOnHost(host: HostStep, y: Float64Array, xi: Float64Array | undefined): Float64Array {
    const n = this.field.stateSize;
    const m = this.field.inputSize;
    const out = new Float64Array(this.B * n);
    const f = host.value(host.program.outputs[0]!);
    for (let b = 0; b < this.B; b++) {
      host.run({ state: y, stateOffset: b * n, ...(xi ? { input: xi } : {}), inputOffset: b * m, cotangentOffset: 0 });
      for (let k = 0; k < n; k++) out[b * n + k] = f[k]!;
    }
    return out;
  }

  private async evalOnBackend(y: Float64Array, xi: Float64Array | undefined): Promise<Float64Array> {
    const backend = this.backend;
    const B = this.B;
    const state = backend.tensor(y, [B, 1, this.field.stateSize], this.dtype);
    const input = xi ? backend.tensor(xi, [B, 1, this.field.inputSize], this.dtype) : undefined;
    try {
      const params = this.params;
      const out = backend.runStep(this.field.stepProgram(), input ? { state, input, params } : { state, params });
      const f = out.outputs[0]!;
      const data = Float64Array.from(await backend.read(f));
      backend.dispose(f);
      return data;
    } finally {
      backend.dispose(state);
      if (input) backend.dispose(input);
    }
  }
}

function largestMagnitude(y: Float64Array): number {
  let top = 0;
  for (let e = 0; e < y.length; e++) top = Math.max(top, Math.abs(y[e]!));
  return top;
}

function leavesRange(dtype: Tensor['dtype'], t: number, top: number, where: string, steps: number, rejected: number): ConvergenceError {
  return new ConvergenceError(
    `dopri5: the solution leaves ${dtype}'s range at t ≈ ${t} (|y| reached ${top.toPrecision(3)}, ${where}) after ${steps} accepted and ${rejected} rejected steps${dtype === 'float32' ? ': solve in float64, or rescale the problem' : ''}`,
    { steps, rejected, t, largest: top },
  );
}

const axpy = (y: Float64Array, terms: readonly [number, Float64Array][]) => {
  const out = Float64Array.from(y);
  for (const [a, k] of terms) if (a !== 0) for (let i = 0; i < out.length; i++) out[i]! += a * k[i]!;
  return out;
};

export interface Rk4Options {
  /** RK4 steps per grid interval (default 1). */
  readonly substeps?: number;
  readonly checkFinite?: boolean;
  /** Cancels the run, checked at every step (see `SolveOptions.signal`). */
  readonly signal?: AbortSignalLike;
}

/**
 * Classic fixed-step Runge–Kutta 4 on the grid (fourth order). Returns y at t_1..t_T, [B, T, n]:
 * what the steps give, with no error control — NaN/Inf where the trajectory or an unstable step
 * overflows (dopri5 throws a typed error there).
 */
export async function rk4(
  backend: Backend,
  field: Cell,
  params: ParamsInput,
  problem: OdeProblem,
  options: Rk4Options = {},
): Promise<{ y: Tensor }> {
  checkOptionNames(options, ['substeps', 'checkFinite', 'signal'], 'rk4');
  const substeps = numberOption('substeps', options.substeps, 1, 'integer');
  const checkFinite = flag('checkFinite', options.checkFinite, true);
  const abort = new AbortCheck(signalOption(options.signal));
  abort.checkSync();
  const owned = new Owned(backend);
  try {
    const p = await prepareOde(backend, field, params, problem, undefined, owned, checkFinite);
    return await asDeviceActivity(backend, () => rk4Steps(backend, field, p, substeps, abort));
  } finally {
    owned.dispose();
  }
}

/** rk4's fixed steps on a prepared problem. */
async function rk4Steps(
  backend: Backend,
  field: Cell,
  p: PreparedOde,
  substeps: number,
  abort: AbortCheck,
): Promise<{ y: Tensor }> {
  const f = await FieldEvaluator.create(backend, field, p.params, p.B, p.grid, p.x, p.dtype);
  const n = field.stateSize;
  let y = Float64Array.from(await backend.read(p.y0));
  const out = new Float64Array(p.B * p.T * n);
  for (let i = 0; i < p.T; i++) {
    const h = p.dt[i]! / substeps;
    for (let k = 0; k < substeps; k++) {
      const t = k * h;
      await abort.check();
      const k1 = await f.eval(t, i, y);
      const k2 = await f.eval(t + h / 2, i, axpy(y, [[h / 2, k1]]));
      const k3 = await f.eval(t + h / 2, i, axpy(y, [[h / 2, k2]]));
      const k4 = await f.eval(t + h, i, axpy(y, [[h, k3]]));
      y = axpy(y, [
        [h / 6, k1],
        [h / 3, k2],
        [h / 3, k3],
        [h / 6, k4],
      ]);
    }
    for (let b = 0; b < p.B; b++) out.set(y.subarray(b * n, (b + 1) * n), (b * p.T + i) * n);
  }
  return { y: backend.tensor(out, [p.B, p.T, n], p.dtype) };
}

export interface Dopri5Options {
  readonly atol?: number;
  readonly rtol?: number;
  /** Step limit before giving up (default 1 000 000). */
  readonly maxSteps?: number;
  readonly checkFinite?: boolean;
  /** Cancels the run, checked at every step (see `SolveOptions.signal`). */
  readonly signal?: AbortSignalLike;
}

// Dormand–Prince 5(4) tableau.
const C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1];
const A: number[][] = [
  [],
  [1 / 5],
  [3 / 40, 9 / 40],
  [44 / 45, -56 / 15, 32 / 9],
  [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
  [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
  [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
];
const B5 = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0];
const B4 = [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40];

/**
 * Hairer's stiffness test for this tableau (Hairer & Wanner, Solving ODEs II, §IV.2): the last two
 * stages are evaluated at the same time, so ‖k7 − k6‖ / ‖y7 − y6‖ estimates |λ| of the field there;
 * h·|λ| past 3.25 puts the step on the edge of the method's stability region, where stability and
 * not accuracy sets h. Six calm steps in a row end a stiff run.
 */
const STIFF_H_LAMBDA = 3.25;
const CALM_STEPS_ENDING_A_STIFF_RUN = 6;
/**
 * A run of stiff steps is judged at the end of every window of STIFF_WINDOW of its accepted steps
 * from the second on: where the rest of the horizon would take more than HOPELESS × the steps
 * `maxSteps` leaves, dopri5 stops with a ConvergenceError instead of spending all of them on an
 * answer it cannot reach. The projection lets the step grow as it grew from the window before to
 * the last (stiffness that fades — a decaying stiff mode — lets it grow geometrically in time), so
 * a transient is not judged as if it lasted; for a field with inputs it reaches only to the end of
 * the grid interval, since the next input may end the stiffness.
 */
const STIFF_WINDOW = 1000;
const HOPELESS = 10;
/** Mean step growth between windows below which the step is taken as held (its noise at the stability edge). */
const HELD_STEP_GROWTH = 1.02;

/** A run of stiff steps, in windows: the steps the rest of the horizon would take as the step grows. */
class StiffRun {
  /** Accepted stiff steps in the run. */
  length = 0;
  private span = 0;
  private previousSpan = 0;

  reset(): void {
    this.length = 0;
    this.span = 0;
    this.previousSpan = 0;
  }

  /**
   * Count an accepted stiff step of size `hs`. At the end of a window from the second on, the steps
   * that `left` would take from here; otherwise undefined.
   */
  add(hs: number, left: number): number | undefined {
    this.length++;
    this.span += hs;
    if (this.length % STIFF_WINDOW !== 0) return undefined;
    const [before, last] = [this.previousSpan, this.span];
    this.previousSpan = last;
    this.span = 0;
    if (before === 0) return undefined;
    // Windows of equal step counts: the ratio of their spans is that of their mean steps.
    const growth = last / before;
    if (!(growth > HELD_STEP_GROWTH)) return left / hs;
    // h(s) = hs·e^{rate·s}: ∫₀^left ds / h(s).
    const rate = Math.log(growth) / ((before + last) / 2);
    return -Math.expm1(-rate * left) / (rate * hs);
  }
}

/** |λ| of the field near y7, from two evaluations at the same time: ‖k7 − k6‖ / ‖y7 − y6‖ (0 where y7 = y6). */
function lambdaEstimate(k7: Float64Array, k6: Float64Array, y7: Float64Array, y6: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let e = 0; e < y7.length; e++) {
    num += (k7[e]! - k6[e]!) ** 2;
    den += (y7[e]! - y6[e]!) ** 2;
  }
  return den > 0 ? Math.sqrt(num / den) : 0;
}

/**
 * Adaptive Dormand–Prince 5(4) with the error controlled per step, never stepping over a grid time
 * so the output lands on the grid exactly. Returns y at t_1..t_T, [B, T, n].
 */
export async function dopri5Solve(
  backend: Backend,
  field: Cell,
  params: ParamsInput,
  problem: OdeProblem,
  options: Dopri5Options = {},
): Promise<{ y: Tensor; steps: number; rejected: number }> {
  checkOptionNames(options, ['atol', 'rtol', 'maxSteps', 'checkFinite', 'signal'], 'dopri5');
  const checkFinite = flag('checkFinite', options.checkFinite, true);
  signalOption(options.signal)?.throwIfAborted();
  const owned = new Owned(backend);
  try {
    const p = await prepareOde(backend, field, params, problem, undefined, owned, checkFinite);
    return await asDeviceActivity(backend, () =>
      dopri5Run(backend, field, p.params, p.y0, p.grid, p.x, options),
    );
  } finally {
    owned.dispose();
  }
}

/** @internal dopri5 on prepared tensors (used as solveIvp's fallback). */
export async function dopri5(
  backend: Backend,
  field: Cell,
  params: Readonly<Record<string, Tensor>>,
  y0: Tensor,
  grid: Float64Array,
  x: Tensor | undefined,
  options: Dopri5Options,
): Promise<Tensor> {
  return (await dopri5Run(backend, field, params, y0, grid, x, options)).y;
}

async function dopri5Run(
  backend: Backend,
  field: Cell,
  params: Readonly<Record<string, Tensor>>,
  y0: Tensor,
  grid: Float64Array,
  x: Tensor | undefined,
  options: Dopri5Options,
): Promise<{ y: Tensor; steps: number; rejected: number }> {
  // A negative tolerance would make every error estimate negative and accept every step.
  const atol = numberOption('atol', options.atol, 1e-8);
  const rtol = numberOption('rtol', options.rtol, 1e-8);
  if (atol === 0 && rtol === 0) throw new UnsupportedOptionError('atol/rtol', 0, 'at least one of them > 0');
  const maxSteps = numberOption('maxSteps', options.maxSteps, 1_000_000, 'integer');
  const abort = new AbortCheck(signalOption(options.signal));
  const B = y0.shape[0]!;
  const n = field.stateSize;
  const T = grid.length - 1;
  const f = await FieldEvaluator.create(backend, field, params, B, grid, x, y0.dtype);
  let y = Float64Array.from(await backend.read(y0));
  const out = new Float64Array(B * T * n);
  let h = Math.min(grid[1]! - grid[0]!, Math.abs(grid[T]! - grid[0]!) / 100);
  if (!(h > 0)) h = grid[1]! - grid[0]!; // a span of subnormals: a hundredth of it rounds to 0
  let steps = 0;
  let rejected = 0;
  const stiff = new StiffRun();
  let calm = 0;
  let k1 = await f.eval(0, 0, y);
  for (let i = 0; i < T; i++) {
    // Time within the interval, from 0 to its length: stepping t itself lost the rounding of
    // t + h at every step where |t| ≫ h (a 1 s interval at t = 1e9 integrated over 1 s ± 7e-6).
    const tEnd = grid[i + 1]! - grid[i]!;
    let t = 0;
    while (t < tEnd) {
      await abort.check();
      if (steps + rejected >= maxSteps) {
        throw new ConvergenceError(`dopri5: more than ${maxSteps} steps before t = ${grid[i + 1]}`, {
          steps,
          rejected,
        });
      }
      // Snap to the grid point when the step would reach it or leave a sliver: relative to h, not
      // to |tEnd| (a slack of 1e-12·|tEnd| swallowed whole intervals at t ≈ 1e9, so a rejected
      // step never shrank and the solve ran out of steps).
      const last = t + h * (1 + 1e-6) >= tEnd;
      const hs = last ? tEnd - t : h;
      // A step that no longer moves t (underflow) or is not finite (overflow) would loop forever.
      if (!(hs > 0) || !Number.isFinite(hs) || t + hs === t) {
        throw new StepSizeError('dopri5', grid[i]! + t, hs, steps, rejected);
      }
      const k: Float64Array[] = [k1];
      let y6 = y;
      for (let st = 1; st < 7; st++) {
        const terms = A[st]!.map((a, q) => [hs * a, k[q]!] as [number, Float64Array]);
        const arg = axpy(y, terms);
        if (st === 5) y6 = arg;
        k.push(await f.eval(t + C[st]! * hs, i, arg));
      }
      const yNew = axpy(
        y,
        B5.map((b, q) => [hs * b, k[q]!] as [number, Float64Array]),
      );
      let err = 0;
      for (let e = 0; e < y.length; e++) {
        let d = 0;
        for (let q = 0; q < 7; q++) d += (B5[q]! - B4[q]!) * k[q]![e]!;
        const sc = atol + rtol * Math.max(Math.abs(y[e]!), Math.abs(yNew[e]!));
        // No error where the estimate is 0: with atol = 0 a component that stays at 0 had made
        // 0/0, read as overflowing stages, and every step was rejected down to an underflow.
        const q = Math.abs(hs * d);
        err = Math.max(err, q === 0 ? 0 : q / sc);
      }
      if (!Number.isFinite(err)) {
        // The stages overflowed. Where the state itself is within 2¹⁰ of the dtype's largest value,
        // no smaller step helps: each accepted step creeps toward the limit and the next overflows
        // (float32, |y| → 3.4e38: 10⁵ steps and maxSteps later, a misleading error).
        const bad = y.findIndex((e) => !Number.isFinite(e));
        // A state that is not finite (NaN in y0 under checkFinite: false) has no step to find.
        if (bad >= 0) throw new NonFiniteError(`dopri5: the state at t = ${grid[i]! + t}`, bad, y[bad]!);
        const top = largestMagnitude(y);
        if (!(top < LARGEST[y0.dtype] / 1024)) throw leavesRange(y0.dtype, grid[i]! + t, top, 'and the field overflows there', steps, rejected);
        err = 1e10;
      }
      const factor = Math.min(5, Math.max(0.2, 0.9 * err ** -0.2));
      if (err <= 1) {
        // A finite field can carry y past the dtype's largest value too (float32: the state is kept
        // in float64 here and had come back as ±Infinity, unflagged).
        const topNew = largestMagnitude(yNew);
        if (!(topNew <= LARGEST[y0.dtype])) throw leavesRange(y0.dtype, grid[i]! + t + hs, topNew, 'past its largest value', steps, rejected);
        const stiffStep = hs * lambdaEstimate(k[6]!, k[5]!, yNew, y6) > STIFF_H_LAMBDA;
        if (stiffStep) calm = 0;
        else if (++calm >= CALM_STEPS_ENDING_A_STIFF_RUN) stiff.reset();
        t = last ? tEnd : t + hs;
        y = yNew;
        k1 = k[6]!; // first same as last
        steps++;
        if (!last) h = hs * factor;
        const end = field.inputSize > 0 ? grid[i + 1]! : grid[T]!;
        const left = tEnd - t + (end - grid[i + 1]!);
        const needed = stiffStep ? stiff.add(hs, left) : undefined;
        if (needed !== undefined && needed > HOPELESS * (maxSteps - steps - rejected)) {
          throw new ConvergenceError(
            `dopri5: the problem is stiff from t ≈ ${grid[i]! + t}: for ${stiff.length} steps the step size (${hs.toPrecision(3)}) was held at the edge of the method's stability region, and the ${left.toPrecision(3)} left to t = ${end} would take about ${needed.toPrecision(3)} steps as the step has grown, more than ${HOPELESS}× the ${maxSteps - steps - rejected} that maxSteps leaves. An explicit method cannot do better on this field: shorten the interval or rescale the field (solveIvp's exponential scheme is not held by stability; its sequential fallback is this method)`,
            { steps, rejected, stiff: true, t: grid[i]! + t, step: hs },
          );
        }
      } else {
        rejected++;
        h = hs * factor;
      }
    }
    for (let b = 0; b < B; b++) out.set(y.subarray(b * n, (b + 1) * n), (b * T + i) * n);
  }
  return { y: backend.tensor(out, [B, T, n], y0.dtype), steps, rejected };
}
