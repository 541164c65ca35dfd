import type { Tensor } from '../backend/types.js';
import type { Backend } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { describeStructure, structureFromBlockSize } from '../cell/structure.js';
import { ConvergenceError, ShapeError } from '../errors.js';
import type { DeerStats } from './deer.js';
import { affineExponential, type MatrixOps } from './expm.js';
import { dopri5 } from './ode-sequential.js';
import { type OdeProblem, type PreparedOde, prepareOde, requireMatrixOps } from './ode-inputs.js';
import { acceptIterate } from './newton.js';
import { type DeerOptions, resolveDeerOptions } from './options.js';
import { checkTensor, Owned, type ParamsInput } from './validate.js';

export interface IvpOptions
  extends Pick<DeerOptions, 'atol' | 'rtol' | 'maxIter' | 'jacobian' | 'fallback' | 'clip' | 'onIteration' | 'checkFinite'> {
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

/** @internal The Newton loop on a validated problem; also returns the last interval maps (A). */
export async function solvePrepared(
  backend: MatrixOps,
  field: Cell,
  prep: PreparedOde,
  options: IvpOptions,
  owned: Owned,
): Promise<{ y: Tensor; stats: DeerStats }> {
  const { B, T, y0, params, x } = prep;
  const n = field.stateSize;
  const opts = resolveDeerOptions(field, prep.dtype, { ...options, initialGuess: 'zeros' });
  const s = opts.blockSize;
  const program = field.linearizeProgram(s);
  const y0seq = owned.add(backend.broadcastTime(y0, 1));
  const guess = options.initialGuess ?? 'y0';
  let y: Tensor;
  if (guess === 'y0') y = backend.broadcastTime(y0, T);
  else if (guess === 'zeros') y = backend.zeros([B, T, n], prep.dtype);
  else {
    checkTensor(backend, 'initialGuess', guess);
    if (guess.shape.length !== 3 || guess.shape[0] !== B || guess.shape[1] !== T || guess.shape[2] !== n) {
      throw new ShapeError('initialGuess', `[${B}, ${T}, ${n}]`, `[${guess.shape.join(', ')}]`);
    }
    y = backend.sliceTime(guess, 0, T);
  }
  const stats = {
    iterations: 0,
    residuals: [] as number[],
    converged: false,
    fellBack: false,
    replaced: 0,
    structure: describeStructure(structureFromBlockSize(s, n)),
    exactJacobian: opts.exact,
    windows: 1,
  };
  try {
    for (let it = 1; it <= opts.maxIter; it++) {
      const { A, b } = await intervalMaps(backend, program, prep, y0seq, y, s);
      const raw = backend.scan({ A, c: b, y0, blockSize: s, reverse: false });
      backend.dispose(A);
      backend.dispose(b);
      const update = await acceptIterate(backend, raw, y, opts, stats, options.onIteration, { iteration: it, window: 0, windows: 1 });
      y = update.y;
      if (update.maxScaledDiff <= 1) {
        stats.converged = true;
        break;
      }
    }
  } catch (err) {
    backend.dispose(y);
    throw err;
  }
  if (stats.converged || opts.fallback === 'none') return { y, stats };
  backend.dispose(y);
  if (opts.fallback === 'throw') {
    throw new ConvergenceError(
      `solveIvp: DEER did not converge in ${opts.maxIter} iterations (last max |Δy| = ${stats.residuals.at(-1)})`,
      { ...stats },
    );
  }
  stats.fellBack = true;
  const seq = await dopri5(backend, field, params, y0, prep.grid, x, { atol: opts.atol, rtol: opts.rtol });
  return { y: seq, stats };
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
    const lin = backend.runStep(program, prep.x ? { state: full, input: prep.x, params: prep.params } : { state: full, params: prep.params });
    const F = temps.add(lin.outputs[0]!);
    const J = temps.add(lin.jacobian!);
    const c = temps.add(backend.affineOffset(F, J, full, s));
    const Jsum = temps.add(backend.add(temps.add(backend.sliceTime(J, 0, T)), temps.add(backend.sliceTime(J, 1, T))));
    const csum = temps.add(backend.add(temps.add(backend.sliceTime(c, 0, T)), temps.add(backend.sliceTime(c, 1, T))));
    return await affineExponential(backend, Jsum, csum, prep.dt, 0.5, s);
  } finally {
    temps.dispose();
  }
}
