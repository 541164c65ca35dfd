import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@deerjs/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { newtonStep } from '../src/newton.js';

/** The probed update (quiet case: nothing to replace or clip) gives what the full update gives. */
const B = 3;
const T = 7;
const n = 4;

function step(raw: Float32Array, old: Float32Array, opts: Parameters<typeof newtonStep>[3], probe: boolean) {
  return tf.tidy(() => {
    const [y, stats] = newtonStep(tf, tf.tensor3d(raw, [B, T, n]), tf.tensor3d(old, [B, T, n]), opts, probe);
    return { y: y.dataSync().slice(), stats: stats.dataSync().slice(), shape: y.shape };
  });
}

describe('newtonStep', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  const rng = new Rng(9);
  const old = Float32Array.from(rng.normalArray(B * T * n));
  const small = Float32Array.from(rng.normalArray(B * T * n), (v) => v * 1e-3);
  // Rows 0 and 2 settle part of the way, row 1 not at all.
  for (let i = 0; i < B * T * n; i++) if (i % (T * n) < 3 * n) small[i] = 1e-9;
  const cases = {
    quiet: { raw: small, opts: { atol: 1e-4, rtol: 1e-4, clip: 1e6, delta: true } },
    'quiet, rows held': { raw: small, opts: { atol: 1e-4, rtol: 0, clip: 1e6, delta: true, active: Uint8Array.of(1, 0, 1) } },
    'quiet, atol 0': { raw: small, opts: { atol: 0, rtol: 1e-3, clip: 1e6, delta: false } },
    'NaN and Inf': {
      raw: Float32Array.from(small, (v, i) => (i === 5 ? Number.NaN : i === 40 ? Number.POSITIVE_INFINITY : v)),
      opts: { atol: 1e-4, rtol: 1e-4, clip: 1e6, delta: true },
    },
    clipped: { raw: Float32Array.from(small, (v, i) => (i === 17 ? 5 : v)), opts: { atol: 1e-4, rtol: 1e-4, clip: 2, delta: false } },
  };
  for (const [name, { raw, opts }] of Object.entries(cases)) {
    it(`${name}: probed and full updates agree`, () => {
      const before = tf.memory().numTensors;
      const full = step(raw, old, opts, false);
      const probed = step(raw, old, opts, true);
      expect(probed.shape).toEqual([B, T, n]);
      expect(Array.from(probed.y)).toEqual(Array.from(full.y));
      expect(Array.from(probed.stats)).toEqual(Array.from(full.stats));
      expect(tf.memory().numTensors).toBe(before);
    });
  }
  it('counts what it replaces and clips', () => {
    const s = step(cases['NaN and Inf'].raw, old, cases['NaN and Inf'].opts, true).stats;
    expect(Array.from(s.slice(B, 2 * B))).toEqual([1, 1, 0]); // entries 5 (row 0) and 40 (row 1)
    const c = step(cases.clipped.raw, old, cases.clipped.opts, true).stats;
    expect(Array.from(c.slice(2 * B, 3 * B))).toEqual([1, 0, 0]);
  });
});
