import { createWebGpuBackend } from './dist/index.js';
import { solveIvp, defineCell, lang } from '@deerjs/core';
const { neg, mul } = lang;
const be = await createWebGpuBackend();
const decay = defineCell({ name: 'decay', state: 1, input: 0, params: { k: [1] } }, (y, _x, p) => neg(mul(p.k, y)));
for (let rep=0; rep<3; rep++) for (const t of [[0,1e308],[0,1e-3,2e-3,1e308]]) {
  const y0 = be.tensor([1],[1,1],'float32');
  const t0=performance.now();
  const r = await solveIvp(be, decay, {k:[1]}, {y0, t}, {fallback:'none'});
  await be.read(r.y);
  console.log(JSON.stringify(t), (performance.now()-t0).toFixed(0),'ms', r.stats.iterations, JSON.stringify(r.stats.device));
  be.dispose(r.y); be.dispose(y0);
}
be.destroy();
console.log('bindgroup', globalThis.__bg|0, 'pass', globalThis.__pass|0, 'uniform', globalThis.__u|0, 'pipeline', globalThis.__pl|0);
