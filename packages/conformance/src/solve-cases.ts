import { type Backend, type Cell, type DeerOptions, deer, sequential, type Tensor } from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { CELL_FAMILIES, INPUT_SIZE, maxAbsDiff, sequenceData, userDefinedCell } from './fixtures.js';

/** float64 sequential on the oracle backend: the reference trajectory. */
export async function oracleTrajectory(
  oracle: Backend,
  cell: Cell,
  data: ReturnType<typeof sequenceData>,
  B: number,
  T: number,
): Promise<Float64Array | Float32Array> {
  const x = oracle.tensor(data.x, [B, T, cell.inputSize], 'float64');
  try {
    const { y } = await sequential(oracle, cell, data.params, x, { h0: data.h0 });
    const out = await oracle.read(y);
    oracle.dispose(y);
    return out;
  } finally {
    oracle.dispose(x);
  }
}

export async function solveOnBackend(
  backend: Backend,
  cell: Cell,
  data: ReturnType<typeof sequenceData>,
  B: number,
  T: number,
  dtype: SuiteContext['dtype'],
  options: DeerOptions = {},
) {
  const x = backend.tensor(data.x, [B, T, cell.inputSize], dtype);
  try {
    const { y, stats } = await deer(backend, cell, data.params, x, { h0: data.h0, ...options });
    const out = await backend.read(y);
    backend.dispose(y);
    return { y: out, stats };
  } finally {
    backend.dispose(x);
  }
}

interface GridPoint {
  readonly family: (typeof CELL_FAMILIES)[number];
  readonly n: number;
  readonly T: number;
  readonly B: number;
}

/**
 * The solve grid, trimmed: every family over n ∈ {1, 2, 8, 32, 64} (T = 100, B = 3) and over
 * T ∈ {1, 2, 100, 10 000} (n = 8, B ∈ {1, 3}), plus the largest corner (GRU, n = 64, T = 10 000).
 */
export function solveGrid(): GridPoint[] {
  const pts: GridPoint[] = [];
  const seen = new Set<string>();
  const add = (p: GridPoint) => {
    const k = `${p.family.id}/${p.n}/${p.T}/${p.B}`;
    if (!seen.has(k) && p.family.supports(p.n)) {
      seen.add(k);
      pts.push(p);
    }
  };
  for (const family of CELL_FAMILIES) {
    for (const n of [1, 2, 8, 32, 64]) add({ family, n, T: 100, B: 3 });
    for (const T of [1, 2, 100, 10_000]) for (const B of [1, 3]) add({ family, n: 8, T, B });
  }
  add({ family: CELL_FAMILIES[0]!, n: 64, T: 10_000, B: 1 });
  return pts;
}

export function defineSolveCases(ctx: SuiteContext): void {
  let seed = 100;
  for (const p of solveGrid()) {
    const s = seed++;
    ctx.test(
      `solve/${p.family.id}/n${p.n}/T${p.T}/B${p.B}`,
      async () => {
        const cell = p.family.make(p.n, INPUT_SIZE);
        const data = sequenceData(s, p.B, p.T, cell, ctx.dtype);
        const ref = await oracleTrajectory(ctx.oracle(), cell, data, p.B, p.T);
        const got = await solveOnBackend(ctx.backend(), cell, data, p.B, p.T, ctx.dtype);
        const err = maxAbsDiff(got.y, ref);
        expect(got.stats.fellBack, 'DEER fell back to sequential').toBe(false);
        expect(got.stats.converged).toBe(true);
        expect(got.stats.exactJacobian).toBe(true);
        // With the exact Jacobian, iteration t makes step t exact; one more confirms it.
        expect(got.stats.iterations).toBeLessThanOrEqual(p.T + 1);
        expect(got.stats.stopReason).toBe('tolerance');
        expect(got.stats.residual, 'one-step residual (scaled)').toBeLessThanOrEqual(1);
        expect(err, `max abs error vs the float64 oracle`).toBeLessThanOrEqual(ctx.tolerance);
        if (p.T === 10_000 || p.n === 64) {
          ctx.report(
            `${cell.name} T=${p.T} B=${p.B}: ${got.stats.iterations} iterations, ${got.stats.structure}, max abs err ${err.toExponential(2)}`,
          );
        }
      },
      300_000,
    );
  }

  // Every exact structure: a coarser structure than the cell's smallest exact one is exact too.
  const structures: { id: string; family: string; n: number; jacobian: DeerOptions['jacobian'] }[] = [
    { id: 'gru/dense', family: 'gru', n: 8, jacobian: 'dense' },
    { id: 'elman/diagonal-is-quasi', family: 'elman', n: 8, jacobian: 'diagonal' },
    { id: 'mhgru/block2', family: 'mhgru', n: 8, jacobian: { block: 2 } },
    { id: 'mhgru/block4', family: 'mhgru', n: 8, jacobian: { block: 4 } },
    { id: 'mhgru/dense', family: 'mhgru', n: 8, jacobian: 'dense' },
    { id: 'lstm/dense', family: 'lstm', n: 4, jacobian: 'dense' },
  ];
  for (const st of structures) {
    ctx.test(`structure/${st.id}`, async () => {
      const family = CELL_FAMILIES.find((f) => f.id === st.family)!;
      const cell = family.make(st.n, INPUT_SIZE);
      const data = sequenceData(7, 2, 200, cell, ctx.dtype);
      const ref = await oracleTrajectory(ctx.oracle(), cell, data, 2, 200);
      const got = await solveOnBackend(ctx.backend(), cell, data, 2, 200, ctx.dtype, {
        jacobian: st.jacobian,
      });
      expect(got.stats.fellBack).toBe(false);
      expect(maxAbsDiff(got.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    });
  }

  ctx.test('solve/user-defined-cell', async () => {
    const cell = userDefinedCell();
    const data = sequenceData(11, 3, 300, cell, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, 3, 300);
    const got = await solveOnBackend(ctx.backend(), cell, data, 3, 300, ctx.dtype);
    expect(got.stats.fellBack).toBe(false);
    expect(got.stats.structure).toBe('dense');
    expect(maxAbsDiff(got.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
  });

  ctx.test('solve/quasi-deer', async () => {
    const family = CELL_FAMILIES[0]!;
    const cell = family.make(8, INPUT_SIZE);
    const data = sequenceData(13, 2, 500, cell, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, 2, 500);
    const exact = await solveOnBackend(ctx.backend(), cell, data, 2, 500, ctx.dtype);
    const quasi = await solveOnBackend(ctx.backend(), cell, data, 2, 500, ctx.dtype, {
      jacobian: 'diagonal',
    });
    expect(quasi.stats.exactJacobian).toBe(false);
    expect(quasi.stats.structure).toBe('diagonal');
    expect(quasi.stats.fellBack).toBe(false);
    expect(quasi.stats.iterations).toBeGreaterThan(exact.stats.iterations);
    expect(maxAbsDiff(quasi.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    ctx.report(
      `GRU n=8 T=500: exact ${exact.stats.iterations} iterations, quasi-DEER (diagonal) ${quasi.stats.iterations}`,
    );
  });

  ctx.test('convergence/exact-jacobian-within-T', async () => {
    // Large recurrent weights make Newton work hard; with the exact Jacobian iteration t makes step
    // t exact, so T iterations reach the answer and one more (a zero step) confirms it. With a
    // tolerance no float can meet, Newton stops at T + 1 iterations (the depth of a sequential
    // pass) and the sequential fallback answers, or the residual met it only as rounded (a fixed
    // point of the rounded step: 'rounding', answer kept): never a trusted "iteration T".
    const cell = CELL_FAMILIES.find((f) => f.id === 'elman')!.make(4, INPUT_SIZE);
    for (const T of [1, 2, 5, 12]) {
      const data = sequenceData(17 + T, 1, T, cell, ctx.dtype);
      data.params.R = data.params.R!.map((v) => (ctx.dtype === 'float32' ? Math.fround(v * 8) : v * 8));
      const ref = await oracleTrajectory(ctx.oracle(), cell, data, 1, T);
      const got = await solveOnBackend(ctx.backend(), cell, data, 1, T, ctx.dtype);
      expect(got.stats.iterations).toBeLessThanOrEqual(T + 1);
      expect(got.stats.converged).toBe(true);
      expect(got.stats.fellBack).toBe(false);
      expect(maxAbsDiff(got.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
      const strict = await solveOnBackend(ctx.backend(), cell, data, 1, T, ctx.dtype, {
        atol: 0,
        rtol: 1e-300,
      });
      expect(strict.stats.iterations).toBeLessThanOrEqual(T + 1);
      expect(strict.stats.converged).toBe(false);
      expect(strict.stats.fellBack || strict.stats.stopReason === 'rounding').toBe(true);
      expect(maxAbsDiff(strict.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    }
  });

  ctx.test('solve/initial-guess-and-windows', async () => {
    const backend = ctx.backend();
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const B = 2;
    const T = 100;
    const data = sequenceData(23, B, T, cell, ctx.dtype);
    const ref = await oracleTrajectory(ctx.oracle(), cell, data, B, T);
    const fromH0 = await solveOnBackend(backend, cell, data, B, T, ctx.dtype, { initialGuess: 'h0' });
    expect(maxAbsDiff(fromH0.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    const windowed = await solveOnBackend(backend, cell, data, B, T, ctx.dtype, { window: 37 });
    expect(windowed.stats.windows).toBe(3);
    expect(maxAbsDiff(windowed.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    // Warm start from the solution: converged after one iteration.
    const guess: Tensor = backend.tensor(fromH0.y, [B, T, cell.stateSize], ctx.dtype);
    try {
      const warm = await solveOnBackend(backend, cell, data, B, T, ctx.dtype, { initialGuess: guess });
      expect(warm.stats.iterations).toBeLessThanOrEqual(2);
      expect(maxAbsDiff(warm.y, ref)).toBeLessThanOrEqual(ctx.tolerance);
    } finally {
      backend.dispose(guess);
    }
  });
}
