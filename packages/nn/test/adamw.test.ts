import { describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm, globalNorm } from '../src/index.js';

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
