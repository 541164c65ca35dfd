import { deer, sequential } from '@deerjs/core';
import { CELL_FAMILIES, INPUT_SIZE, sequenceData } from '../conformance/dist/fixtures.js';
import { createWebGpuBackend } from './dist/index.js';
const be = await createWebGpuBackend({ dtype: 'float32' });
const n = +(process.argv[2] ?? 64), T = +(process.argv[3] ?? 10000), B = +(process.argv[4] ?? 1);
const cell = CELL_FAMILIES[0].make(n, INPUT_SIZE);
const data = sequenceData(130, B, T, cell, 'float32');
const x = be.tensor(data.x, [B, T, INPUT_SIZE], 'float32');
for (const jacobian of ['dense', 'diagonal', 'dense']) {
  let t0 = performance.now();
  const { y, stats } = await deer(be, cell, data.params, x, { h0: data.h0, jacobian, maxIter: 3, fallback: 'none' });
  await be.read(y); be.dispose(y);
  console.log(jacobian, `${(performance.now() - t0).toFixed(0)} ms, it ${stats.iterations}`, JSON.stringify(stats.counters ?? stats.device ?? ''));
}
be.dispose(x); await be.destroy();
