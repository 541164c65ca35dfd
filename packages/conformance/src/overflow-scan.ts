import type { DType } from '@deerjs/core';

/** Growth per step of the expanding scans: 256 overflows float32 in 16 steps and float64 in 128. */
const GROWTH = 256;

/**
 * Linear scans whose products overflow where the answer does not, in three batch rows, each block
 * 256·I plus 0.5 above the diagonal (every product and sum exact in both dtypes):
 *   0. from y0 = 0 with c = 0: y = 0 throughout, although the product of any chunk of steps is ±Inf
 *      (a chunked scan's boundary M·y is Inf·0 = NaN);
 *   1. at the fixed point y = 1 (c = 1 − the block's row sums): y = 1 throughout, although the same
 *      recurrence from 0 overflows (M·y + v is Inf − Inf);
 *   2. from y0 = 1 with c = 0: the trajectory itself overflows to +Inf, as a serial pass has it.
 * `expected` is the serial pass in the dtype's arithmetic (reverse: time backwards, blocks transposed).
 */
export function overflowingScan(T: number, n: number, s: number, reverse: boolean, dtype: DType) {
  const B = 3;
  const round = dtype === 'float32' ? Math.fround : (v: number) => v;
  const nb = n / s;
  const block = (i: number, j: number) => (i === j ? GROWTH : j === i + 1 ? 0.5 : 0);
  // The block as the scan applies it.
  const applied = (i: number, j: number) => (reverse ? block(j, i) : block(i, j));
  const A = new Float64Array(B * T * n * s);
  const c = new Float64Array(B * T * n);
  const y0 = new Float64Array(B * n);
  for (let b = 0; b < B; b++) {
    for (let e = 0; e < T * nb; e++) for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) A[((b * T * nb + e) * s + i) * s + j] = block(i, j);
    for (let e = 0; e < T * nb; e++)
      for (let i = 0; i < s; i++) {
        let rowSum = 0;
        for (let j = 0; j < s; j++) rowSum += applied(i, j);
        c[(b * T * nb + e) * s + i] = b === 1 ? 1 - rowSum : 0;
      }
    for (let k = 0; k < n; k++) y0[b * n + k] = b === 0 ? 0 : 1;
  }
  const expected = serialScan(A, c, y0, [B, T, n, s], reverse, round);
  return { B, A, c, y0, expected };
}

/**
 * The linear recurrence y_t = A_t y_{t−1} + c_t step by step on the host (reverse: time backwards,
 * blocks transposed), each entry passed through `round` (the dtype's rounding) as it is stored.
 * A is [B, T, n/s, s, s], c [B, T, n], y0 [B, n].
 */
export function serialScan(
  A: ArrayLike<number>,
  c: ArrayLike<number>,
  y0: ArrayLike<number>,
  [B, T, n, s]: readonly [number, number, number, number],
  reverse: boolean,
  round: (v: number) => number = (v) => v,
): Float64Array {
  const expected = new Float64Array(B * T * n);
  const prev = new Float64Array(n);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < n; k++) prev[k] = y0[b * n + k]!;
    for (let k = 0; k < T; k++) {
      const t = reverse ? T - 1 - k : k;
      const e = b * T + t;
      for (let blk = 0; blk < n / s; blk++)
        for (let i = 0; i < s; i++) {
          let acc = c[e * n + blk * s + i]!;
          for (let j = 0; j < s; j++) {
            const a = reverse ? A[e * n * s + blk * s * s + j * s + i]! : A[e * n * s + blk * s * s + i * s + j]!;
            acc += a * prev[blk * s + j]!;
          }
          expected[e * n + blk * s + i] = round(acc);
        }
      prev.set(expected.subarray(e * n, (e + 1) * n));
    }
  }
  return expected;
}

/** Where `got` differs from `expected`: ±Inf and NaN must match exactly, finite values to `tol` relative (floor 1). */
export function firstMismatch(got: ArrayLike<number>, expected: ArrayLike<number>, tol: number): string | null {
  for (let i = 0; i < expected.length; i++) {
    const [g, x] = [got[i]!, expected[i]!];
    const ok = Number.isFinite(x) ? Math.abs(g - x) <= tol * Math.max(1, Math.abs(x)) : Object.is(g, x);
    if (!ok) return `entry ${i}: ${g}, expected ${x}`;
  }
  return null;
}
