// deer-train's fashion-mnist model (2 × multi-head GRU, n = 32, 4 heads, the second layer
// residual) and one training step's recurrent work on random data of its shape: the DEER forward
// of both layers (deerWithGrad), then both backward passes. The head and loss (host work) are left
// out. Shared by train-step.mjs and kernel-profile.mjs.
import { cells, deerWithGrad, Rng } from '@deerjs/core';

export const n = 32;

export function fashionStep(B, T) {
  const layers = [
    cells.gru({ inputSize: 1, hiddenSize: n, heads: 4 }),
    cells.gru({ inputSize: n, hiddenSize: n, heads: 4 }),
  ];
  const params = layers.map((c, l) => c.init({ seed: 11 + l }));
  const xs = Float64Array.from(new Rng(3).uniformArray(B * T, 0, 1));
  const dys = new Rng(4).normalArray(B * T * n).map((v) => v / (B * T));

  /** One step on backend `be`; returns the Newton iterations per layer. */
  return async function step(be) {
    const x = be.tensor(xs, [B, T, 1]);
    const runs = [];
    let inp = x;
    const iters = [];
    for (let l = 0; l < layers.length; l++) {
      const r = await deerWithGrad(be, layers[l], params[l], inp, { checkFinite: false });
      iters.push(r.stats.iterations);
      runs.push(r);
      inp = l > 0 ? be.add(r.y, inp) : r.y;
    }
    let dy = be.tensor(dys, [B, T, n]);
    for (let l = layers.length - 1; l >= 0; l--) {
      const g = await runs[l].vjp(dy);
      for (const t of Object.values(g.params)) await be.read(t);
      const next = l > 0 ? be.add(g.x, dy) : g.x; // residual: dL/dx = vjp_x + dy
      be.dispose(dy);
      if (next !== g.x) be.dispose(g.x);
      be.dispose(g.h0);
      for (const t of Object.values(g.params)) be.dispose(t);
      dy = next;
    }
    await be.read(dy);
    be.dispose(dy);
    for (const r of runs) r.dispose();
    be.dispose(x);
    return iters;
  };
}
