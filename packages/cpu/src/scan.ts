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

/**
 * The damped scan with diagonal transitions: for every (b, i) the symmetric tridiagonal system of
 * min Σ_t (δ_t − a_t δ_{t−1} − c_t)² + λ_b δ_t², solved by the Thomas algorithm in float64 (the
 * system is symmetric positive definite, so no pivoting is needed). A is [B, T, n], c and out
 * [B, T, n].
 */
export function dampedScanDiagonal(
  A: ArrayLike<number>,
  c: ArrayLike<number>,
  lambda: ArrayLike<number>,
  out: TypedArray,
  B: number,
  T: number,
  n: number,
): void {
  const up = new Float64Array(T);
  const rhs = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    const lam = lambda[b]!;
    for (let i = 0; i < n; i++) {
      const at = (t: number) => (t < T ? A[(b * T + t) * n + i]! : 0);
      const ct = (t: number) => (t < T ? c[(b * T + t) * n + i]! : 0);
      for (let t = 0; t < T; t++) {
        const next = at(t + 1);
        const l = t === 0 ? 0 : -at(t);
        const d = 1 + lam + next * next;
        const u = -next;
        const g = ct(t) - next * ct(t + 1);
        const denom = t === 0 ? d : d - l * up[t - 1]!;
        up[t] = u / denom;
        rhs[t] = (g - (t === 0 ? 0 : l * rhs[t - 1]!)) / denom;
      }
      let next = 0;
      for (let t = T - 1; t >= 0; t--) {
        next = rhs[t]! - up[t]! * next;
        out[(b * T + t) * n + i] = next;
      }
    }
  }
}
