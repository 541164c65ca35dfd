// The best backend this browser offers: WebGPU when navigator.gpu gives an adapter, else the CPU
// backend in float64. Backends register explicitly: a bundler cannot follow core's import by name.
import { type Backend, loadBackend } from '@deerjs/core';

export type BackendChoice = 'auto' | 'webgpu' | 'cpu';

export interface Chosen {
  readonly backend: Backend;
  /** Why this backend: what the browser offered, or what failed. */
  readonly reason: string;
}

interface GpuLike {
  requestAdapter(): Promise<unknown>;
}

async function webgpuUnavailable(): Promise<string | null> {
  const gpu = (navigator as Navigator & { gpu?: GpuLike }).gpu;
  if (!gpu) return 'navigator.gpu is not available';
  const adapter = await gpu.requestAdapter().catch(() => null);
  return adapter ? null : 'navigator.gpu.requestAdapter() gave no adapter';
}

async function loadCpu(reason: string): Promise<Chosen> {
  const { register } = await import('@deerjs/cpu');
  register();
  return { backend: await loadBackend('cpu', { options: { dtype: 'float64' } }), reason };
}

export async function chooseBackend(choice: BackendChoice): Promise<Chosen> {
  if (choice === 'cpu') return loadCpu('asked for cpu');
  const missing = await webgpuUnavailable();
  if (missing && choice === 'webgpu') throw new Error(`WebGPU was asked for, but ${missing}`);
  if (missing) return loadCpu(`${missing}, so the CPU backend runs`);
  const { register } = await import('@deerjs/webgpu');
  register();
  try {
    return { backend: await loadBackend('webgpu'), reason: 'navigator.gpu gave an adapter' };
  } catch (err) {
    if (choice === 'webgpu') throw err;
    return loadCpu(
      `WebGPU failed (${err instanceof Error ? err.message : String(err)}), so the CPU backend runs`,
    );
  }
}
