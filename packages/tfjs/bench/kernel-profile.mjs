// tf.profile of one training step (see train-step.mjs) on the tfjs backend (tfjs-cpu engine):
// kernel time summed by kernel name and by name + shapes.
// Usage (after `pnpm build`): node bench/kernel-profile.mjs [B=16] [T=784] [top=40] [distDir]
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { fashionStep } from './fashion-step.mjs';

const [B = 16, T = 784, top = 40] = process.argv.slice(2, 5).map(Number);
const dist = process.argv[5] ?? '../dist/index.js';
const { createTfjsBackend } = await import(dist);
const step = fashionStep(B, T);
const be = await createTfjsBackend({ backend: 'cpu' });

const t0 = performance.now();
const info = await tf.profile(() => step(be));
const wall = performance.now() - t0;
const byName = new Map();
const byShape = new Map();
for (const k of info.kernels) {
  const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  const a = byName.get(k.name) ?? [0, 0];
  byName.set(k.name, [a[0] + ms, a[1] + 1]);
  const key = `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(' ')} → ${k.outputShapes.map((s) => `[${s}]`).join(' ')}`;
  const b = byShape.get(key) ?? [0, 0];
  byShape.set(key, [b[0] + ms, b[1] + 1]);
}
const total = [...byName.values()].reduce((s, [ms]) => s + ms, 0);
const show = (m, k) =>
  [...m].sort((a, b) => b[1][0] - a[1][0]).slice(0, k).map(([name, [ms, c]]) => `${ms.toFixed(0).padStart(8)} ms ${String(c).padStart(6)}×  ${name}`).join('\n');
console.log(`wall ${wall.toFixed(0)} ms, kernels ${info.kernels.length}, kernel time ${total.toFixed(0)} ms`);
console.log(`--- by kernel\n${show(byName, 25)}\n--- by kernel and shapes\n${show(byShape, top)}`);
