import type { Backend, NewtonUpdate, Tensor } from '../backend/types.js';
import type { IterationInfo } from './options.js';

/** The running statistics of a Newton solve (see DeerStats). */
export interface NewtonProgress {
  iterations: number;
  residuals: number[];
  replaced: number;
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
