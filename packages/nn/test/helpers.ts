import { Rng } from '@deerjs/core';

/** A seeded batch: x [B, T, m] in ±1 and labels in 0..classes−1. */
export function randomBatch(seed: number, B: number, T: number, m: number, classes: number) {
  const rng = new Rng(seed);
  const x = rng.uniformArray(B * T * m, -1, 1);
  const labels = Array.from({ length: B }, () => Math.floor(rng.uniform() * classes));
  return { x, labels };
}
