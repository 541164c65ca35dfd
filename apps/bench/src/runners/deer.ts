import { type Backend, type DeerStats, deer, type JacobianOption, type TypedArray } from '@deerjs/core';
import type { GridPoint } from '../grid.js';
import type { Problem } from '../problem.js';
import { deviceClock, type Run } from '../timing.js';

export interface DeerOutput {
  readonly y: TypedArray;
  readonly stats: DeerStats;
  /** Until `deer` returned (y on the device). */
  readonly solveMs: number;
  /** Reading y back to the host. */
  readonly readbackMs: number;
  /** Device time of the solve and readback (timestamp queries), when the backend measures it. */
  readonly deviceMs?: number;
  /** The same by kernel label (ms and passes), where the backend breaks it down. */
  readonly deviceKernels?: KernelProfile;
}

/** Device time by kernel label. */
export type KernelProfile = Readonly<Record<string, { readonly ms: number; readonly passes: number }>>;

/** A backend's device time by kernel (webgpu with `timestamp-query`); optional, not part of the interface. */
export function kernelClock(backend: Backend): (() => Promise<KernelProfile | undefined>) | undefined {
  const b = backend as unknown as { deviceTimeByKernel?: () => Promise<KernelProfile | undefined> };
  return typeof b.deviceTimeByKernel === 'function' ? () => b.deviceTimeByKernel!() : undefined;
}

/** after − before, per label (labels that did not run are left out). */
function profileDifference(after: KernelProfile, before: KernelProfile): KernelProfile {
  const out: Record<string, { ms: number; passes: number }> = {};
  for (const [k, v] of Object.entries(after)) {
    const passes = v.passes - (before[k]?.passes ?? 0);
    if (passes > 0) out[k] = { ms: v.ms - (before[k]?.ms ?? 0), passes };
  }
  return out;
}

export function jacobianOption(p: GridPoint): JacobianOption {
  return p.jacobian === 'block' ? { block: p.blockSize } : p.jacobian;
}

/**
 * One DEER solve, timed until y is on the host (so asynchronous backends are measured to completion),
 * with the solve and the readback of y also timed apart. Inputs were validated once when made: the
 * finiteness scan is left out of the time.
 */
export async function runDeer(
  backend: Backend,
  problem: Problem,
  o: { maxIter: number; onIteration?: () => void; method?: 'deer' | 'auto' | 'shoot' },
): Promise<Run<DeerOutput>> {
  const x = await problem.freshInput();
  const clock = deviceClock(backend);
  const kernels = kernelClock(backend);
  const device0 = clock ? await clock() : undefined;
  const kernels0 = kernels ? await kernels() : undefined;
  const t0 = performance.now();
  const solved = await deer(backend, problem.cell, problem.paramTensors, x, {
    // 'auto' chooses the structure too (its cost model), unless the point asks for quasi-DEER.
    jacobian: o.method === 'auto' && problem.point.jacobian !== 'diagonal' ? 'auto' : jacobianOption(problem.point),
    method: o.method ?? 'deer',
    maxIter: o.maxIter,
    fallback: 'sequential',
    checkFinite: false,
    onIteration: o.onIteration,
  }).finally(() => backend.dispose(x));
  const { y, stats } = solved;
  try {
    const t1 = performance.now();
    const host = await backend.read(y);
    const t2 = performance.now();
    const device1 = clock && device0 !== undefined ? await clock() : undefined;
    const deviceMs = device0 !== undefined && device1 !== undefined ? device1 - device0 : undefined;
    const kernels1 = kernels && kernels0 ? await kernels() : undefined;
    const deviceKernels = kernels0 && kernels1 ? profileDifference(kernels1, kernels0) : undefined;
    return {
      ms: t2 - t0,
      output: {
        y: host,
        stats,
        solveMs: t1 - t0,
        readbackMs: t2 - t1,
        ...(deviceMs === undefined ? {} : { deviceMs }),
        ...(deviceKernels === undefined ? {} : { deviceKernels }),
      },
    };
  } finally {
    backend.dispose(y);
  }
}
