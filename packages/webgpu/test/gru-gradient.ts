import { type Backend, cells, deerWithGrad, type JacobianOption, Rng } from '@deerjs/core';

/**
 * deer and its gradient (a VJP with seeded dy) of a GRU (input size 2, params seed 5, x and dy
 * from Rng(8) and Rng(9)) on `be`: y, ∂/∂x, ∂/∂h0 read back, and whether Newton converged. Tests
 * run it on two backends whose kernels differ and compare with `worstRelative`.
 */
export async function gruWithGradient(be: Backend, n: number, B: number, T: number, jacobian: JacobianOption = 'auto') {
  const cell = cells.gru({ inputSize: 2, hiddenSize: n });
  const params = cell.init({ seed: 5 });
  const x = be.tensor(Float32Array.from(new Rng(8).normalArray(B * T * 2)), [B, T, 2]);
  const dy = be.tensor(Float32Array.from(new Rng(9).normalArray(B * T * n)), [B, T, n]);
  const g = await deerWithGrad(be, cell, params, x, { jacobian, checkFinite: false });
  try {
    const grads = await g.vjp(dy);
    const out = { y: await be.read(g.y), gx: await be.read(grads.x), gh0: await be.read(grads.h0), converged: g.stats.converged };
    for (const t of [grads.x, grads.h0, ...Object.values(grads.params)]) be.dispose(t);
    return out;
  } finally {
    g.dispose();
    be.dispose(x);
    be.dispose(dy);
  }
}

/** max |a − b| / max(1, |b|) over the entries. */
export function worstRelative(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return worst;
}
