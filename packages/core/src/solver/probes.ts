import type { Backend, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { Rng } from '../util/random.js';
import { readTensor, type Solve } from './solve.js';

/**
 * What 'auto' learns about a recurrence from a short sequential prefix before any Newton work:
 * how fast infinitesimal perturbations grow (the largest Lyapunov exponent) and how long a finite
 * one is remembered (the memory). Both are per batch row.
 */

/** Most Jacobian entries the probe reads back (4 Mi: 16 MiB in float32). */
const PROBE_FLOATS = 2 ** 22;

/**
 * Distance (relative to 1 + |y|) past which a perturbed trajectory counts as apart from what the
 * linearisation predicts for it: coarse on purpose, Newton's own convergence handles the rest.
 */
export const MERGE_TOLERANCE = 1e-2;

/** Steps after the burn-in below which a row's exponent is not estimated (left at −∞: unknown). */
const MIN_EXPONENT_STEPS = 8;

/** Largest Lyapunov exponent (per step) above which 'auto' treats a row as chaotic. */
export const CHAOS_THRESHOLD = 0.01;

export interface DynamicsProbe {
  /** Per row: the largest Lyapunov exponent per step (above CHAOS_THRESHOLD, 0.01: chaotic). */
  readonly lyapunov: Float64Array;
  /**
   * Per row: the nonlinear memory — steps until a trajectory from a perturbed start follows the
   * true one as the linearisation along it predicts (within MERGE_TOLERANCE) for good; horizon + 1
   * where it still had not at the horizon. Absent where the prefix is shorter than the horizon, and
   * where every row is chaotic.
   */
  readonly memory?: Uint32Array;
  /**
   * The sequential answer over the prefix, [B, P, n]: where every row goes to sequential
   * evaluation, that pass continues from it. The caller owns it.
   */
  readonly prefix: Tensor;
}

/**
 * The probe's prefix P for B rows of T steps of a state of n with s × s Jacobian blocks: T/16, or
 * two budgets if that is more, at least 16, at most T — and capped so that the Jacobians read back
 * stay within PROBE_FLOATS (at nh = 64 a sixteenth of T = 1e4 was 164 MB, read and walked on the
 * host in more time than the solve it guards, on an H200).
 */
export function probePrefix(T: number, B: number, n: number, s: number, horizon: number): number {
  const capped = Math.floor(PROBE_FLOATS / Math.max(1, B * n * s));
  return Math.min(T, Math.max(16, Math.min(Math.max(Math.ceil(T / 16), 2 * horizon), capped)));
}

/** Reads the probe makes: the Jacobians, and where it measures the memory the prefix, the first state and one perturbed run per start. */
export function probeReads(T: number, B: number, n: number, s: number, horizon: number): number {
  const P = probePrefix(T, B, n, s, horizon);
  return 1 + (P >= 2 * horizon ? 4 : P >= horizon ? 3 : 0);
}

/** Sequential steps the probe runs: the prefix, and the perturbed rest from each start. */
export function probeSteps(T: number, B: number, n: number, s: number, horizon: number): number {
  const P = probePrefix(T, B, n, s, horizon);
  return P + (P >= 2 * horizon ? P + horizon : P >= horizon ? P : 0);
}

/**
 * What 'auto' needs to know before any Newton work, from a sequential prefix of P steps — T/16, or
 * two budgets (2·`horizon`) if that is more, at least 16, at most T and what PROBE_FLOATS Jacobian
 * entries hold —, per batch row:
 *
 * - the largest Lyapunov exponent: power iteration with the row's exact Jacobians, block by
 *   block, averaged after a burn-in of P/4 steps (not estimated from fewer than
 *   MIN_EXPONENT_STEPS steps after it);
 * - the nonlinear memory (when P ≥ `horizon`): from the start and, where P ≥ 2·horizon, from
 *   P − horizon too, the prefix's rest run again from the true state plus a fixed pseudo-random ±1
 *   per entry, its distance from the true prefix compared with the perturbation carried by the
 *   Jacobians; the larger of the two. Far from the solution a Newton method's linear model is
 *   wrong, so it carries what it knows about one step per iteration, like a fixed-point sweep: a
 *   row that remembers a wrong state for longer than Newton's budget cannot converge in it,
 *   whatever its exponent (a multistable, saturated network is contractive along its trajectory
 *   and can still hold a wrong state for hundreds of steps). A linear recurrence, however slowly it
 *   forgets, has none: the Jacobians predict its perturbation exactly, and Newton solves it in one
 *   step.
 *
 * Costs 2P + horizon sequential steps (about 1/8 of a pass for long T; 1/4 at T = 2000 with the
 * default budget of 100) and one read of P Jacobians and three prefixes; the prefix is handed on,
 * so that where every row goes to sequential evaluation its P steps are not run twice. Where every
 * row comes out chaotic the memory is not measured (no Newton work follows): the probe then costs
 * one read of P Jacobians and their walk on the host beyond the sequential pass.
 */
export function* probeDynamics(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  lengths: Uint32Array | undefined,
  horizon: number,
): Solve<DynamicsProbe> {
  const [B, T] = [x.shape[0]!, x.shape[1]!];
  const n = cell.stateSize;
  const s = cell.exactBlockSize;
  const P = probePrefix(T, B, n, s, horizon);
  const xs = P < T ? backend.sliceTime(x, 0, P) : x;
  const program = cell.stepProgram();
  let yP: Tensor | undefined;
  try {
    yP = backend.runSequential(program, { input: xs, y0, params });
    let J: Tensor;
    const yPrev = backend.shiftTime(yP, y0, 1);
    try {
      const lin = backend.runStep(cell.linearizeProgram(s), { state: yPrev, input: xs, params });
      backend.dispose(lin.outputs[0]!);
      J = lin.jacobian!;
    } finally {
      backend.dispose(yPrev);
    }
    let jh: ArrayLike<number>;
    try {
      jh = yield* readTensor(J);
    } finally {
      backend.dispose(J);
    }
    const rowLength = (b: number) => Math.min(P, lengths ? lengths[b]! : P);
    const lyapunov = Float64Array.from({ length: B }, (_, b) => largestExponent(jh, b, rowLength(b), P, n, s));
    /** The nonlinear memory of every row (see above), from the true prefix yP. */
    const measureMemory = function* (yP: Tensor): Solve<Uint32Array> {
      const starts = P >= 2 * horizon ? [0, P - horizon] : [0];
      const yTrue = yield* readTensor(yP);
      const initial = yield* readTensor(y0);
      const shift = new Rng(0x5eed).uniformArray(B * n);
      const yPert: ArrayLike<number>[] = [];
      for (const t0 of starts) {
        // The true state before t0, perturbed; the prefix's rest from there.
        const at = (i: number) => (t0 === 0 ? initial[i]! : yTrue[(Math.floor(i / n) * P + t0 - 1) * n + (i % n)]!);
        const perturbed = backend.tensor(
          Array.from({ length: B * n }, (_, i) => at(i) + shift[i]!),
          [B, n],
          y0.dtype,
        );
        const xq = t0 === 0 ? xs : backend.sliceTime(x, t0, P - t0);
        try {
          const yQ = backend.runSequential(program, { input: xq, y0: perturbed, params });
          try {
            yPert.push(yield* readTensor(yQ));
          } finally {
            backend.dispose(yQ);
          }
        } finally {
          backend.dispose(perturbed);
          if (xq !== xs) backend.dispose(xq);
        }
      }
      return Uint32Array.from({ length: B }, (_, b) =>
        Math.max(...starts.map((t0, k) => nonlinearMemory(jh, yTrue, yPert[k]!, shift, b, t0, rowLength(b), P, n, s, horizon))),
      );
    };
    // The memory matters only for rows Newton may take on: none where every row is chaotic.
    let memory: Uint32Array | undefined;
    if (P >= horizon && !lyapunov.every((l) => l > CHAOS_THRESHOLD)) memory = yield* measureMemory(yP);
    const prefix = yP;
    yP = undefined;
    return memory ? { lyapunov, memory, prefix } : { lyapunov, prefix };
  } finally {
    if (yP) backend.dispose(yP);
    if (xs !== x) backend.dispose(xs);
  }
}

/**
 * Row b's largest Lyapunov exponent over its first `len` steps (P per row in J): power iteration
 * with its exact Jacobians, block by block, averaged after a burn-in of len/4 steps. A handful of
 * steps says nothing about it (one Jacobian of a contractive GRU can stretch a vector): −∞,
 * unknown, below MIN_EXPONENT_STEPS after the burn-in. Such rows are short enough for Newton to
 * finish in their length anyway.
 */
function largestExponent(jh: ArrayLike<number>, b: number, len: number, P: number, n: number, s: number): number {
  const burn = Math.floor(len / 4);
  let largest = Number.NEGATIVE_INFINITY;
  if (len - burn < MIN_EXPONENT_STEPS) return largest;
  const v = new Float64Array(s);
  const next = new Float64Array(s);
  for (let k = 0; k < n / s; k++) {
    for (let i = 0; i < s; i++) v[i] = 1 + 0.37 * Math.sin(7 * i + 1);
    let logSum = 0;
    let exponent = 0;
    for (let t = 0; t < len; t++) {
      const base = ((b * P + t) * (n / s) + k) * s * s;
      let norm = 0;
      for (let i = 0; i < s; i++) {
        let acc = 0;
        for (let j = 0; j < s; j++) acc += jh[base + i * s + j]! * v[j]!;
        next[i] = acc;
        norm += acc * acc;
      }
      norm = Math.sqrt(norm);
      if (!(norm > 0) || !Number.isFinite(norm)) {
        exponent = norm > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
        break;
      }
      for (let i = 0; i < s; i++) v[i] = next[i]! / norm;
      if (t >= burn) logSum += Math.log(norm);
      exponent = logSum / (len - burn);
    }
    largest = Math.max(largest, exponent);
  }
  return largest;
}

/**
 * Row b's steps, from t0 on (of its first `len`; P steps per row in the true prefix and J, P − t0
 * in the perturbed one), until the perturbed trajectory is, for good, where the Jacobians carry
 * its start's perturbation `shift` (δ_t = J_t δ_{t−1}); horizon + 1 if it is still apart at the end
 * of a stretch at least `horizon` long.
 */
function nonlinearMemory(
  jh: ArrayLike<number>,
  yTrue: ArrayLike<number>,
  yPert: ArrayLike<number>,
  shift: Float64Array,
  b: number,
  t0: number,
  len: number,
  P: number,
  n: number,
  s: number,
  horizon: number,
): number {
  const delta = shift.slice(b * n, (b + 1) * n);
  const next = new Float64Array(n);
  const L = P - t0;
  const steps = Math.max(0, len - t0);
  let last = -1;
  for (let t = 0; t < steps; t++) {
    for (let k = 0; k < n / s; k++) {
      const base = ((b * P + t0 + t) * (n / s) + k) * s * s;
      for (let i = 0; i < s; i++) {
        let acc = 0;
        for (let j = 0; j < s; j++) acc += jh[base + i * s + j]! * delta[k * s + j]!;
        next[k * s + i] = acc;
      }
    }
    delta.set(next);
    for (let i = 0; i < n; i++) {
      const y = yTrue[(b * P + t0 + t) * n + i]!;
      if (!(Math.abs(yPert[(b * L + t) * n + i]! - y - delta[i]!) <= MERGE_TOLERANCE * (1 + Math.abs(y)))) {
        last = t;
        break;
      }
    }
  }
  return last === steps - 1 && steps >= horizon ? horizon + 1 : last + 1;
}
