import { InvalidArgumentError, UnsupportedOptionError } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { warmupCosine } from '../src/index.js';

describe('warmup + cosine schedule', () => {
  it('ramps linearly, peaks, decays by a half cosine to the minimum', () => {
    const lr = warmupCosine({ peak: 1, warmup: 4, total: 14, min: 0.1 });
    expect([0, 1, 2, 3].map(lr)).toEqual([0.25, 0.5, 0.75, 1]);
    expect(lr(4)).toBeCloseTo(1, 15);
    expect(lr(9)).toBeCloseTo(0.55, 15);
    expect(lr(14)).toBeCloseTo(0.1, 15);
    expect(lr(100)).toBeCloseTo(0.1, 15);
    const quarter = 0.1 + 0.45 * (1 + Math.cos(Math.PI / 4));
    expect(lr(6.5)).toBeCloseTo(quarter, 15);
  });
  it('refuses options it would misread and steps before the start', () => {
    for (const bad of [{ warmup: 10, total: 5 }, { min: 2 }, { peak: Number.POSITIVE_INFINITY }, { minimum: 0.1 }]) {
      expect(() => warmupCosine({ peak: 1, warmup: 2, total: 10, ...bad } as never), JSON.stringify(bad)).toThrow(UnsupportedOptionError);
    }
    expect(() => warmupCosine({ peak: 1, warmup: 2, total: 10 })(-5)).toThrow(InvalidArgumentError);
  });
  it('without warm-up starts at the peak', () => {
    expect(warmupCosine({ peak: 3e-3, warmup: 0, total: 10 })(0)).toBe(3e-3);
  });
});
