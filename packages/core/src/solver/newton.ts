import type { Backend, NewtonUpdate, Tensor } from '../backend/types.js';
import { ConvergenceError } from '../errors.js';
import type { IterationInfo } from './options.js';

/** The running statistics of a Newton solve (see DeerStats). */
export interface NewtonProgress {
  iterations: number;
  residuals: number[];
  replaced: number;
}

/** What a solve needs read before it can go on: the sanitized new iterate and its change. */
export interface UpdateRequest {
  readonly raw: Tensor;
  readonly previous: Tensor;
}

/** Run a solve generator, answering each read request asynchronously. */
export async function driveAsync<R>(
  solve: Generator<UpdateRequest, R, NewtonUpdate>,
  read: (request: UpdateRequest) => Promise<NewtonUpdate>,
): Promise<R> {
  let step = solve.next();
  while (!step.done) {
    let update: NewtonUpdate;
    try {
      update = await read(step.value);
    } catch (err) {
      // Raised inside the generator at its read, so it disposes what it holds.
      step = solve.throw(err);
      continue;
    }
    step = solve.next(update);
  }
  return step.value;
}

/** Run a solve generator, answering each read request synchronously. */
export function driveSync<R>(
  solve: Generator<UpdateRequest, R, NewtonUpdate>,
  read: (request: UpdateRequest) => NewtonUpdate,
): R {
  let step = solve.next();
  while (!step.done) {
    let update: NewtonUpdate;
    try {
      update = read(step.value);
    } catch (err) {
      step = solve.throw(err);
      continue;
    }
    step = solve.next(update);
  }
  return step.value;
}

/**
 * What happens to an iterate when Newton ran out of iterations: 'none' returns it, 'throw' raises
 * a ConvergenceError, 'sequential' disposes it and returns null for the caller's sequential solve.
 * The statistics say which.
 */
export function unconverged(
  backend: Backend,
  y: Tensor,
  opts: { maxIter: number; atol: number; rtol: number; fallback: 'sequential' | 'throw' | 'none' },
  stats: NewtonProgress & { converged: boolean; fellBack: boolean },
  solver: string,
): Tensor | null {
  stats.converged = false;
  if (opts.fallback === 'none') return y;
  backend.dispose(y);
  if (opts.fallback === 'throw') {
    throw new ConvergenceError(
      `${solver} did not converge in ${opts.maxIter} iterations (last max |Δy| = ${stats.residuals.at(-1)}, atol ${opts.atol}, rtol ${opts.rtol})`,
      { ...stats },
    );
  }
  stats.fellBack = true;
  return null;
}

/** Record an accepted Newton iteration in the statistics and report progress. */
export function recordIteration(
  progress: NewtonProgress,
  update: NewtonUpdate,
  report: ((info: IterationInfo) => void) | undefined,
  where: { iteration: number; window: number; windows: number },
): void {
  progress.iterations++;
  progress.residuals.push(update.maxAbsDiff);
  progress.replaced += update.replaced;
  report?.({ ...where, maxAbsDiff: update.maxAbsDiff, maxScaledDiff: update.maxScaledDiff });
}

/**
 * Accept a raw Newton iterate: sanitize it and measure its change against the previous iterate
 * (one small read), dispose both inputs, record the iteration and report progress.
 */
export async function acceptIterate(
  backend: Backend,
  raw: Tensor,
  previous: Tensor,
  tol: { atol: number; rtol: number; clip: number },
  progress: NewtonProgress,
  report: ((info: IterationInfo) => void) | undefined,
  where: { iteration: number; window: number; windows: number },
): Promise<NewtonUpdate> {
  let update: NewtonUpdate;
  try {
    update = await backend.newtonUpdate(raw, previous, tol);
  } finally {
    backend.dispose(raw);
  }
  backend.dispose(previous);
  recordIteration(progress, update, report, where);
  return update;
}
