import { ownOptions, registerBackend } from '@deerjs/core';
import type { CpuBackend } from './backend.js';
import { FAST_CPU_OPTION_NAMES, FastCpuBackend, type FastCpuBackendOptions } from './compiled/backend.js';

export { CpuBackend, type CpuBackendOptions } from './backend.js';
export { FastCpuBackend, type FastCpuBackendOptions } from './compiled/backend.js';
export { createReferenceBackend } from './reference.js';

/** A new CPU backend: step programs compiled to specialised JavaScript (see FastCpuBackend). */
export function createCpuBackend(options: FastCpuBackendOptions = {}): CpuBackend {
  return new FastCpuBackend(options);
}

/** Register the CPU backend with core's registry as 'cpu' (priority 100). */
export function register(): void {
  registerBackend('cpu', (options, context) => createCpuBackend(ownOptions(options, FAST_CPU_OPTION_NAMES, context) as FastCpuBackendOptions), 100, FAST_CPU_OPTION_NAMES);
}
