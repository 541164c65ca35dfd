import { availableParallelism } from 'node:os';
import { ownOptions, registerBackend } from '@deerjs/core';
import type { WebGpuBackend } from './backend.js';
import { createOn, OPTION_NAMES, type WebGpuBackendOptions } from './create.js';

export { WebGpuBackend } from './backend.js';
export type { WebGpuBackendOptions } from './create.js';
export { ShaderCompileError } from './errors.js';

/**
 * A WebGPU backend on Dawn (the `webgpu` package). The GPU object stays with the backend, never
 * on globalThis; `destroy()` releases the device so the process can exit.
 */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  // Imported here, not at module load: importing @deerjs/webgpu must not load the native addon.
  const { create } = await import('webgpu');
  const gpu = create([]);
  return createOn(gpu, options, availableParallelism(), gpu);
}

/** Register the WebGPU backend with core's registry as 'webgpu' (priority 300). */
export function register(): void {
  registerBackend('webgpu', (options, context) => createWebGpuBackend(ownOptions(options, OPTION_NAMES, context) as WebGpuBackendOptions), 300, OPTION_NAMES);
}
