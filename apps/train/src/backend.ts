import { type Backend, type DType, DTypeError, loadBackend } from '@deerjs/core';
import { UsageError } from './errors.js';

/** Load a deerjs backend by name through core's registry (the packages register on import). */
export async function openBackend(name: string, dtype: DType, resuming = false): Promise<Backend> {
  // Given to every backend: one without it refuses before making a device (DTypeError, below).
  const options: Record<string, unknown> = { dtype };
  if (name === 'tfjs') {
    // tfjs needs an engine registered before the deerjs backend starts; the CPU one is always here.
    await import('@tensorflow/tfjs-backend-cpu');
    options.backend = 'cpu';
  }
  // Resuming, the dtype is the checkpoint's, which --dtype cannot change: the hint names a backend.
  const unsupported = (why: string) =>
    new UsageError(
      resuming
        ? `backend ${name} does not support ${dtype}, the dtype of the run in its checkpoint: resume it with --backend cpu`
        : `backend ${name} does not support ${dtype} (${why}): pass --dtype float32`,
    );
  let backend: Backend;
  try {
    backend = await loadBackend(name, { importer: (s) => import(s), options });
  } catch (err) {
    throw err instanceof DTypeError ? unsupported(err.message) : err;
  }
  // A backend that took the dtype without refusing it, yet lacks it.
  if (!backend.capabilities.dtypes.includes(dtype)) {
    await backend.destroy();
    throw unsupported(`it supports ${backend.capabilities.dtypes.join(', ')}`);
  }
  return backend;
}
