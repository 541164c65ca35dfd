// The scan alone in each order (forward and reverse), median of 3, on one tfjs engine.
// Usage (after `pnpm build`): node bench/scan-orders.mjs [engine=cpu] [B,T,n,s=16,784,32,8]
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { Rng } from '@deerjs/core';
import { createTfjsBackend } from '../dist/index.js';
const engine = process.argv[2] ?? 'cpu';
const [B, T, n, s] = (process.argv[3] ?? '16,784,32,8').split(',').map(Number);
for (const scan of ['oddeven', 'chunked', 'sequential']) {
  const be = await createTfjsBackend({ backend: engine, scan });
  const A = be.tensor(new Rng(5).uniformArray(B * T * n * s, -0.2, 0.2), [B, T, n / s, s, s]);
  const c = be.tensor(new Rng(6).normalArray(B * T * n), [B, T, n]);
  const y0 = be.zeros([B, n]);
  for (const reverse of [false, true]) {
    const ts = [];
    for (let r = 0; r < 3; r++) { const t0 = performance.now(); const y = be.scan({ A, c, y0, blockSize: s, reverse }); await be.read(y); be.dispose(y); ts.push(performance.now() - t0); }
    ts.sort((a, b) => a - b);
    console.log(`${engine} ${scan} reverse=${reverse} B${B} T${T} n${n} s${s}: ${ts[1].toFixed(0)} ms`);
  }
  for (const t of [A, c, y0]) be.dispose(t);
}
