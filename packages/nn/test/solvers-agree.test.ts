import type { DType } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { describe, expect, it } from 'vitest';
import { AdamW, SequenceClassifier, type Solver, trainStep, warmupCosine } from '../src/index.js';
import { randomBatch } from './helpers.js';

async function losses(solver: Solver, dtype: DType): Promise<number[]> {
  const backend = createCpuBackend({ dtype });
  const model = new SequenceClassifier({
    inputSize: 2,
    classes: 3,
    cell: 'mhgru',
    heads: 2,
    hiddenSize: 8,
    layers: 2,
    residual: true,
    pooling: 'mean',
  });
  const params = model.init(0);
  const opt = new AdamW(params, { weightDecay: 0.01 });
  const lr = warmupCosine({ peak: 1e-2, warmup: 3, total: 20 });
  const out: number[] = [];
  for (let step = 0; step < 20; step++) {
    const { x, labels } = randomBatch(100 + step, 4, 40, 2, 3);
    const xt = backend.tensor(x, [4, 40, 2], dtype);
    const r = await trainStep(backend, model, params, opt, xt, labels, { solver, lr: lr(step), clipNorm: 1 });
    backend.dispose(xt);
    out.push(r.loss);
  }
  expect(backend.liveTensors()).toBe(0);
  return out;
}

describe('DEER and sequential training give the same losses for 20 steps', () => {
  for (const [dtype, tol] of [
    ['float64', 1e-9],
    ['float32', 1e-4],
  ] as const) {
    it(dtype, async () => {
      const a = await losses('deer', dtype);
      const b = await losses('sequential', dtype);
      for (let i = 0; i < 20; i++) expect(Math.abs(a[i]! - b[i]!) / Math.abs(b[i]!)).toBeLessThan(tol);
    });
  }
});
