import { type Backend, type DType, DTypeError, loadBackend } from '@deerjs/core';
import { UsageError } from './errors.js';

/**
 * Load a deerjs backend by name through core's registry (the packages register on import).
 * `resuming`: the dtype is the checkpoint's, which --dtype cannot change, so the hint names a backend.
 */
export async function openBackend(name: string, dtype: DType, resuming = false): Promise<Backend> {
  // Given to every backend: one without it refuses before making a device (DTypeError, below).
  const options: Record<string, unknown> = { dtype };
  if (name === 'tfjs') {
    // tfjs needs an engine registered before the deerjs backend starts; the CPU one is always here.
    await import('@tensorflow/tfjs-backend-cpu');
    options.backend = 'cpu';
  }
  let backend: Backend;
  try {
    backend = await loadBackend(name, { importer: (s) => import(s), options });
  } catch (err) {
    if (err instanceof DTypeError)
      throw new UsageError(
        resuming
          ? `backend ${name} does not support ${dtype}, the dtype of the run in its checkpoint: resume it with --backend cpu`
          : `backend ${name} does not support ${dtype} (${err.message}): pass --dtype float32`,
      );
    throw err;
  }
  if (!backend.capabilities.dtypes.includes(dtype)) {
    await backend.destroy();
    throw new UsageError(
      `backend ${name} does not support ${dtype} (it supports ${backend.capabilities.dtypes.join(', ')}): pass --dtype ${backend.capabilities.dtypes[0]}`,
    );
  }
  return backend;
}
