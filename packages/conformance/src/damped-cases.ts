import { Rng } from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { maxAbsDiff } from './fixtures.js';

/**
 * min_δ Σ_t (δ_t − a_t δ_{t−1} − c_t)² + λ Σ_t δ_t² for one (b, i), by its normal equations as a
 * dense T × T system and Gaussian elimination with partial pivoting, in float64: an oracle that
 * shares nothing with any backend's damped scan.
 */
function dampedOracle(a: number[], c: number[], lambda: number): number[] {
  const T = a.length;
  // E(δ) = ‖Lδ − c‖² + λ‖δ‖², L = I − subdiag(a_2..a_T): solve (LᵀL + λI) δ = Lᵀc.
  const L = Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (i === j ? 1 : i === j + 1 ? -a[i]! : 0)));
  const M = Array.from({ length: T }, (_, i) =>
    Array.from({ length: T }, (_, j) => {
      let s = i === j ? lambda : 0;
      for (let k = 0; k < T; k++) s += L[k]![i]! * L[k]![j]!;
      return s;
    }),
  );
  const rhs = Array.from({ length: T }, (_, i) => {
    let s = 0;
    for (let k = 0; k < T; k++) s += L[k]![i]! * c[k]!;
    return s;
  });
  for (let col = 0; col < T; col++) {
    let piv = col;
    for (let r = col + 1; r < T; r++) if (Math.abs(M[r]![col]!) > Math.abs(M[piv]![col]!)) piv = r;
    [M[col], M[piv]] = [M[piv]!, M[col]!];
    [rhs[col], rhs[piv]] = [rhs[piv]!, rhs[col]!];
    for (let r = col + 1; r < T; r++) {
      const f = M[r]![col]! / M[col]![col]!;
      for (let k = col; k < T; k++) M[r]![k]! -= f * M[col]![k]!;
      rhs[r]! -= f * rhs[col]!;
    }
  }
  const x = new Array<number>(T).fill(0);
  for (let r = T - 1; r >= 0; r--) {
    let s = rhs[r]!;
    for (let k = r + 1; k < T; k++) s -= M[r]![k]! * x[k]!;
    x[r] = s / M[r]![r]!;
  }
  return x;
}

/** The damped scan (ELK's step) against a dense float64 solve, and λ = 0 against the plain scan. */
export function defineDampedScanCases(ctx: SuiteContext): void {
  const round = (v: number) => (ctx.dtype === 'float32' ? Math.fround(v) : v);
  for (const T of [1, 2, 7, 33]) {
    ctx.test(`ops/damped-scan/T${T}`, async () => {
      const backend = ctx.backend();
      const B = 3;
      const n = 2;
      const rng = new Rng(500 + T);
      // Transitions past 1 in magnitude too: the damped system stays positive definite.
      const a = rng.uniformArray(B * T * n, -1.6, 1.6).map(round);
      const c = rng.normalArray(B * T * n).map(round);
      const lambda = [0, 0.3, 5];
      const At = backend.tensor(a, [B, T, n, 1, 1], ctx.dtype);
      const ct = backend.tensor(c, [B, T, n], ctx.dtype);
      const y0 = backend.zeros([B, n], ctx.dtype);
      try {
        const got = backend.dampedScan({ A: At, c: ct, lambda });
        const plain = backend.scan({ A: At, c: ct, y0, blockSize: 1, reverse: false });
        const [g, p] = [await backend.read(got), await backend.read(plain)];
        backend.dispose(got);
        backend.dispose(plain);
        const want = new Float64Array(B * T * n);
        for (let b = 0; b < B; b++) {
          for (let i = 0; i < n; i++) {
            const pick = (v: Float64Array) => Array.from({ length: T }, (_, t) => v[(b * T + t) * n + i]!);
            const x = dampedOracle(pick(a), pick(c), lambda[b]!);
            for (let t = 0; t < T; t++) want[(b * T + t) * n + i] = x[t]!;
          }
        }
        const scale = Math.max(1, ...want.map(Math.abs));
        expect(maxAbsDiff(g, want) / scale).toBeLessThanOrEqual(ctx.dtype === 'float64' ? 1e-10 : 2e-4);
        // λ = 0 (row 0): the plain linear recurrence.
        const row0 = (v: ArrayLike<number>) => Array.from({ length: T * n }, (_, k) => v[k]!);
        const s0 = Math.max(1, ...row0(p).map(Math.abs));
        expect(maxAbsDiff(row0(g), row0(p)) / s0).toBeLessThanOrEqual(ctx.dtype === 'float64' ? 1e-10 : 2e-4);
      } finally {
        for (const t of [At, ct, y0]) backend.dispose(t);
      }
    });
  }
}
