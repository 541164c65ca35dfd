import { type Backend, BackendUnavailableError, type DType, DTypeError, loadBackend } from '@deerjs/core';

/**
 * Imports a backend package for core's registry. Literal specifiers, so a bundler can follow
 * them; tfjs also gets its cpu and wasm engines (deer-bench runs tfjs on wasm, its fastest CPU
 * engine).
 */
async function importBackendPackage(specifier: string): Promise<unknown> {
  switch (specifier) {
    case '@deerjs/webgpu':
      return import('@deerjs/webgpu');
    case '@deerjs/cpu':
      return import('@deerjs/cpu');
    case '@deerjs/tfjs':
      await import('@tensorflow/tfjs-backend-cpu');
      await import('@tensorflow/tfjs-backend-wasm');
      return import('@deerjs/tfjs');
    default:
      return import(specifier);
  }
}

/**
 * Factory options per backend: the dtype, for tfjs the engine, for webgpu timestamp queries (device
 * time, where the adapter offers them).
 */
const optionsFor = (name: string | undefined, dtype?: DType, extra: BackendExtras = {}) => ({
  // Given to every backend: one without it refuses before making a device (DTypeError, below).
  ...(dtype ? { dtype } : {}),
  ...(name === 'tfjs' || name === undefined ? { backend: 'wasm' } : {}),
  ...(name === 'webgpu' || name === undefined
    ? {
        timestamps: extra.timestamps ?? true,
        ...(extra.sequentialKernel ? { sequentialKernel: extra.sequentialKernel } : {}),
        ...(extra.scanKernel ? { scanKernel: extra.scanKernel } : {}),
        ...(extra.denseScanKernel ? { denseScanKernel: extra.denseScanKernel } : {}),
        ...(extra.iterationOverhead !== undefined ? { iterationOverhead: extra.iterationOverhead } : {}),
      }
    : {}),
});

/** Backend options the command line sets (passed to the backends they apply to). */
export interface BackendExtras {
  readonly sequentialKernel?: 'auto' | 'row' | 'workgroup';
  readonly scanKernel?: 'auto' | 'tiled' | 'chunked';
  readonly denseScanKernel?: 'auto' | 'invocation' | 'workgroup';
  readonly iterationOverhead?: number;
  readonly timestamps?: boolean;
}

/** The backend could not be loaded or cannot run the asked dtype; the message says why. */
export class BenchBackendError extends Error {
  override name = 'BenchBackendError';
}

/**
 * Load a backend by name (undefined: the best available). Backend packages are imported from this
 * app, since under pnpm's strict layout core cannot resolve them itself.
 */
export async function openBackend(name: string | undefined, dtype: DType, extra: BackendExtras = {}): Promise<Backend> {
  if (name === undefined) return openBestFor(dtype, extra);
  let backend: Backend;
  try {
    backend = await loadBackend(name, { importer: importBackendPackage, options: optionsFor(name, dtype, extra) });
  } catch (err) {
    if (err instanceof DTypeError) {
      throw new BenchBackendError(`backend '${name}' does not support ${dtype} (${err.message}); use --dtype float32`);
    }
    if (err instanceof BackendUnavailableError) {
      const hint =
        name === 'webgpu'
          ? '\n  (webgpu needs a GPU adapter: a GPU with Vulkan/Metal/D3D12 drivers, or a software Vulkan driver such as llvmpipe)'
          : '';
      throw new BenchBackendError(`${err.message}${hint}`);
    }
    throw err;
  }
  if (!backend.capabilities.dtypes.includes(dtype)) {
    await backend.destroy();
    throw new BenchBackendError(
      `backend '${backend.name}' does not support ${dtype} (it supports ${backend.capabilities.dtypes.join(', ')}); use --dtype ${backend.capabilities.dtypes[0]}`,
    );
  }
  return backend;
}

/**
 * The best available backend that supports `dtype` (webgpu, say, has no float64): the dtype goes
 * to every candidate, and one without it refuses before making a device, so loadBackend moves on.
 */
async function openBestFor(dtype: DType, extra: BackendExtras): Promise<Backend> {
  try {
    return await loadBackend(undefined, { importer: importBackendPackage, options: optionsFor(undefined, dtype, extra) });
  } catch (err) {
    if (err instanceof BackendUnavailableError) throw new BenchBackendError(`no available backend supports ${dtype}:\n${err.message}`);
    throw err;
  }
}

/** The backend's own count of buffer bytes, when it offers one (optional, not part of the interface). */
export function backendBytes(backend: Backend): number | undefined {
  const b = backend as unknown as { liveBytes?: () => number; memoryBytes?: () => number };
  const f = b.liveBytes ?? b.memoryBytes;
  return typeof f === 'function' ? f.call(backend) : undefined;
}
