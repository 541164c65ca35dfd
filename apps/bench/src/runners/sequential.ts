import { type Backend, sequential, type TypedArray } from '@deerjs/core';
import type { Problem } from '../problem.js';
import type { Run } from '../timing.js';

/** The step-by-step recurrence on the same backend, timed until y is on the host. */
export async function runSequential(backend: Backend, problem: Problem): Promise<Run<TypedArray>> {
  const x = await problem.freshInput();
  const t0 = performance.now();
  const { y } = await sequential(backend, problem.cell, problem.paramTensors, x, {
    checkFinite: false,
  }).finally(() => backend.dispose(x));
  try {
    const host = await backend.read(y);
    return { ms: performance.now() - t0, output: host };
  } finally {
    backend.dispose(y);
  }
}
