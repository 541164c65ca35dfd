// DEER (each scan order) vs the sequential loop on a tfjs engine, GRU, best of `reps` runs.
// Usage (after `npx tsc -p tsconfig.json`): node bench/compare.mjs [engine=wasm] [n=16] [T=1000] [B=16] [reps=5]
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { cells, deer, Rng, sequential } from '@deerjs/core';
import { createTfjsBackend } from '../dist/index.js';

const [engine = 'wasm', ...nums] = process.argv.slice(2);
const [n = 16, T = 1000, B = 16, reps = 5] = nums.map(Number);
const m = 4;
const cell = cells.gru({ inputSize: m, hiddenSize: n });
const params = cell.init({ seed: 1 });
const xs = new Rng(3).normalArray(B * T * m);

async function best(run) {
  let min = Number.POSITIVE_INFINITY;
  let info;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    info = await run();
    min = Math.min(min, performance.now() - t0);
  }
  return { ms: min, info };
}

for (const scan of ['oddeven', 'chunked', 'sequential']) {
  const be = await createTfjsBackend({ backend: engine, scan });
  const x = be.tensor(xs, [B, T, m]);
  const A = be.tensor(new Rng(5).uniformArray(B * T * n * n, -0.2, 0.2), [B, T, 1, n, n]);
  const c = be.tensor(new Rng(6).normalArray(B * T * n), [B, T, n]);
  const y0 = be.zeros([B, n]);
  const s = await best(async () => {
    const y = be.scan({ A, c, y0, blockSize: n, reverse: false });
    await be.read(y);
    be.dispose(y);
  });
  const d = await best(async () => {
    const { y, stats } = await deer(be, cell, params, x);
    await be.read(y);
    be.dispose(y);
    return stats.iterations;
  });
  console.log(
    `tfjs-${engine} GRU n=${n} T=${T} B=${B} scan=${scan}: scan ${s.ms.toFixed(1)} ms, DEER ${d.ms.toFixed(1)} ms (${d.info} iterations)`,
  );
  if (scan === 'sequential') {
    const q = await best(async () => {
      const { y } = await sequential(be, cell, params, x);
      await be.read(y);
      be.dispose(y);
    });
    console.log(`tfjs-${engine} GRU n=${n} T=${T} B=${B} sequential loop: ${q.ms.toFixed(1)} ms`);
  }
  for (const t of [x, A, c, y0]) be.dispose(t);
}
