import { createCpuBackend } from '@deerjs/cpu';
import { describe, expect, it } from 'vitest';
import { type ClassifierConfig, cloneParams, SequenceClassifier } from '../src/index.js';
import { randomBatch } from './helpers.js';

const base = { inputSize: 3, classes: 3, hiddenSize: 4, layers: 2, residual: true } as const;
const cases: (ClassifierConfig & { label: string })[] = [
  { ...base, label: 'gru, mean pooling', cell: 'gru', pooling: 'mean' },
  { ...base, label: 'multi-head gru, last pooling', cell: 'mhgru', heads: 2, pooling: 'last' },
  { ...base, label: 'lstm, mean pooling', cell: 'lstm', pooling: 'mean' },
  { ...base, label: 'gru with layer norm, last pooling', cell: 'gru', pooling: 'last', layerNorm: true },
  {
    ...base,
    label: 'gru without residual, 3 layers',
    cell: 'gru',
    layers: 3,
    residual: false,
    pooling: 'last',
  },
];

describe('whole-model gradient against central differences (float64, cpu)', () => {
  for (const { label, ...cfg } of cases) {
    it(label, async () => {
      const backend = createCpuBackend();
      const model = new SequenceClassifier(cfg);
      const params = model.init(3);
      const { x: xs, labels } = randomBatch(11, 2, 6, cfg.inputSize, cfg.classes);
      const x = backend.tensor(xs, [2, 6, cfg.inputSize], 'float64');
      const live = backend.liveTensors();
      const deer = await model.lossAndGrad(backend, params, x, labels, {
        solver: 'deer',
        deer: { atol: 1e-13, rtol: 1e-13 },
      });
      const seq = await model.lossAndGrad(backend, params, x, labels, { solver: 'sequential' });
      expect(backend.liveTensors()).toBe(live);
      expect(Object.keys(deer.grads).sort()).toEqual(model.shapes.map((s) => s.name).sort());
      const lossAt = async (p: typeof params) =>
        (await model.lossAndGrad(backend, p, x, labels, { solver: 'sequential' })).loss;
      const h = 1e-6;
      let worst = 0;
      for (const { name } of model.shapes) {
        const n = params[name]!.length;
        for (let i = 0; i < n; i++) {
          const plus = cloneParams(params);
          const minus = cloneParams(params);
          plus[name]![i]! += h;
          minus[name]![i]! -= h;
          const fd = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * h);
          const g = deer.grads[name]![i]!;
          worst = Math.max(worst, Math.abs(g - fd) / Math.max(1e-3, Math.abs(fd)));
          expect(Math.abs(seq.grads[name]![i]! - g)).toBeLessThan(1e-9);
        }
      }
      expect(worst).toBeLessThan(1e-5);
      expect(deer.loss).toBeCloseTo(seq.loss, 10);
      backend.dispose(x);
    });
  }
});
