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

describe('a step says whether its trajectories are the model’s', () => {
  it("converged is false only where fallback 'none' returned rows Newton did not finish", async () => {
    const backend = createCpuBackend();
    const model = new SequenceClassifier({
      inputSize: 2,
      classes: 3,
      cell: 'gru',
      hiddenSize: 4,
      layers: 2,
      residual: true,
      pooling: 'mean',
    });
    const params = model.init(1);
    const { x, labels } = randomBatch(7, 3, 30, 2, 3);
    const xt = backend.tensor(x, [3, 30, 2], 'float64');
    try {
      const run = (deer: { maxIter: number; fallback?: 'none' | 'sequential' }) =>
        model.lossAndGrad(backend, params, xt, labels, { solver: 'deer', deer });
      const full = await run({ maxIter: 100 });
      expect(full.converged).toBe(true);
      expect(full.fellBack).toBe(false);
      // Two iterations do not reach the tolerance at T = 30.
      const replaced = await run({ maxIter: 2 });
      expect(replaced.fellBack).toBe(true);
      expect(replaced.converged, 'the fallback answered what Newton left').toBe(true);
      expect(replaced.loss).toBeCloseTo(full.loss, 10);
      const unfinished = await run({ maxIter: 2, fallback: 'none' });
      expect(unfinished.fellBack).toBe(false);
      expect(unfinished.converged).toBe(false);
      expect(unfinished.loss).not.toBe(full.loss);
      const exact = await model.lossAndGrad(backend, params, xt, labels, { solver: 'sequential' });
      expect(exact.converged).toBe(true);
    } finally {
      backend.dispose(xt);
    }
    expect(backend.liveTensors()).toBe(0);
  });
});
