import type { TypedArray } from '@deerjs/core';

/**
 * The linear recurrence with block-diagonal transitions, time order, specialised for diagonal
 * (s = 1) and dense-block transitions; same arithmetic order as the reference `scanBlocks`.
 * A is [B, T, n/s, s, s], c and out are [B, T, n], y0 is [B, n].
 */
export function scanFast(
  A: TypedArray,
  c: TypedArray,
  y0: TypedArray,
  out: TypedArray,
  B: number,
  T: number,
  n: number,
  s: number,
  reverse: boolean,
): void {
  if (s === 1) {
    for (let b = 0; b < B; b++) {
      let prev = y0;
      let p0 = b * n;
      for (let step = 0; step < T; step++) {
        const t = reverse ? T - 1 - step : step;
        const base = (b * T + t) * n;
        for (let i = 0; i < n; i++) out[base + i] = c[base + i]! + A[base + i]! * prev[p0 + i]!;
        prev = out;
        p0 = base;
      }
    }
    return;
  }
  for (let b = 0; b < B; b++) {
    let prev = y0;
    let p0 = b * n;
    for (let step = 0; step < T; step++) {
      const t = reverse ? T - 1 - step : step;
      const base = (b * T + t) * n;
      const aBase = base * s;
      for (let k = 0; k < n; k += s) {
        const blk = aBase + k * s;
        const pk = p0 + k;
        if (reverse) {
          for (let i = 0; i < s; i++) {
            let acc = c[base + k + i]!;
            for (let j = 0; j < s; j++) acc += A[blk + j * s + i]! * prev[pk + j]!;
            out[base + k + i] = acc;
          }
        } else {
          for (let i = 0; i < s; i++) {
            let acc = c[base + k + i]!;
            const row = blk + i * s;
            for (let j = 0; j < s; j++) acc += A[row + j]! * prev[pk + j]!;
            out[base + k + i] = acc;
          }
        }
      }
      prev = out;
      p0 = base;
    }
  }
}

/** c = F − A·y per element, A in block structure [E, n/s, s, s]. */
export function affineOffsetFast(
  F: TypedArray,
  A: TypedArray,
  y: TypedArray,
  out: TypedArray,
  E: number,
  n: number,
  s: number,
): void {
  if (s === 1) {
    for (let q = 0; q < E * n; q++) out[q] = F[q]! - A[q]! * y[q]!;
    return;
  }
  for (let e = 0; e < E; e++) {
    const base = e * n;
    for (let k = 0; k < n; k += s) {
      const blk = (base + k) * s;
      for (let i = 0; i < s; i++) {
        let acc = 0;
        const row = blk + i * s;
        for (let j = 0; j < s; j++) acc += A[row + j]! * y[base + k + j]!;
        out[base + k + i] = F[base + k + i]! - acc;
      }
    }
  }
}
