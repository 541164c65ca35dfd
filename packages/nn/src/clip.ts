import type { Params } from './params.js';

/** The global L2 norm of all gradients. */
export function globalNorm(grads: Readonly<Params>): number {
  let s = 0;
  for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/**
 * Scale all gradients in place so their global L2 norm is at most maxNorm. Returns the norm before
 * clipping (what a training log reports).
 */
export function clipGradNorm(grads: Params, maxNorm: number): number {
  const norm = globalNorm(grads);
  if (Number.isFinite(maxNorm) && maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / norm;
    for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) g[i]! *= scale;
  }
  return norm;
}
