import type { Backend, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { jacobianInputVjp } from '../cell/jacobian-input-vjp.js';
import { DTypeError, NonFiniteError, StiffAdjointError, TensorStateError, UnsupportedOptionError } from '../errors.js';
import type { MatrixOps } from './expm.js';
import { AbortCheck, signalOption } from './abort.js';
import { asDeviceActivity } from './engine.js';
import { inputVjp, stepVjp, type VjpOptions, vjpSignal } from './grad.js';
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
   * off by about stiffness²/12 relative (1% at 0.3, 8% at 1, orders of magnitude at 10). It does
   * not see a field that moves fast along its trajectory with a small Jacobian (λᵀ∂f/∂θ turning
   * within an interval): there the quadrature can be far off at a small stiffness; refine the grid.
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
  /** `options.signal` cancels it (default: the signal the solve was given). */
  vjp(dy: Tensor, options?: VjpOptions): Promise<IvpGradients>;
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
    const signal = signalOption(options.signal);
    return {
      y,
      stats,
      vjp: async (dy, vjpOptions = {}) => {
        if (released) throw new TensorStateError('solveIvpWithGrad: vjp called after dispose()');
        const abort = new AbortCheck(vjpSignal(vjpOptions, signal, 'solveIvpWithGrad(...).vjp'));
        abort.checkSync();
        checkCotangent(backend, dy, prep.B, prep.T, field.stateSize, prep.dtype);
        // As deerWithGrad's vjp: a NaN in dy would come back as NaN gradients.
        return asDeviceActivity(backend, async () => {
          if (checkFinite) await checkFiniteTensor(backend, 'dy', dy);
          return adjointVjp(ops, field, prep, y, dy, stiff, 'solveIvpWithGrad', abort, window);
        });
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
  options: { readonly stiffAdjoint?: 'refuse' | 'allow' } & VjpOptions = {},
): Promise<IvpGradients> {
  checkOptionNames(options, ['stiffAdjoint', 'signal'], 'ivpVjp');
  const abort = new AbortCheck(signalOption(options.signal));
  abort.checkSync();
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
    return await asDeviceActivity(backend, () => adjointVjp(ops, field, prep, y, dy, stiff, 'ivpVjp', abort));
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
  fn: string,
  abort: AbortCheck,
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
      // λ is scanned at the points this window owns (t0 … t0 + S − 1; the last window owns t_T
      // too); the quadrature covers its intervals, whose ends are the points t0 … t0 + len.
      const S = last ? len + 1 : len;
      await abort.check();
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
        // Between the window's stages as well as between windows: with one window (the default
        // where memory allows) a check per window came only before any work.
        await abort.check();
        if (!Number.isFinite(here)) {
          // NaN fails every comparison: it had passed the stiffness check and come back as NaN
          // gradients (a field whose Jacobian is 0·∞ at the trajectory, like y·√y at y = 0).
          const bad = await backend.findNonFinite(A);
          throw new NonFiniteError(
            `${fn}: the field's Jacobian on the trajectory between grid points ${t0} and ${t0 + len} (the adjoint's interval maps)`,
            bad?.index ?? -1,
            bad?.value ?? here,
          );
        }
        stiffness = Math.max(stiffness, here);
        if (stiffAdjoint === 'refuse' && here > STIFF_ADJOINT_LIMIT)
          throw new StiffAdjointError(here, STIFF_ADJOINT_LIMIT, t0, t0 + len, fn);
        const Apts = last ? cat([A, win.add(backend.zeros([B, 1, n / s, s, s], y.dtype))]) : A;
        const zero = win.add(backend.zeros([B, 1, n], y.dtype));
        const g = t0 === 0 ? cat([zero, slice(dy, 0, S - 1)]) : slice(dy, t0 - 1, S)!;
        const lambda = win.add(backend.scan({ A: Apts, c: g, y0: lambdaNext, blockSize: s, reverse: true }));
        await abort.check();
        // ρ_k = A_kᵀ λ_{k+1}: the adjoint just after t_k, before its jump.
        const rho = win.add(backend.sub(lambda, g));
        // Interval k's ends: ρ_k = λ just after t_k and λ_{k+1} just before t_{k+1}, each times Δ_k/2.
        const after = last ? slice(lambda, 1, len)! : cat([slice(lambda, 1, len - 1), win.add(backend.broadcastTime(lambdaNext, 1))]);
        const steps = dt.subarray(t0, t0 + len);
        const leftEnds = win.add(backend.scaleTime(slice(rho, 0, len)!, steps, 0.5));
        const rightEnds = win.add(backend.scaleTime(after, steps, 0.5));
        // ∂L/∂θ: the trapezoid rule on λᵀ ∂f/∂θ over each interval (the field's θ-derivative at
        // either end with the adjoint there).
        const mu = win.add(backend.add(cat([leftEnds, zero]), cat([zero, rightEnds])));
        const states = cat([startSeq, slice(y, t0, len)]);
        const inputs = prep.x ? win.add(backend.sliceTime(prep.x, t0, len + 1)) : undefined;
        const g2 = stepVjp(backend, field, prep.params, states, inputs, mu);
        if (g2.dState) backend.dispose(g2.dState);
        if (g2.dInput) backend.dispose(g2.dInput);
        for (const [name, t] of Object.entries(g2.params)) {
          const prev = params[name];
          params[name] = prev ? backend.add(prev, t) : t;
          if (prev) {
            backend.dispose(prev);
            backend.dispose(t);
          }
        }
        await abort.check();
        if (inputs && field.vjp.dInput !== null) {
          // ∂L/∂x: x_k moves the field at t_k alone, and interval k carries that into y_{k+1} as
          // Δ_k/2 · φ1(M_k) (each end of the interval the same), so each end of interval k takes
          // Δ_k/2 · φ1(M_k)ᵀ λ_{k+1} = Δ_k/2 ∫₀¹ e^{σM_kᵀ} dσ λ_{k+1}, here by the trapezoid rule:
          // the mean of the two ends' weights above; the θ weights at x_k are not right (their
          // errors cancel between neighbouring intervals only on even grids, and never at t_0 and
          // t_T). Where the Jacobian reads x, the term through it follows.
          const half = win.add(backend.add(leftEnds, rightEnds));
          const u = win.add(backend.scaleTime(half, new Float64Array(len).fill(1), 0.5));
          const muX = win.add(backend.add(cat([u, zero]), cat([zero, u])));
          let dIn = inputVjp(backend, field, prep.params, states, inputs, muX);
          const through = jacobianInputVjp(field);
          if (through) {
            // x_k also moves J_k, and with it J̄ and c̄ = mean(f − J·y) of both intervals at t_k:
            // to leading order y_{k+1} by +Δ_k²/4·δJ_k·f_k and y_k by −Δ_{k−1}²/4·δJ_k·f_k (the
            // O(Δ) parts cancel between J̄ and c̄). Left out, ∂L/∂x was first order at t_0, t_T and
            // on uneven grids wherever the Jacobian reads x. Weight w_k = Δ_k²/4·λ_{k+1} −
            // Δ_{k−1}²/4·λ_k, and the term ∂/∂x [w_kᵀ J(y_k, x_k) f_k].
            let sum: Tensor;
            try {
              const squares = steps.map((d) => d * d);
              const quarter = win.add(backend.scaleTime(after, squares, 0.25));
              const w = win.add(backend.sub(cat([quarter, zero]), cat([zero, quarter])));
              const res = backend.runStep(
                { graph: through.graph, outputs: [through.dx, through.ju] },
                { state: states, input: inputs, cotangent: w, params: prep.params },
              );
              const [both, ju] = res.outputs.map((t) => win.add(t));
              const alongF = win.add(inputVjp(backend, field, prep.params, states, inputs, ju!));
              sum = backend.add(dIn, win.add(backend.sub(both!, alongF)));
            } finally {
              backend.dispose(dIn);
            }
            dIn = sum;
          }
          // Point t0 + len is shared with the window after this one (already done): its share
          // from this window's last interval is added to that window's first point.
          const later = dxPieces[0];
          if (later === undefined) dxPieces.unshift(dIn);
          else {
            try {
              const sum = win.add(backend.add(win.add(backend.timeStep(later, 0)), win.add(backend.timeStep(dIn, len))));
              const T2 = later.shape[1]!;
              dxPieces[0] =
                T2 > 1
                  ? backend.concatTime([win.add(backend.broadcastTime(sum, 1)), win.add(backend.sliceTime(later, 1, T2 - 1))])
                  : backend.broadcastTime(sum, 1);
              backend.dispose(later);
              dxPieces.unshift(backend.sliceTime(dIn, 0, len));
            } finally {
              backend.dispose(dIn);
            }
          }
        }
        lambdaNext = temps.add(backend.timeStep(lambda, 0));
        if (t0 === 0) y0grad = backend.timeStep(lambda, 0);
      } finally {
        win.dispose();
      }
    }
    // A field with inputs that it does not read still has ∂L/∂x: zeros, as deerWithGrad gives.
    const x =
      dxPieces.length === 0
        ? prep.x
          ? backend.zeros(prep.x.shape, prep.x.dtype)
          : undefined
        : dxPieces.length === 1
          ? dxPieces[0]!
          : backend.concatTime(dxPieces);
    if (dxPieces.length > 1) for (const t of dxPieces) backend.dispose(t);
    dxPieces.length = 0;
    const out: IvpGradients = x ? { params, y0: y0grad!, x, stiffness } : { params, y0: y0grad!, stiffness };
    // A NaN or ∞ in the field's derivatives on the trajectory (finite y, but 0·∞ in J or ∂f/∂θ)
    // reaches the gradients whatever the stiffness says: refused, not returned.
    for (const [what, t] of [...Object.entries(params).map(([k, v]) => [`∂L/∂${k}`, v] as const), ['∂L/∂y0', out.y0] as const, ...(x ? [['∂L/∂x', x] as const] : [])]) {
      const bad = await backend.findNonFinite(t);
      if (bad) {
        if (x) backend.dispose(x); // params and y0 go in the catch below
        throw new NonFiniteError(`${fn}: ${what} (the field's derivatives are not finite on the trajectory)`, bad.index, bad.value);
      }
    }
    return out;
  } catch (err) {
    for (const t of [...Object.values(params), ...dxPieces]) backend.dispose(t);
    if (y0grad) backend.dispose(y0grad);
    throw err;
  } finally {
    temps.dispose();
  }
}
