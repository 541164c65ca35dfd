import { cells, deer } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
const threads = Number(process.env.TH ?? 2);
const be = createCpuBackend({ dtype: 'float32', threads });
const cell = cells.gru({ inputSize: 1, hiddenSize: 1 });
const p = cell.init({ seed: 1 });
const T = 1e6;
const x = be.tensor(Float32Array.from({ length: T }, (_, i) => Math.sin(i / 10)), [1, T, 1], 'float32');
const pt = Object.fromEntries(Object.entries(p).map(([k, v]) => [k, be.tensor(v, [v.length], 'float32')]));
const marks = [];
for (let r = 0; r < 3; r++) {
  const t0 = performance.now();
  const res = await deer(be, cell, pt, x, { maxIter: 4, fallback: 'none', atol: 1e-30, rtol: 0, checkFinite: false, onIteration: () => marks.push(performance.now()) });
  be.dispose(res.y);
}
console.log(threads, 'per-iter', ((marks.at(-1) - marks.at(-4)) / 3).toFixed(1));
await be.destroy();
