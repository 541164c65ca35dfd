import { Rng, ShapeError } from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { maxAbsDiff } from './fixtures.js';

/**
 * min_δ Σ_t ‖δ_t − A_t δ_{t−1} − c_t‖² + λ Σ_t ‖δ_t‖² for one (b, block) with s × s transitions
 * (a[t] row-major), by its normal equations as a dense (T·s) × (T·s) system and Gaussian
 * elimination with partial pivoting, in float64: an oracle that shares nothing with any backend's
 * damped scan.
 */
function dampedOracle(a: number[][], c: number[], lambda: number, s: number): number[] {
  const N = c.length;
  // E(δ) = ‖Lδ − c‖² + λ‖δ‖², L = I − the subdiagonal blocks A_1..A_{T−1}: solve (LᵀL + λI) δ = Lᵀc.
  const L = Array.from({ length: N }, (_, i) =>
    Array.from({ length: N }, (_, j) => {
      if (i === j) return 1;
      const [ti, tj] = [Math.floor(i / s), Math.floor(j / s)];
      return ti === tj + 1 ? -a[ti]![(i % s) * s + (j % s)]! : 0;
    }),
  );
  const M = Array.from({ length: N }, (_, i) =>
    Array.from({ length: N }, (_, j) => {
      let sum = i === j ? lambda : 0;
      for (let k = 0; k < N; k++) sum += L[k]![i]! * L[k]![j]!;
      return sum;
    }),
  );
  const rhs = Array.from({ length: N }, (_, i) => {
    let sum = 0;
    for (let k = 0; k < N; k++) sum += L[k]![i]! * c[k]!;
    return sum;
  });
  for (let col = 0; col < N; col++) {
    let piv = col;
    for (let r = col + 1; r < N; r++) if (Math.abs(M[r]![col]!) > Math.abs(M[piv]![col]!)) piv = r;
    [M[col], M[piv]] = [M[piv]!, M[col]!];
    [rhs[col], rhs[piv]] = [rhs[piv]!, rhs[col]!];
    for (let r = col + 1; r < N; r++) {
      const f = M[r]![col]! / M[col]![col]!;
      for (let k = col; k < N; k++) M[r]![k]! -= f * M[col]![k]!;
      rhs[r]! -= f * rhs[col]!;
    }
  }
  const x = new Array<number>(N).fill(0);
  for (let r = N - 1; r >= 0; r--) {
    let sum = rhs[r]!;
    for (let k = r + 1; k < N; k++) sum -= M[r]![k]! * x[k]!;
    x[r] = sum / M[r]![r]!;
  }
  return x;
}

/**
 * The damped scan (ELK's step) against a dense float64 solve, and λ = 0 against the plain scan:
 * diagonal transitions (quasi-ELK) and s × s blocks (ELK; s = n is dense).
 */
export function defineDampedScanCases(ctx: SuiteContext): void {
  const round = (v: number) => (ctx.dtype === 'float32' ? Math.fround(v) : v);
  const shapes = [
    ...[1, 2, 7, 33].map((T) => ({ name: `T${T}`, T, n: 2, s: 1, seed: 500 + T })),
    { name: 'blocks-s2-T7', T: 7, n: 4, s: 2, seed: 601 },
    { name: 'blocks-s3-T33', T: 33, n: 6, s: 3, seed: 602 },
    { name: 'dense-n5-T20', T: 20, n: 5, s: 5, seed: 603 },
    { name: 'dense-n3-T1', T: 1, n: 3, s: 3, seed: 604 },
  ];
  for (const { name, T, n, s, seed } of shapes) {
    ctx.test(`ops/damped-scan/${name}`, async () => {
      const backend = ctx.backend();
      const B = 3;
      const nb = n / s;
      const rng = new Rng(seed);
      // Transitions past 1 in norm too: the damped system stays positive definite.
      const a = rng.uniformArray(B * T * n * s, -1.6 / Math.sqrt(s), 1.6 / Math.sqrt(s)).map(round);
      const c = rng.normalArray(B * T * n).map(round);
      const lambda = [0, 0.3, 5];
      const At = backend.tensor(a, [B, T, nb, s, s], ctx.dtype);
      const ct = backend.tensor(c, [B, T, n], ctx.dtype);
      const y0 = backend.zeros([B, n], ctx.dtype);
      try {
        const got = backend.dampedScan({ A: At, c: ct, lambda });
        const plain = backend.scan({ A: At, c: ct, y0, blockSize: s, reverse: false });
        const [g, p] = [await backend.read(got), await backend.read(plain)];
        backend.dispose(got);
        backend.dispose(plain);
        const want = new Float64Array(B * T * n);
        for (let b = 0; b < B; b++) {
          for (let k = 0; k < nb; k++) {
            const blocks = Array.from({ length: T }, (_, t) => Array.from(a.subarray(((b * T + t) * nb + k) * s * s, ((b * T + t) * nb + k + 1) * s * s)));
            const rhs = Array.from({ length: T * s }, (_, q) => c[(b * T + Math.floor(q / s)) * n + k * s + (q % s)]!);
            const x = dampedOracle(blocks, rhs, lambda[b]!, s);
            for (let q = 0; q < T * s; q++) want[(b * T + Math.floor(q / s)) * n + k * s + (q % s)] = x[q]!;
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

  ctx.test('ops/damped-scan/bad-input', async () => {
    // Typed errors, not a wrong answer: blocks that are not square or do not tile n, λ that is
    // negative, NaN or not one per row.
    const backend = ctx.backend();
    const [B, T, n] = [2, 5, 4];
    const c = backend.tensor(new Float64Array(B * T * n), [B, T, n], ctx.dtype);
    const shapes = [
      [B, T, 2, 2, 1],
      [B, T, 1, 3, 3],
      [B, T + 1, 2, 2, 2],
      [B, T, n],
    ];
    try {
      for (const shape of shapes) {
        const A = backend.zeros(shape, ctx.dtype);
        try {
          expect(() => backend.dampedScan({ A, c, lambda: [1, 1] }), `A [${shape.join(', ')}]`).toThrow(ShapeError);
        } finally {
          backend.dispose(A);
        }
      }
      const A = backend.zeros([B, T, 2, 2, 2], ctx.dtype);
      try {
        for (const lambda of [[1], [1, -1], [1, Number.NaN], [Number.POSITIVE_INFINITY, 1]]) {
          expect(() => backend.dampedScan({ A, c, lambda }), `λ ${lambda}`).toThrow(ShapeError);
        }
      } finally {
        backend.dispose(A);
      }
    } finally {
      backend.dispose(c);
    }
  });
}
