import { BackendUnavailableError, ownOptions, registerBackend } from '@deerjs/core';
import type { WebGpuBackend } from './backend.js';
import { createOn, OPTION_NAMES, type WebGpuBackendOptions } from './create.js';

export { WebGpuBackend } from './backend.js';
export type { WebGpuBackendOptions } from './create.js';
export { ShaderCompileError } from './errors.js';

/** A WebGPU backend on the browser's `navigator.gpu`. */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const nav = (globalThis as { navigator?: { gpu?: GPU; hardwareConcurrency?: number } }).navigator;
  const gpu = nav?.gpu;
  if (!gpu)
    throw new BackendUnavailableError('webgpu', [{ name: 'webgpu', reason: 'navigator.gpu is not available in this browser' }]);
  return createOn(gpu, options, nav?.hardwareConcurrency ?? 4);
}

/** Register the WebGPU backend with core's registry as 'webgpu' (priority 300). */
export function register(): void {
  registerBackend('webgpu', (options, context) => createWebGpuBackend(ownOptions(options, OPTION_NAMES, context) as WebGpuBackendOptions), 300, OPTION_NAMES);
}
