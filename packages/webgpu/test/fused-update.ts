import { type NewtonUpdate, type NewtonUpdateOptions, type ScanArgs, scanThenUpdate, type Tensor } from '@deerjs/core';
import { expect } from 'vitest';
import type { WebGpuBackend } from '../src/index.js';

/**
 * The backend's fused `scanUpdate` against the scan then the update kernel on the same backend: the
 * same iterate bit for bit and the same row measures. Returns the fused measures for further checks.
 */
export async function expectFusedAsComposed(
  backend: WebGpuBackend,
  args: ScanArgs,
  old: Tensor,
  opts: NewtonUpdateOptions,
): Promise<NewtonUpdate['rows']> {
  const fused = await backend.scanUpdate(args, old, opts);
  const composed = await scanThenUpdate(backend, args, old, opts);
  const [fy, cy] = [await backend.read(fused.y), await backend.read(composed.y)];
  backend.dispose(fused.y);
  backend.dispose(composed.y);
  expect(Array.from(fy)).toEqual(Array.from(cy));
  for (const key of ['replaced', 'clipped', 'settled'] as const)
    expect(Array.from(fused.rows[key]), key).toEqual(Array.from(composed.rows[key]));
  expect(Array.from(fused.rows.maxScaledDiff)).toEqual(Array.from(composed.rows.maxScaledDiff));
  return fused.rows;
}
