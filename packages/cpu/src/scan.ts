import type { TypedArray } from '@deerjs/core';

/**
 * The linear recurrence with block-diagonal transitions, in time order (the best order on one
 * core). A is [B, T, n/s, s, s], c and out are [B, T, n], y0 is [B, n].
 * Forward: y_t = A_t y_{t−1} + c_t. Reverse: y_t = A_tᵀ y_{t+1} + c_t, from y_{T+1} = y0.
 */
export function scanBlocks(
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
  const prev = new Float64Array(n);
  const ss = s * s;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) prev[i] = y0[b * n + i]!;
    for (let step = 0; step < T; step++) {
      const t = reverse ? T - 1 - step : step;
      const e = b * T + t;
      const aBase = e * n * s;
      for (let k = 0; k < n / s; k++) {
        const blk = aBase + k * ss;
        const off = k * s;
        for (let i = 0; i < s; i++) {
          let acc = c[e * n + off + i]!;
          if (reverse) for (let j = 0; j < s; j++) acc += A[blk + j * s + i]! * prev[off + j]!;
          else for (let j = 0; j < s; j++) acc += A[blk + i * s + j]! * prev[off + j]!;
          out[e * n + off + i] = acc;
        }
      }
      for (let i = 0; i < n; i++) prev[i] = out[e * n + i]!;
    }
  }
}

