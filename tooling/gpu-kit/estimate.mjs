#!/usr/bin/env node
// How long the kit's default grid should take on an H100-class GPU, from counts rather than a GPU:
// run deer-bench on llvmpipe at T=1e3 over the kit's series (it records per solve the dispatches,
// submits and bytes written, which do not depend on the device), then scale to T and apply the
// rates below. Reproduce:
//   node apps/bench/dist/cli.js --backend webgpu --nh 1,8,32,64 --T 1e3 --heads 8 --heads-size 64 \
//     --quasi --warmup 0 --repeats 1 --no-ort --out /tmp/counts
//   node tooling/gpu-kit/estimate.mjs /tmp/counts/results.json
// Bytes written, dispatches and submits per solve scale with T; iterations are taken as at T=1e3.
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error(
    'usage: node tooling/gpu-kit/estimate.mjs RESULTS.json   (deer-bench on llvmpipe, T=1e3, the kit grid)',
  );
  process.exit(2);
}
const r = JSON.parse(readFileSync(file, 'utf8'));
const BW = 2.0e12; // bytes/s the kernels reach (of H100's 3.35 TB/s)
const FLOPS = 10e12; // fp32 FLOP/s the scan's small matmuls reach (of ~60 TFLOP/s)
const TRAFFIC = 3; // bytes moved per byte written (J written once, read by the scan's two passes)
const DISPATCH = 10e-6,
  SUBMIT = 150e-6; // s per dispatch, s per submit+read round trip
const CLOCK = 1.7e9,
  CYCLES_PER_FMA = 2; // sequential kernel: one thread per batch row
const seqStep = (nh) => Math.max(0.5e-6, (6 * nh * nh * CYCLES_PER_FMA) / CLOCK); // s per step
const runs = (t) => {
  // measure(): warmup 1, repeats 3 within budget 3 s, LONG_RUN 10 s
  if (t > 10) return 1;
  let n = 1,
    spent = 0;
  for (let i = 0; i < 3; i++) {
    if (i > 0 && spent + t > 3) break;
    n++;
    spent += t;
  }
  return n;
};
let total = 0;
const seen = new Set();
const lastPerT = new Map();
const rows = [];
for (const T of [1e4, 1e5, 1e6])
  for (const p of r.points) {
    const scale = T / p.point.T;
    const dv = p.deer.device;
    const id = p.point.id.replace('T1e3', `T${T.toExponential(0).replace('+', '')}`);
    const est =
      (p.point.batch * T * p.point.hiddenSize * p.point.blockSize +
        7 * p.point.batch * T * p.point.hiddenSize) *
      4;
    // --max-memory 64GiB
    if (est > 64 * 2 ** 30) {
      rows.push(`${id}: skipped (memory ${(est / 2 ** 30).toFixed(0)} GiB)`);
      continue;
    }
    const s = p.point.blockSize,
      n = p.point.hiddenSize,
      its = p.deer.iterations;
    const flops = its * p.point.batch * T * n * (2 * s * s + 2 * s); // scan: summaries compose s×s blocks
    const deer =
      (TRAFFIC * dv.bytesWritten * scale) / BW +
      flops / FLOPS +
      dv.dispatches * DISPATCH +
      dv.submits * SUBMIT;
    const key = `${p.point.hiddenSize}/${p.point.heads}`;
    const seq =
      T * seqStep(p.point.heads ? Math.sqrt(p.point.hiddenSize ** 2 / p.point.heads) : p.point.hiddenSize);
    const series = p.point.series;
    const pred = lastPerT.get(series);
    if (pred !== undefined && pred * T > 20) {
      rows.push(`${id}: skipped (--max-time: predicted ${(pred * T).toFixed(0)} s)`);
      continue;
    }
    lastPerT.set(series, (deer + seq) / T);
    const baseKey = `${key}/${T}`;
    const seqTime = seen.has(baseKey) ? 0 : runs(seq) * seq;
    seen.add(baseKey);
    const t = runs(deer) * deer + seqTime + 0.3; // + problem setup and checks
    total += t;
    rows.push(
      `${id}: DEER ${(deer * 1e3).toFixed(1)} ms × ${runs(deer)}, seq ${(seq * 1e3).toFixed(0)} ms${seqTime ? ` × ${runs(seq)}` : ' (reused)'} → ${t.toFixed(1)} s`,
    );
  }
console.log(rows.join('\n'));
console.log(`bench total ≈ ${total.toFixed(0)} s`);
