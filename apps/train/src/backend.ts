import { type Backend, type DType, loadBackend } from '@deerjs/core';
import { UsageError } from './errors.js';

/** Load a deerjs backend by name through core's registry (the packages register on import). */
export async function openBackend(name: string, dtype: DType): Promise<Backend> {
  // Only cpu has a choice of dtype; the others' one dtype is checked after loading, with a hint.
  const options: Record<string, unknown> = name === 'cpu' ? { dtype } : {};
  if (name === 'tfjs') {
    // tfjs needs an engine registered before the deerjs backend starts; the CPU one is always here.
    await import('@tensorflow/tfjs-backend-cpu');
    options.backend = 'cpu';
  }
  const backend = await loadBackend(name, { importer: (s) => import(s), options });
  if (!backend.capabilities.dtypes.includes(dtype)) {
    await backend.destroy();
    throw new UsageError(
      `backend ${name} does not support ${dtype} (it supports ${backend.capabilities.dtypes.join(', ')}): pass --dtype ${backend.capabilities.dtypes[0]}`,
    );
  }
  return backend;
}
