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
  it('fractional steps stay on the curve: never above peak, continuous, rising through warm-up and falling after', () => {
    // 2.9 of a 3-step warm-up had given 1.3 × peak.
    expect(warmupCosine({ peak: 1, warmup: 3, total: 5 })(2.9)).toBe(1);
    for (const o of [
      { peak: 1, warmup: 3, total: 5 },
      { peak: 0.1, warmup: 3, total: 10 }, // 0.1 · 3 / 3 rounds above 0.1
      { peak: 3e-3, warmup: 100, total: 1000, min: 3e-5 },
      { peak: 2, warmup: 1, total: 1 },
      { peak: 0.7, warmup: 7, total: 7, min: 0.7 },
      { peak: 5, warmup: 0, total: 4, min: 1 },
      { peak: 0.3, warmup: 2, total: 9, min: 0.1 },
    ]) {
      const lr = warmupCosine(o);
      const end = Math.max(o.total, o.warmup + 1) + 2;
      const h = Math.min(1 / 256, end / 20000);
      // The steepest the curve gets: the warm-up's slope or the cosine's.
      const slope = Math.max(o.warmup > 0 ? o.peak / o.warmup : 0, ((Math.PI / 2) * (o.peak - (o.min ?? 0))) / Math.max(1, o.total - o.warmup));
      const bad: string[] = [];
      let prev = lr(0);
      for (let i = 1; i * h <= end; i++) {
        const t = i * h;
        const v = lr(t);
        if (!(v <= o.peak && v >= 0)) bad.push(`${t}: ${v} outside [0, peak]`);
        if (Math.abs(v - prev) > slope * h * (1 + 1e-9) + 1e-15) bad.push(`${t}: a jump from ${prev} to ${v}`);
        if (t <= o.warmup ? v < prev : v > prev + 1e-15 * o.peak) bad.push(`${t}: ${prev} → ${v} against the trend`);
        prev = v;
      }
      expect(bad.slice(0, 5), JSON.stringify(o)).toEqual([]);
      // Integer steps are as before: peak · (s + 1) / warmup through warm-up, peak at warmup.
      for (let s = 0; s < o.warmup; s++) expect(lr(s)).toBeCloseTo((o.peak * (s + 1)) / o.warmup, 15);
      expect(lr(o.warmup)).toBeCloseTo(o.peak, 15);
      expect(lr(Math.max(o.total, o.warmup + 1))).toBeCloseTo(o.min ?? 0, 15);
    }
  });
});
