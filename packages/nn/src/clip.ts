import { describeValue, InvalidArgumentError } from '@deerjs/core';
import { checkFiniteValues, type Params } from './params.js';

/**
 * The global L2 norm as big · ratio: the largest |entry| and the norm of the gradients divided by
 * it (1 ≤ ratio ≤ √count), so that squares of large gradients do not overflow (1e200 has a norm;
 * its square has none). big is NaN or +Inf if some entry is.
 */
function normParts(grads: Readonly<Params>): { big: number; ratio: number } {
  if (grads === null || typeof grads !== 'object' || Array.isArray(grads))
    throw new InvalidArgumentError('gradients', 'an object of arrays by parameter name', describeValue(grads));
  // Math.max carries a NaN through, so `big` is NaN or +Inf exactly when some entry is.
  let big = 0;
  for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) big = Math.max(big, Math.abs(g[i]!));
  if (!Number.isFinite(big) || big === 0) return { big, ratio: 1 };
  let s = 0;
  for (const g of Object.values(grads))
    for (let i = 0; i < g.length; i++) {
      const r = g[i]! / big;
      s += r * r;
    }
  return { big, ratio: Math.sqrt(s) };
}

/** The global L2 norm of all gradients (+Inf past the largest double). NaN or ±Inf if any entry is. */
export function globalNorm(grads: Readonly<Params>): number {
  const { big, ratio } = normParts(grads);
  return big * ratio;
}

/**
 * Scale all gradients in place so their global L2 norm is at most maxNorm. Returns the norm before
 * clipping (what a training log reports). Gradients with NaN or ±Inf are a NonFiniteError: scaling
 * them would hand the optimizer zeros or NaN without a word.
 */
export function clipGradNorm(grads: Params, maxNorm: number): number {
  if (typeof maxNorm !== 'number' || !(maxNorm > 0))
    throw new InvalidArgumentError('clipGradNorm maxNorm', 'a number > 0 (Infinity: no clipping)', String(maxNorm));
  const { big, ratio } = normParts(grads);
  if (!Number.isFinite(big)) for (const [name, g] of Object.entries(grads)) checkFiniteValues(`gradient ${name}`, g);
  const norm = big * ratio;
  if (Number.isFinite(maxNorm) && norm > maxNorm) {
    // maxNorm / norm in two steps: a norm past the largest double (finite entries) is +Inf, and
    // dividing by it had zeroed every gradient.
    const scale = maxNorm / ratio / big;
    for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) g[i]! *= scale;
  }
  return norm;
}
