import { checkFiniteValues, type Params } from './params.js';

/**
 * The global L2 norm of all gradients, scaled by the largest entry so that squares of large
 * gradients do not overflow (1e200 has a norm; its square has none). NaN or ±Inf if any entry is.
 */
export function globalNorm(grads: Readonly<Params>): number {
  // Math.max carries a NaN through, so `big` is NaN or +Inf exactly when some entry is.
  let big = 0;
  for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) big = Math.max(big, Math.abs(g[i]!));
  if (!Number.isFinite(big) || big === 0) return big;
  let s = 0;
  for (const g of Object.values(grads))
    for (let i = 0; i < g.length; i++) {
      const r = g[i]! / big;
      s += r * r;
    }
  return big * Math.sqrt(s);
}

/**
 * Scale all gradients in place so their global L2 norm is at most maxNorm. Returns the norm before
 * clipping (what a training log reports). Gradients with NaN or ±Inf are a NonFiniteError: scaling
 * them would hand the optimizer zeros or NaN without a word.
 */
export function clipGradNorm(grads: Params, maxNorm: number): number {
  const norm = globalNorm(grads);
  if (!Number.isFinite(norm)) for (const [name, g] of Object.entries(grads)) checkFiniteValues(`gradient ${name}`, g);
  if (Number.isFinite(maxNorm) && maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / norm;
    for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) g[i]! *= scale;
  }
  return norm;
}
