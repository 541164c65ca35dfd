import type { Backend, BackendCapabilities } from './types.js';

/**
 * The same backend, stating other capabilities: every method runs on `backend` itself (tensors
 * are shared), only `capabilities` reads differently. For what-if studies and tests of decisions
 * that depend on them — e.g. `{ parallelism: 1e9 }` to see 'auto''s Newton path as it runs on a
 * GPU's worth of lanes, on any machine.
 */
export function withCapabilities(backend: Backend, overrides: Partial<BackendCapabilities>): Backend {
  const capabilities: BackendCapabilities = { ...backend.capabilities, ...overrides };
  return new Proxy(backend, {
    get(target, key) {
      if (key === 'capabilities') return capabilities;
      const v = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
