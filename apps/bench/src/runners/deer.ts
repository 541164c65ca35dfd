import { type Backend, type DeerStats, deer, type JacobianOption, type TypedArray } from '@deerjs/core';
import type { GridPoint } from '../grid.js';
import type { Problem } from '../problem.js';
import type { Run } from '../timing.js';

export interface DeerOutput {
  readonly y: TypedArray;
  readonly stats: DeerStats;
}

export function jacobianOption(p: GridPoint): JacobianOption {
  return p.jacobian === 'block' ? { block: p.blockSize } : p.jacobian;
}

/**
 * One DEER solve, timed until y is on the host (so asynchronous backends are measured to completion).
 * Inputs were validated once when made: the finiteness scan is left out of the time.
 */
export async function runDeer(
  backend: Backend,
  problem: Problem,
  o: { maxIter: number; onIteration?: () => void },
): Promise<Run<DeerOutput>> {
  const t0 = performance.now();
  const { y, stats } = await deer(backend, problem.cell, problem.paramTensors, problem.x, {
    jacobian: jacobianOption(problem.point),
    maxIter: o.maxIter,
    fallback: 'sequential',
    checkFinite: false,
    onIteration: o.onIteration,
  });
  try {
    const host = await backend.read(y);
    return { ms: performance.now() - t0, output: { y: host, stats } };
  } finally {
    backend.dispose(y);
  }
}
