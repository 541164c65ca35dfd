// The problem the page solves, shared with the Node oracle (test/oracle.ts) so both see the same
// cell, parameters and inputs.
import { type Backend, cells, deer, Rng, sequential } from '@deerjs/core';

export const PROBLEM = { batch: 2, steps: 4096, inputSize: 4, hiddenSize: 16, seed: 0 } as const;

export interface SolveResult {
  readonly dtype: string;
  readonly iterations: number;
  readonly converged: boolean;
  readonly fellBack: boolean;
  /** max |DEER − sequential| over the whole trajectory. */
  readonly maxDiff: number;
  readonly deerMs: number;
  readonly sequentialMs: number;
  /** The first components of y at the last step of sequence 0. */
  readonly finalState: readonly number[];
  /** DEER's whole trajectory [B, T, n], row-major. */
  readonly y: readonly number[];
}

export function describeProblem(): string {
  const p = PROBLEM;
  return `GRU, B = ${p.batch}, T = ${p.steps}, n = ${p.hiddenSize}, m = ${p.inputSize}, seed ${p.seed}`;
}

function inputs(batch: number, steps: number): Float64Array {
  const rng = new Rng(PROBLEM.seed + 1);
  return Float64Array.from({ length: batch * steps * PROBLEM.inputSize }, () => rng.range(-1, 1));
}

/**
 * DEER and the sequential evaluation of the same GRU. A short run first compiles the kernels, so
 * the timings measure solving, not compilation.
 */
export async function solve(backend: Backend, now: () => number): Promise<SolveResult> {
  const { batch: B, steps: T, inputSize: m, hiddenSize: n, seed } = PROBLEM;
  const cell = cells.gru({ inputSize: m, hiddenSize: n });
  const params = cell.init({ seed });

  const warm = backend.tensor(inputs(B, 64), [B, 64, m]);
  for (const r of [await deer(backend, cell, params, warm), await sequential(backend, cell, params, warm)]) {
    await backend.read(r.y);
    backend.dispose(r.y);
  }
  backend.dispose(warm);

  const x = backend.tensor(inputs(B, T), [B, T, m]);
  let t0 = now();
  const { y, stats } = await deer(backend, cell, params, x);
  const a = await backend.read(y);
  const deerMs = now() - t0;
  t0 = now();
  const { y: yRef } = await sequential(backend, cell, params, x);
  const b = await backend.read(yRef);
  const sequentialMs = now() - t0;
  for (const t of [x, y, yRef]) backend.dispose(t);

  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  const last = (T - 1) * n;
  return {
    dtype: a instanceof Float64Array ? 'float64' : 'float32',
    iterations: stats.iterations,
    converged: stats.converged,
    fellBack: stats.fellBack,
    maxDiff,
    deerMs,
    sequentialMs,
    finalState: Array.from(a.subarray(last, last + 4)),
    y: Array.from(a),
  };
}
