import { type Backend, cells, deer, defineCell, lang, sequential, withCapabilities } from '@deerjs/core';
import { afterAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

const wave = (length: number) => Float64Array.from({ length }, (_, i) => Math.sin(0.37 * i) + 0.2 * Math.cos(1.9 * i));

// 'auto' on the cpu backend shoots one long float32 row where its sequential kernel runs many rows
// per step for little more than one (`sequentialRowGain`) and a full Newton step — which confirms
// what the sweeps settle — costs well under a sequential pass: a machine of 8 lanes and a row gain
// of 64, stated with withCapabilities. On two lanes that step costs about a pass, and so does a
// spent gain (a batch of rows) or a small one (float64): there it evaluates sequentially.
describe("cpu: 'auto' chooses parallel shooting where the row gain pays for it", () => {
  const f32 = createCpuBackend({ threads: 2, dtype: 'float32' });
  const f64 = createCpuBackend({ threads: 2, dtype: 'float64' });
  const wide = withCapabilities(f32, { parallelism: 8, sequentialRowGain: { float32: 64 } });
  const backends: Backend[] = [wide, f64, f32];
  afterAll(async () => {
    for (const b of [f32, f64]) await b.destroy();
  });
  const cell = cells.gru({ inputSize: 4, hiddenSize: 4 });
  const params = cell.init({ seed: 3 });
  const T = 4000;

  for (const [k, B, shoots] of [
    [0, 1, true],
    [0, 16, false],
    [1, 1, false],
    [2, 1, false],
  ] as const) {
    it(`${backends[k]!.capabilities.defaultDType}, ${backends[k]!.capabilities.parallelism} lanes, B = ${B}: ${shoots ? 'shooting' : 'sequential'}`, async () => {
      const backend = backends[k]!;
      const x = backend.tensor(wave(B * T * 4), [B, T, 4]);
      try {
        const auto = await deer(backend, cell, params, x, { method: 'auto' });
        const seq = await sequential(backend, cell, params, x);
        const [a, s] = [await backend.read(auto.y), await backend.read(seq.y)];
        backend.dispose(auto.y);
        backend.dispose(seq.y);
        let err = 0;
        for (let i = 0; i < s.length; i++) err = Math.max(err, Math.abs(a[i]! - s[i]!));
        expect(err).toBeLessThanOrEqual(backend.capabilities.defaultDType === 'float32' ? 1e-5 : 1e-10);
        // No Newton iteration, but the full steps that confirm what shooting settled.
        expect(auto.stats.iterations).toBeLessThanOrEqual(shoots ? 3 : 0);
        if (shoots) {
          expect(auto.stats.shootingSweeps).toBeGreaterThanOrEqual(2);
          expect(auto.stats.converged).toBe(true);
          expect(auto.stats.fellBack).toBe(false);
          expect(auto.stats.switches.some((w) => w.includes('parallel shooting'))).toBe(true);
          expect(auto.stats.plan!.choice).toBe('shoot');
        } else {
          expect(auto.stats.shootingSweeps).toBe(0);
          expect(auto.stats.stopReason).toBe('sequential');
        }
      } finally {
        backend.dispose(x);
      }
    });
  }

  it("rows shooting does not finish go sequential whatever 'fallback' says", async () => {
    // h' = 0.9999·h + 0.01·tanh(x): forgets over ~10⁵ steps, far beyond the sweeps 'auto' allows.
    const backend = wide;
    const { add, mul, tanh, constant } = lang;
    const slow = defineCell({ name: 'slow', state: 1, input: 1, params: {} }, (h, x) =>
      add(mul(constant(0.9999), h), mul(constant(0.01), tanh(x))),
    );
    const x = backend.tensor(wave(T), [1, T, 1]);
    try {
      for (const fallback of ['throw', 'none'] as const) {
        const auto = await deer(backend, slow, {}, x, { method: 'auto', fallback, h0: [1] });
        const seq = await sequential(backend, slow, {}, x, { h0: [1] });
        const [a, s] = [await backend.read(auto.y), await backend.read(seq.y)];
        backend.dispose(auto.y);
        backend.dispose(seq.y);
        expect(auto.stats.plan!.choice, fallback).toBe('shoot');
        expect(auto.stats.fellBack, fallback).toBe(true);
        expect(Array.from(a), fallback).toEqual(Array.from(s));
      }
    } finally {
      backend.dispose(x);
    }
  });
});
