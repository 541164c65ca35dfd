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
const MERGE_TOLERANCE = 1e-2;

export interface DynamicsProbe {
  /** Per row: the largest Lyapunov exponent per step (> 0: chaotic). */
  readonly lyapunov: Float64Array;
  /**
   * Per row: the nonlinear memory — steps until a trajectory from a perturbed start follows the
   * true one as the linearisation along it predicts (within MERGE_TOLERANCE) for good; horizon + 1
   * where it still had not at the horizon. Absent where the prefix is shorter than the horizon.
   */
  readonly memory?: Uint32Array;
}

/**
 * What 'auto' needs to know before any Newton work, from a sequential prefix of P ≈ T/16 steps (at
 * least 16, at most what PROBE_FLOATS Jacobian entries hold), per batch row:
 *
 * - the largest Lyapunov exponent: power iteration with the row's exact Jacobians, block by
 *   block, averaged after a burn-in of P/4 steps;
 * - the nonlinear memory (when P ≥ `horizon`): the prefix again from h0 plus a fixed pseudo-random
 *   ±1 per entry, its distance from the true prefix compared with the perturbation carried by the
 *   Jacobians. Far from the solution a Newton method's linear model is wrong, so it carries what it
 *   knows about one step per iteration, like a fixed-point sweep: a row that remembers a wrong
 *   state for longer than Newton's budget cannot converge in it, whatever its exponent (a
 *   multistable, saturated network is contractive along its trajectory and can still hold a wrong
 *   state for hundreds of steps). A linear recurrence, however slowly it forgets, has none: the
 *   Jacobians predict its perturbation exactly, and Newton solves it in one step.
 *
 * Costs about 1/8 of a sequential pass and one read of P Jacobians and two prefixes.
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
  // Capped so that the Jacobians read back stay small: at nh = 64 a sixteenth of T = 1e4 was
  // 164 MB, read and walked on the host in more time than the solve it guards (H200).
  const capped = Math.floor(PROBE_FLOATS / Math.max(1, B * n * s));
  const P = Math.min(T, Math.max(16, Math.min(Math.ceil(T / 16), capped)));
  const withMemory = P >= horizon;
  const xs = P < T ? backend.sliceTime(x, 0, P) : x;
  let J: Tensor;
  let yTrue: ArrayLike<number> | undefined;
  let yPert: ArrayLike<number> | undefined;
  let shift: Float64Array | undefined;
  try {
    const program = cell.stepProgram();
    const yP = backend.runSequential(program, { input: xs, y0, params });
    try {
      const yPrev = backend.shiftTime(yP, y0, 1);
      try {
        const lin = backend.runStep(cell.linearizeProgram(s), { state: yPrev, input: xs, params });
        backend.dispose(lin.outputs[0]!);
        J = lin.jacobian!;
      } finally {
        backend.dispose(yPrev);
      }
      if (withMemory) yTrue = yield* readTensor(yP);
    } finally {
      backend.dispose(yP);
    }
    if (withMemory) {
      const start = yield* readTensor(y0);
      shift = new Rng(0x5eed).uniformArray(B * n);
      const perturbed = backend.tensor(
        Array.from(start, (v, i) => v + shift![i]!),
        [B, n],
        y0.dtype,
      );
      try {
        const yQ = backend.runSequential(program, { input: xs, y0: perturbed, params });
        try {
          yPert = yield* readTensor(yQ);
        } finally {
          backend.dispose(yQ);
        }
      } finally {
        backend.dispose(perturbed);
      }
    }
  } finally {
    if (xs !== x) backend.dispose(xs);
  }
  let jh: ArrayLike<number>;
  try {
    jh = yield* readTensor(J);
  } finally {
    backend.dispose(J);
  }
  const lyapunov = new Float64Array(B).fill(Number.NEGATIVE_INFINITY);
  const memory = withMemory ? new Uint32Array(B) : undefined;
  const v = new Float64Array(s);
  const next = new Float64Array(s);
  for (let b = 0; b < B; b++) {
    const len = Math.min(P, lengths ? lengths[b]! : P);
    const burn = Math.floor(len / 4);
    if (len - burn < 1) continue;
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
      lyapunov[b] = Math.max(lyapunov[b]!, exponent);
    }
    if (memory) memory[b] = nonlinearMemory(jh, yTrue!, yPert!, shift!, b, len, P, n, s, horizon);
  }
  return memory ? { lyapunov, memory } : { lyapunov };
}

/**
 * Row b's steps (of its first `len`, P per row in the arrays) until the perturbed trajectory is,
 * for good, where the Jacobians carry its start's perturbation `shift` (δ_t = J_t δ_{t−1});
 * horizon + 1 if it is still apart at the end of a prefix at least `horizon` long.
 */
function nonlinearMemory(
  jh: ArrayLike<number>,
  yTrue: ArrayLike<number>,
  yPert: ArrayLike<number>,
  shift: Float64Array,
  b: number,
  len: number,
  P: number,
  n: number,
  s: number,
  horizon: number,
): number {
  const delta = shift.slice(b * n, (b + 1) * n);
  const next = new Float64Array(n);
  let last = -1;
  for (let t = 0; t < len; t++) {
    for (let k = 0; k < n / s; k++) {
      const base = ((b * P + t) * (n / s) + k) * s * s;
      for (let i = 0; i < s; i++) {
        let acc = 0;
        for (let j = 0; j < s; j++) acc += jh[base + i * s + j]! * delta[k * s + j]!;
        next[k * s + i] = acc;
      }
    }
    delta.set(next);
    for (let i = 0; i < n; i++) {
      const at = (b * P + t) * n + i;
      const y = yTrue[at]!;
      if (!(Math.abs(yPert[at]! - y - delta[i]!) <= MERGE_TOLERANCE * (1 + Math.abs(y)))) {
        last = t;
        break;
      }
    }
  }
  return last === len - 1 && len >= horizon ? horizon + 1 : last + 1;
}
