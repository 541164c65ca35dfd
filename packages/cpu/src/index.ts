import { registerBackend } from '@deerjs/core';
import { CpuBackend, type CpuBackendOptions } from './backend.js';

export { CpuBackend, type CpuBackendOptions } from './backend.js';

/** A new CPU backend. */
export function createCpuBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options);
}

/** Register the CPU backend with core's registry as 'cpu' (priority 100). */
export function register(): void {
  registerBackend('cpu', (options) => createCpuBackend(options as CpuBackendOptions), 100);
}
