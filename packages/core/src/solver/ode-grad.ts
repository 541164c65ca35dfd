import type { Backend, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { ShapeError, TensorStateError } from '../errors.js';
import { stepVjp } from './grad.js';
import type { MatrixOps } from './expm.js';
import { type IvpOptions, type IvpResult, intervalMaps, solvePrepared } from './ode.js';
import { type OdeProblem, type PreparedOde, prepareOde, requireMatrixOps } from './ode-inputs.js';
import { checkTensor, Owned, type ParamsInput } from './validate.js';

export interface IvpGradients {
  /** ∂L/∂θ per parameter. */
  readonly params: Record<string, Tensor>;
  /** ∂L/∂y0, [B, n]. */
  readonly y0: Tensor;
  /** ∂L/∂x on the grid, [B, T + 1, m] (absent for fields without inputs). */
  readonly x?: Tensor;
}

export interface IvpGradResult extends IvpResult {
  /** Gradients of L given dy = ∂L/∂y ([B, T, n]); the caller owns the returned tensors. */
  vjp(dy: Tensor): Promise<IvpGradients>;
  /** Release y and what was kept for `vjp`. */
  dispose(): void;
}

/**
 * `solveIvp` with gradients by the adjoint method on the same discretisation: the adjoint
 * λ' = −Jᵀλ (jumping by dy at every grid time) is chained backwards with the transposed interval
 * maps — the forward scan's exponentials, reversed — and ∂L/∂θ = ∫ λᵀ ∂f/∂θ dt by the trapezoidal
 * rule on every interval. Consistent with the forward scheme to second order in the step.
 */
export async function solveIvpWithGrad(
  backend: Backend,
  field: Cell,
  params: ParamsInput,
  problem: OdeProblem,
  options: IvpOptions = {},
): Promise<IvpGradResult> {
  const ops = requireMatrixOps(backend);
  const owned = new Owned(backend);
  let released = false;
  try {
    const prep = await prepareOde(backend, field, params, problem, undefined, owned, options.checkFinite ?? true);
    const { y, stats } = await solvePrepared(ops, field, prep, options, owned);
    return {
      y,
      stats,
      vjp: async (dy) => {
        if (released) throw new TensorStateError('solveIvpWithGrad: vjp called after dispose()');
        checkTensor(backend, 'dy', dy);
        const n = field.stateSize;
        if (dy.shape.length !== 3 || dy.shape[0] !== prep.B || dy.shape[1] !== prep.T || dy.shape[2] !== n) {
          throw new ShapeError('dy', `[${prep.B}, ${prep.T}, ${n}]`, `[${dy.shape.join(', ')}]`);
        }
        return adjointVjp(ops, field, prep, y, dy);
      },
      dispose: () => {
        if (released) return;
        released = true;
        backend.dispose(y);
        owned.dispose();
      },
    };
  } catch (err) {
    owned.dispose();
    throw err;
  }
}

/**
 * Adjoint gradients of L at any trajectory y of the problem (e.g. one from `dopri5` or `rk4`):
 * what `solveIvpWithGrad(...).vjp` computes, for callers that solved by other means.
 */
export async function ivpVjp(
  backend: Backend,
  field: Cell,
  params: ParamsInput,
  problem: OdeProblem,
  y: Tensor,
  dy: Tensor,
): Promise<IvpGradients> {
  const ops = requireMatrixOps(backend);
  const owned = new Owned(backend);
  try {
    const prep = await prepareOde(backend, field, params, problem, undefined, owned, false);
    const n = field.stateSize;
    for (const [what, t] of [
      ['y', y],
      ['dy', dy],
    ] as const) {
      checkTensor(backend, what, t);
      if (t.shape.length !== 3 || t.shape[0] !== prep.B || t.shape[1] !== prep.T || t.shape[2] !== n) {
        throw new ShapeError(what, `[${prep.B}, ${prep.T}, ${n}]`, `[${t.shape.join(', ')}]`);
      }
    }
    return await adjointVjp(ops, field, prep, y, dy);
  } finally {
    owned.dispose();
  }
}

async function adjointVjp(backend: MatrixOps, field: Cell, prep: PreparedOde, y: Tensor, dy: Tensor): Promise<IvpGradients> {
  const { B, T, dt } = prep;
  const n = field.stateSize;
  const s = field.exactBlockSize;
  const temps = new Owned(backend);
  try {
    const y0seq = temps.add(backend.broadcastTime(prep.y0, 1));
    const { A, b } = await intervalMaps(backend, field.linearizeProgram(s), prep, y0seq, y, s);
    temps.add(A);
    temps.add(b);
    // Over the T + 1 grid points: λ_k = g_k + A_kᵀ λ_{k+1}, with A_T = 0 and g_0 = 0.
    const Afull = temps.add(backend.concatTime([A, temps.add(backend.zeros([B, 1, n / s, s, s], y.dtype))]));
    const gfull = temps.add(backend.concatTime([temps.add(backend.zeros([B, 1, n], y.dtype)), dy]));
    const zeros = temps.add(backend.zeros([B, n], y.dtype));
    const lambda = temps.add(backend.scan({ A: Afull, c: gfull, y0: zeros, blockSize: s, reverse: true }));
    // ρ_k = A_kᵀ λ_{k+1}: the adjoint just after t_k, before its jump.
    const ones = new Float64Array(T + 1).fill(1);
    const rho = temps.add(backend.add(lambda, temps.add(backend.scaleTime(gfull, ones, -1))));
    // Trapezoid on interval k: Δ_k/2 (ρ_k at its left end, λ_{k+1} at its right end).
    const left = new Float64Array(T + 1);
    const right = new Float64Array(T + 1);
    for (let k = 0; k < T; k++) {
      left[k] = dt[k]!;
      right[k + 1] = dt[k]!;
    }
    const mu = temps.add(
      backend.add(temps.add(backend.scaleTime(rho, left, 0.5)), temps.add(backend.scaleTime(lambda, right, 0.5))),
    );
    const full = temps.add(backend.concatTime([y0seq, y]));
    const { dState, dInput, params } = stepVjp(backend, field, prep.params, full, prep.x, mu);
    if (dState) backend.dispose(dState);
    const y0grad = backend.timeStep(lambda, 0);
    return dInput ? { params, y0: y0grad, x: dInput } : { params, y0: y0grad };
  } finally {
    temps.dispose();
  }
}
