import { CpuBackend, type CpuBackendOptions } from './backend.js';

/**
 * The reference backend: the plain interpreter (closures over one (b, t) element at a time, dense
 * Jacobian temporaries, time-order scan). Deliberately simple: in float64 it is the oracle the
 * conformance suite checks every backend against, the fast CPU backend included.
 */
export function createReferenceBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options);
}

export { CpuBackend as ReferenceBackend, type CpuBackendOptions } from './backend.js';
