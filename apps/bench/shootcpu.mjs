import { cells, sequential, deer, Rng } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
const backend = await createCpuBackend({ threads: 2, dtype: 'float32' });
for (const [nh, T, B] of [[1, 1e6, 1], [8, 1e6, 1], [32, 1e5, 1], [8, 1e5, 16]]) {
  const cell = cells.gru({ inputSize: nh, hiddenSize: nh });
  const params = cell.init({ seed: 1 });
  const p = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, backend.tensor(v, [v.length], 'float32')]));
  const x = backend.tensor(new Rng(2).normalArray(B * T * nh), [B, T, nh], 'float32');
  const run = async (f) => { let best = Infinity, out; for (let i = 0; i < 3; i++) { const t0 = performance.now(); const r = await f(); const y = await backend.read(r.y); const dt = performance.now() - t0; backend.dispose(r.y); if (dt < best) { best = dt; out = { y, stats: r.stats }; } } return { ms: best, ...out }; };
  const seq = await run(() => sequential(backend, cell, p, x));
  const sh = await run(() => deer(backend, cell, p, x, { method: 'shoot' }));
  const de = await run(() => deer(backend, cell, p, x, {}));
  let err = 0; for (let i = 0; i < seq.y.length; i++) err = Math.max(err, Math.abs(seq.y[i] - sh.y[i]));
  console.log(`GRU nh ${nh} T ${T} B ${B}: sequential ${seq.ms.toFixed(0)} ms, shoot ${sh.ms.toFixed(0)} ms (${sh.stats.shootingSweeps} sweeps, ${(seq.ms / sh.ms).toFixed(2)}x), DEER ${de.ms.toFixed(0)} ms (${de.stats.iterations} it); shoot err ${err.toExponential(1)} conv ${sh.stats.converged} ${sh.stats.structure}`);
  backend.dispose(x);
}
