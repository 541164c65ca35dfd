import { describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm, decaysByDefault, globalNorm, SequenceClassifier } from '../src/index.js';

describe('AdamW', () => {
  it('matches a hand-computed first and second step', () => {
    const params = { w: Float64Array.from([1, -2]), b: Float64Array.from([0.5]) };
    const opt = new AdamW(params, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
    opt.step(params, { w: Float64Array.from([0.2, -0.4]), b: Float64Array.from([1]) }, 0.01);
    // Step 1: m̂ = g, v̂ = g², so the Adam term is lr·g/(|g| + eps) ≈ lr·sign(g); w also decays by lr·wd·w.
    const w0 = 1 - 0.01 * 0.1 * 1 - (0.01 * 0.2) / (0.2 + 1e-8);
    const w1 = -2 - 0.01 * 0.1 * -2 - (0.01 * -0.4) / (0.4 + 1e-8);
    const b0 = 0.5 - (0.01 * 1) / (1 + 1e-8);
    expect(params.w[0]).toBeCloseTo(w0, 14);
    expect(params.w[1]).toBeCloseTo(w1, 14);
    expect(params.b[0]).toBeCloseTo(b0, 14);
    opt.step(params, { w: Float64Array.from([-0.1, 0]), b: Float64Array.from([0]) }, 0.02);
    // Step 2, w[0]: m = 0.9·0.02 + 0.1·(−0.1) = 0.008, v = 0.999·0.001·0.04 + 0.001·0.01 = 0.00004996.
    const m = 0.9 * 0.1 * 0.2 + 0.1 * -0.1;
    const v = 0.999 * 0.001 * 0.04 + 0.001 * 0.01;
    const mHat = m / (1 - 0.9 ** 2);
    const vHat = v / (1 - 0.999 ** 2);
    const expected = w0 - 0.02 * 0.1 * w0 - (0.02 * mHat) / (Math.sqrt(vHat) + 1e-8);
    expect(params.w[0]).toBeCloseTo(expected, 14);
    expect(opt.state.step).toBe(2);
  });
});

describe('AdamW weight decay by default', () => {
  it("decays weights but not biases or normalisation parameters (norm.<l>.gamma / beta had decayed)", () => {
    const model = new SequenceClassifier({ inputSize: 2, classes: 3, cell: 'lstm', hiddenSize: 3, layers: 2, residual: true, pooling: 'mean', layerNorm: true });
    const params = model.init(4);
    const names = Object.keys(params);
    expect(names.filter((n) => !decaysByDefault(n)).sort()).toEqual(
      ['head.b', 'norm.0.beta', 'norm.0.gamma', 'norm.1.beta', 'norm.1.gamma', 'rnn.0.Rb', 'rnn.0.Wb', 'rnn.1.Rb', 'rnn.1.Wb'].sort(),
    );
    expect(names.filter(decaysByDefault).sort()).toEqual(['head.W', 'rnn.0.R', 'rnn.0.W', 'rnn.1.R', 'rnn.1.W']);
    // With zero gradients only the decay moves a parameter: weights shrink by lr·wd, the others stay.
    const before = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Float64Array.from(v)]));
    const opt = new AdamW(params, { weightDecay: 0.5 });
    opt.step(params, Object.fromEntries(names.map((n) => [n, new Float64Array(params[n]!.length)])), 0.1);
    for (const n of names) {
      const expected = decaysByDefault(n) ? Array.from(before[n]!, (v) => v - 0.1 * 0.5 * v) : Array.from(before[n]!);
      expect(Array.from(params[n]!), n).toEqual(expected);
    }
    expect(Array.from(params['norm.0.gamma']!)).toEqual([1, 1, 1, 1, 1, 1]);
    // Explicit choices still win.
    const all = { 'norm.0.gamma': Float64Array.of(1), 'x.bias': Float64Array.of(2) };
    new AdamW(all, { weightDecay: 0.5, decays: () => true }).step(all, { 'norm.0.gamma': Float64Array.of(0), 'x.bias': Float64Array.of(0) }, 0.1);
    expect([all['norm.0.gamma'][0], all['x.bias'][0]]).toEqual([0.95, 1.9]);
    expect([decaysByDefault('gamma'), decaysByDefault('ln.beta'), decaysByDefault('gammas'), decaysByDefault('betaW')]).toEqual([false, false, true, true]);
  });
});

describe('gradient clipping', () => {
  it('scales to the maximum norm and reports the norm before', () => {
    const g = { a: Float64Array.from([3, 0]), b: Float64Array.from([4]) };
    expect(clipGradNorm(g, 1)).toBeCloseTo(5, 15);
    expect(globalNorm(g)).toBeCloseTo(1, 15);
    expect(Array.from(g.a)).toEqual([0.6000000000000001, 0]);
    const h = { a: Float64Array.from([0.3]) };
    clipGradNorm(h, 1);
    expect(h.a[0]).toBe(0.3);
  });
});
