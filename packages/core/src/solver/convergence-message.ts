import type { StopReason } from './engine.js';

/**
 * What a `ConvergenceError` says of the last Newton step, by the worst row's stop reason. A row
 * that diverged sits at the clip and one that stayed non-finite had its NaN/Inf replaced by 0, so
 * their last max |Δy| is 0 or the clip and says nothing ("last max |Δy| = 0" for a blow-up): for
 * those, what happened instead.
 */
export function lastStepMessage(stopReason: StopReason, residuals: readonly number[], clip: number): string {
  if (stopReason === 'nonFinite') return 'its iterates kept holding NaN/Inf (the recurrence, or a step towards it, overflows)';
  if (stopReason === 'diverged') return `its iterates kept reaching the clip ±${clip}`;
  return `last max |Δy| = ${residuals.at(-1) ?? 'none'}`;
}
