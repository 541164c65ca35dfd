import type { Tensor } from '../backend/types.js';
import { type Backend, DTYPE_BYTES } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { describeStructure, structureFromBlockSize } from '../cell/structure.js';
import { chooseWindow, type DeerStats } from './deer.js';
import { affineExponential, type MatrixOps } from './expm.js';
import { acceptIterate, unconverged } from './newton.js';
import { type OdeProblem, type PreparedOde, prepareOde, requireMatrixOps } from './ode-inputs.js';
import { dopri5 } from './ode-sequential.js';
import { type DeerOptions, resolveDeerOptions } from './options.js';
import { checkTrajectory, Owned, type ParamsInput } from './validate.js';

export interface IvpOptions
  extends Pick<
    DeerOptions,
    'atol' | 'rtol' | 'maxIter' | 'jacobian' | 'fallback' | 'clip' | 'onIteration' | 'checkFinite' | 'window'
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
  const ops = requireMatrixOps(backend);
  const owned = new Owned(backend);
  try {
    const checkFinite = options.checkFinite ?? true;
    const prep = await prepareOde(backend, field, params, problem, undefined, owned, checkFinite);
    const solved = await solvePrepared(ops, field, prep, options, owned);
    return { y: solved.y, stats: solved.stats };
  } finally {
    owned.dispose();
  }
}

/**
 * @internal The Newton loop on a validated problem, in windows of grid intervals when the
 * Jacobians of all grid points would not fit a buffer (or `window` is set): each window starts
 * from the last state of the one before.
 */
export async function solvePrepared(
  backend: MatrixOps,
  field: Cell,
  prep: PreparedOde,
  options: IvpOptions,
  owned: Owned,
): Promise<{ y: Tensor; stats: DeerStats }> {
  const { B, T } = prep;
  const n = field.stateSize;
  const opts = resolveDeerOptions(field, prep.dtype, { ...options, initialGuess: 'zeros' });
  const s = opts.blockSize;
  const guess = options.initialGuess ?? 'y0';
  if (typeof guess === 'object') checkTrajectory(backend, 'initialGuess', guess, B, T, n);
  // A window of W intervals evaluates Jacobians at its W + 1 grid points.
  const W = opts.window ?? Math.max(1, chooseWindow(backend, B, T + 1, n, s, DTYPE_BYTES[prep.dtype]) - 1);
  const windows = Math.ceil(T / W);
  const stats = {
    iterations: 0,
    residuals: [] as number[],
    converged: true,
    fellBack: false,
    replaced: 0,
    structure: describeStructure(structureFromBlockSize(s, n)),
    exactJacobian: opts.exact,
    windows,
  };
  const pieces: Tensor[] = [];
  let start = prep.y0;
  try {
    for (let w = 0; w < windows; w++) {
      const t0 = w * W;
      const len = Math.min(W, T - t0);
      const sub: PreparedOde =
        windows === 1
          ? prep
          : {
              ...prep,
              T: len,
              grid: prep.grid.subarray(t0, t0 + len + 1),
              dt: prep.dt.subarray(t0, t0 + len),
              y0: start,
              x: prep.x ? owned.add(backend.sliceTime(prep.x, t0, len + 1)) : undefined,
            };
      const first =
        guess === 'y0'
          ? backend.broadcastTime(start, len)
          : guess === 'zeros'
            ? backend.zeros([B, len, n], prep.dtype)
            : backend.sliceTime(guess, t0, len);
      const yw = await solveOdeWindow(backend, field, sub, opts, options, stats, first, w, windows, owned);
      pieces.push(yw);
      if (w + 1 < windows) start = owned.add(backend.timeStep(yw, len - 1));
    }
  } catch (err) {
    for (const t of pieces) backend.dispose(t);
    throw err;
  }
  if (pieces.length === 1) return { y: pieces[0]!, stats };
  const y = backend.concatTime(pieces);
  for (const t of pieces) backend.dispose(t);
  return { y, stats };
}

async function solveOdeWindow(
  backend: MatrixOps,
  field: Cell,
  prep: PreparedOde,
  opts: ReturnType<typeof resolveDeerOptions>,
  options: IvpOptions,
  stats: { iterations: number; residuals: number[]; converged: boolean; fellBack: boolean; replaced: number },
  first: Tensor,
  window: number,
  windows: number,
  owned: Owned,
): Promise<Tensor> {
  const s = opts.blockSize;
  const program = field.linearizeProgram(s);
  const y0seq = owned.add(backend.broadcastTime(prep.y0, 1));
  let y = first;
  let converged = false;
  try {
    for (let it = 1; it <= opts.maxIter; it++) {
      const { A, b } = await intervalMaps(backend, program, prep, y0seq, y, s);
      const raw = backend.scan({ A, c: b, y0: prep.y0, blockSize: s, reverse: false });
      backend.dispose(A);
      backend.dispose(b);
      const update = await acceptIterate(backend, raw, y, opts, stats, options.onIteration, {
        iteration: it,
        window,
        windows,
      });
      y = update.y;
      if (update.maxScaledDiff <= 1) {
        converged = true;
        break;
      }
    }
  } catch (err) {
    backend.dispose(y);
    throw err;
  }
  if (converged) return y;
  return (
    unconverged(backend, y, opts, stats, 'solveIvp: DEER') ??
    (await dopri5(backend, field, prep.params, prep.y0, prep.grid, prep.x, {
      atol: opts.atol,
      rtol: opts.rtol,
    }))
  );
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
): Promise<{ A: Tensor; b: Tensor }> {
  const T = prep.T;
  const temps = new Owned(backend);
  try {
    const full = temps.add(backend.concatTime([y0seq, y]));
    const lin = backend.runStep(
      program,
      prep.x ? { state: full, input: prep.x, params: prep.params } : { state: full, params: prep.params },
    );
    const F = temps.add(lin.outputs[0]!);
    const J = temps.add(lin.jacobian!);
    const c = temps.add(backend.affineOffset(F, J, full, s));
    const Jsum = temps.add(
      backend.add(temps.add(backend.sliceTime(J, 0, T)), temps.add(backend.sliceTime(J, 1, T))),
    );
    const csum = temps.add(
      backend.add(temps.add(backend.sliceTime(c, 0, T)), temps.add(backend.sliceTime(c, 1, T))),
    );
    return await affineExponential(backend, Jsum, csum, prep.dt, 0.5, s);
  } finally {
    temps.dispose();
  }
}
