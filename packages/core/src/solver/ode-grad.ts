import type { Backend, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { DTypeError, StiffAdjointError, TensorStateError, UnsupportedOptionError } from '../errors.js';
import type { MatrixOps } from './expm.js';
import { stepVjp } from './grad.js';
import {
  IVP_OPTION_NAMES,
  type IvpOptions,
  type IvpResult,
  intervalMaps,
  ODE_PEAK_JACOBIANS,
  solvePrepared,
} from './ode.js';
import { type OdeProblem, type PreparedOde, prepareOde, requireMatrixOps } from './ode-inputs.js';
import { checkOptionNames, flag } from './options.js';
import { checkCotangent, checkFiniteTensor, checkTensor, checkTrajectory, Owned, type ParamsInput } from './validate.js';
import { chooseWindow } from './window.js';

/** The largest entry of J̄·Δt above which the adjoint's quadrature is refused unless `stiffAdjoint: 'allow'`. */
export const STIFF_ADJOINT_LIMIT = 1;

export interface IvpGradOptions extends IvpOptions {
  /**
   * Where an entry of J̄·Δt on some interval exceeds STIFF_ADJOINT_LIMIT (1), the trapezoid rule
   * that gives ∂L/∂θ and ∂L/∂x is off by ~8% (at 1) to orders of magnitude (stiff intervals):
   * 'refuse' (default) throws StiffAdjointError from `vjp`; 'allow' returns those gradients anyway.
   */
  readonly stiffAdjoint?: 'refuse' | 'allow';
}

export interface IvpGradients {
  /** ∂L/∂θ per parameter. */
  readonly params: Record<string, Tensor>;
  /** ∂L/∂y0, [B, n]. */
  readonly y0: Tensor;
  /** ∂L/∂x on the grid, [B, T + 1, m] (absent for fields without inputs). */
  readonly x?: Tensor;
  /**
   * The largest entry of J̄·Δt over the intervals (J̄ the interval's mean Jacobian): a rate times a
   * step. For a mode decaying or turning at that rate, the trapezoid rule for ∂L/∂θ and ∂L/∂x is
   * off by about stiffness²/12 relative (1% at 0.3, 8% at 1, orders of magnitude at 10).
   */
  readonly stiffness: number;
}

const STIFF_ADJOINT = ['refuse', 'allow'] as const;

function stiffAdjointOption(value: unknown): 'refuse' | 'allow' {
  if (value === undefined) return 'refuse';
  if (!STIFF_ADJOINT.includes(value as 'refuse')) throw new UnsupportedOptionError('stiffAdjoint', value, "'refuse' or 'allow'");
  return value as 'refuse' | 'allow';
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
  options: IvpGradOptions = {},
): Promise<IvpGradResult> {
  checkOptionNames(options, [...IVP_OPTION_NAMES, 'stiffAdjoint'], 'solveIvpWithGrad');
  const { stiffAdjoint: stiffOption, ...solveOptions } = options;
  const stiff = stiffAdjointOption(stiffOption);
  const ops = requireMatrixOps(backend);
  const owned = new Owned(backend);
  let released = false;
  try {
    const checkFinite = flag('checkFinite', options.checkFinite, true);
    const prep = await prepareOde(backend, field, params, problem, undefined, owned, checkFinite);
    const { y, stats } = await solvePrepared(ops, field, prep, solveOptions);
    const window = options.window; // as given now, not as the options object holds it later
    return {
      y,
      stats,
      vjp: async (dy) => {
        if (released) throw new TensorStateError('solveIvpWithGrad: vjp called after dispose()');
        checkCotangent(backend, dy, prep.B, prep.T, field.stateSize, prep.dtype);
        // As deerWithGrad's vjp: a NaN in dy would come back as NaN gradients.
        if (checkFinite) await checkFiniteTensor(backend, 'dy', dy);
        return adjointVjp(ops, field, prep, y, dy, stiff, window);
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
  options: { readonly stiffAdjoint?: 'refuse' | 'allow' } = {},
): Promise<IvpGradients> {
  checkOptionNames(options, ['stiffAdjoint'], 'ivpVjp');
  const stiff = stiffAdjointOption(options.stiffAdjoint);
  const ops = requireMatrixOps(backend);
  const owned = new Owned(backend);
  try {
    // Checked as solveIvpWithGrad's vjp checks dy: shapes, the solve's dtype, and finite values
    // (a NaN anywhere would come back as NaN gradients).
    const prep = await prepareOde(backend, field, params, problem, checkTensor(backend, 'y', y).dtype, owned, true);
    for (const [what, t] of [
      ['y', y],
      ['dy', dy],
    ] as const) {
      checkTrajectory(backend, what, t, prep.B, prep.T, field.stateSize);
      if (t.dtype !== prep.dtype) throw new DTypeError(what, `${prep.dtype} (the dtype of y)`, t.dtype);
      await checkFiniteTensor(backend, what, t);
    }
    return await adjointVjp(ops, field, prep, y, dy, stiff);
  } finally {
    owned.dispose();
  }
}

/**
 * The adjoint over the T + 1 grid points, λ_k = g_k + A_kᵀ λ_{k+1} (g_k = dy at point k, g_0 = 0,
 * A_T = 0), in windows of intervals from the last to the first, each seeded with λ at the first
 * point of the window after it; then the trapezoid rule for ∂L/∂θ through the step VJPs.
 */
async function adjointVjp(
  backend: MatrixOps,
  field: Cell,
  prep: PreparedOde,
  y: Tensor,
  dy: Tensor,
  stiffAdjoint: 'refuse' | 'allow',
  window?: number,
): Promise<IvpGradients> {
  const { B, T, dt } = prep;
  const n = field.stateSize;
  const s = field.exactBlockSize;
  const program = field.linearizeProgram(s);
  const W =
    window ??
    chooseWindow(backend, {
      B,
      T,
      n,
      s,
      dtype: y.dtype,
      extra: 1,
      jacobians: ODE_PEAK_JACOBIANS,
      lastHasExtra: true,
    });
  const temps = new Owned(backend);
  const params: Record<string, Tensor> = {};
  const dxPieces: Tensor[] = [];
  let y0grad: Tensor | undefined;
  let stiffness = 0;
  try {
    let lambdaNext = temps.add(backend.zeros([B, n], y.dtype));
    for (let t0 = Math.floor((T - 1) / W) * W; t0 >= 0; t0 -= W) {
      const len = Math.min(W, T - t0);
      const last = t0 + len === T;
      const P = last ? len + 1 : len; // grid points t0 … t0 + P − 1 belong to this window
      const win = new Owned(backend);
      try {
        const cat = (parts: (Tensor | null)[]) => {
          const list = parts.filter((t): t is Tensor => t !== null);
          return list.length === 1 ? list[0]! : win.add(backend.concatTime(list));
        };
        const slice = (t: Tensor, from: number, length: number) =>
          length < 1 ? null : win.add(backend.sliceTime(t, from, length));
        const start = t0 === 0 ? prep.y0 : win.add(backend.timeStep(y, t0 - 1));
        const startSeq = win.add(backend.broadcastTime(start, 1));
        const sub: PreparedOde = {
          ...prep,
          T: len,
          grid: prep.grid.subarray(t0, t0 + len + 1),
          dt: dt.subarray(t0, t0 + len),
          y0: start,
          x: prep.x ? win.add(backend.sliceTime(prep.x, t0, len + 1)) : undefined,
        };
        const { A, b, stiffness: here } = await intervalMaps(
          backend,
          program,
          sub,
          startSeq,
          win.add(backend.sliceTime(y, t0, len)),
          s,
        );
        win.add(A);
        win.add(b);
        stiffness = Math.max(stiffness, here);
        if (stiffAdjoint === 'refuse' && here > STIFF_ADJOINT_LIMIT)
          throw new StiffAdjointError(here, STIFF_ADJOINT_LIMIT, t0, t0 + len);
        const Apts = last ? cat([A, win.add(backend.zeros([B, 1, n / s, s, s], y.dtype))]) : A;
        const g =
          t0 === 0
            ? cat([win.add(backend.zeros([B, 1, n], y.dtype)), slice(dy, 0, P - 1)])
            : slice(dy, t0 - 1, P)!;
        const lambda = win.add(backend.scan({ A: Apts, c: g, y0: lambdaNext, blockSize: s, reverse: true }));
        // ρ_k = A_kᵀ λ_{k+1}: the adjoint just after t_k, before its jump.
        const ones = new Float64Array(P).fill(1);
        const rho = win.add(backend.add(lambda, win.add(backend.scaleTime(g, ones, -1))));
        // Trapezoid on interval k: Δ_k/2 (ρ_k at its left end, λ_{k+1} at its right end).
        const left = new Float64Array(P);
        const right = new Float64Array(P);
        for (let q = 0; q < P; q++) {
          const k = t0 + q;
          if (k < T) left[q] = dt[k]!;
          if (k > 0) right[q] = dt[k - 1]!;
        }
        const mu = win.add(
          backend.add(
            win.add(backend.scaleTime(rho, left, 0.5)),
            win.add(backend.scaleTime(lambda, right, 0.5)),
          ),
        );
        const states = cat([startSeq, slice(y, t0, P - 1)]);
        const inputs = prep.x ? win.add(backend.sliceTime(prep.x, t0, P)) : undefined;
        const g2 = stepVjp(backend, field, prep.params, states, inputs, mu);
        if (g2.dState) backend.dispose(g2.dState);
        for (const [name, t] of Object.entries(g2.params)) {
          const prev = params[name];
          params[name] = prev ? backend.add(prev, t) : t;
          if (prev) {
            backend.dispose(prev);
            backend.dispose(t);
          }
        }
        if (g2.dInput) dxPieces.unshift(g2.dInput);
        lambdaNext = temps.add(backend.timeStep(lambda, 0));
        if (t0 === 0) y0grad = backend.timeStep(lambda, 0);
      } finally {
        win.dispose();
      }
    }
    const x =
      dxPieces.length === 0 ? undefined : dxPieces.length === 1 ? dxPieces[0]! : backend.concatTime(dxPieces);
    if (dxPieces.length > 1) for (const t of dxPieces) backend.dispose(t);
    dxPieces.length = 0;
    return x ? { params, y0: y0grad!, x, stiffness } : { params, y0: y0grad!, stiffness };
  } catch (err) {
    for (const t of [...Object.values(params), ...dxPieces]) backend.dispose(t);
    if (y0grad) backend.dispose(y0grad);
    throw err;
  } finally {
    temps.dispose();
  }
}
