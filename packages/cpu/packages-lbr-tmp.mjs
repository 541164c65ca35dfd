import { deer } from '@deerjs/core';
import { CELL_FAMILIES, INPUT_SIZE, sequenceData } from '/work/main/packages/conformance/dist/fixtures.js';
import { createCpuBackend } from '/work/main/packages/cpu/dist/index.js';
const dtype = process.argv[3] ?? 'float64';
const fam = CELL_FAMILIES.find(f => f.id === (process.argv[2] ?? 'gru-lbr0'));
const be = createCpuBackend({ dtype, compileMin: 0 });
const n = 64, T = 100, B = 3;
const cell = fam.make(n, INPUT_SIZE);
const data = sequenceData(130, B, T, cell, dtype);
const x = be.tensor(data.x, [B, T, INPUT_SIZE], dtype);
for (let r = 0; r < 3; r++) {
  const t0 = performance.now();
  const { y, stats } = await deer(be, cell, data.params, x, { h0: data.h0 });
  await be.read(y); be.dispose(y);
  console.log(fam.id, dtype, (performance.now() - t0).toFixed(0), 'ms', stats.iterations);
}
be.dispose(x); await be.destroy();
