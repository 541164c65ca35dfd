import { describeValue, InvalidArgumentError } from '../errors.js';
import type { Backend, BackendCapabilities } from './types.js';

/**
 * The same backend, stating other capabilities: every method runs on `backend` itself (tensors
 * are shared), only `capabilities` reads differently. For what-if studies and tests of decisions
 * that depend on them — e.g. `{ parallelism: 1e9 }` to see 'auto''s Newton path as it runs on a
 * GPU's worth of lanes, on any machine.
 */
export function withCapabilities(backend: Backend, overrides: Partial<BackendCapabilities>): Backend {
  // Sizes and rates the planners divide by: NaN or ≤ 0 had come out as a NaN window and a
  // TypeError deep inside a solve.
  for (const key of ['maxBufferBytes', 'memoryBytes', 'parallelism'] as const) {
    const v = overrides[key];
    if (v !== undefined && !(typeof v === 'number' && v > 0))
      throw new InvalidArgumentError(`capabilities.${key}`, 'a number > 0', describeValue(v));
  }
  const overhead = overrides.iterationOverhead;
  if (overhead !== undefined && !(typeof overhead === 'number' && overhead >= 0 && Number.isFinite(overhead)))
    throw new InvalidArgumentError('capabilities.iterationOverhead', 'a finite number ≥ 0', describeValue(overhead));
  const capabilities: BackendCapabilities = { ...backend.capabilities, ...overrides };
  const view = new Proxy(backend, {
    get(target, key) {
      if (key === 'capabilities') return capabilities;
      const v = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  views.set(view, underlyingBackend(backend));
  return view;
}

/** Each view made by withCapabilities → the backend its methods run on. */
const views = new WeakMap<Backend, Backend>();

/** @internal The backend whose methods (and device counters) `backend` uses: itself, or a view's. */
export function underlyingBackend(backend: Backend): Backend {
  return views.get(backend) ?? backend;
}
