import { Rng } from '@deerjs/core';
import { ArrayDataset, labelArray } from './dataset.js';

export const EIGENWORMS_SHAPE = { length: 17984, channels: 6, classes: 5 } as const;

/**
 * A seeded long-sequence classification set shaped like EigenWorms: 6 channels of unit noise; class
 * k adds, on channel k, a sinusoid of random phase and an offset, so the class is visible only when
 * the whole sequence is summarised.
 */
export function syntheticWorms(size: number, length: number, seed: number): ArrayDataset {
  const { channels, classes } = EIGENWORMS_SHAPE;
  const rng = new Rng(seed);
  const values = new Float32Array(size * length * channels);
  const labels = labelArray(size, classes);
  for (let i = 0; i < size; i++) {
    const k = Math.floor(rng.uniform() * classes);
    labels[i] = k;
    const phase = rng.uniform() * 2 * Math.PI;
    const cycles = 2 + rng.uniform() * 2;
    for (let t = 0; t < length; t++) {
      for (let c = 0; c < channels; c++) {
        let v = 0.5 * rng.normal();
        if (c === k) v += 0.5 + Math.sin(phase + (2 * Math.PI * cycles * t) / length);
        values[(i * length + t) * channels + c] = v;
      }
    }
  }
  return new ArrayDataset(values, labels, length, channels, classes);
}
