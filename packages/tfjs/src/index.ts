import { registerBackend } from '@deerjs/core';
import * as tfDefault from '@tensorflow/tfjs-core';
import { TfjsBackend, type TfjsBackendOptions } from './backend.js';
import type { Tf } from './tensor.js';

export { TfjsBackend, type TfjsBackendOptions } from './backend.js';
export { type DeerRnnOptions, deerRnn } from './op.js';
export type { ScanMethod } from './scan.js';
export { TfjsTensor } from './tensor.js';

export interface CreateTfjsBackendOptions extends TfjsBackendOptions {
  /** The @tensorflow/tfjs(-core) namespace to use; default the imported @tensorflow/tfjs-core. */
  readonly tf?: Tf;
  /** A tfjs backend to switch to first (tf.setBackend), e.g. 'cpu', 'wasm', 'webgl', 'webgpu'. */
  readonly backend?: string;
}

/** A deerjs backend over tfjs, after `tf.setBackend(backend)` (when given) and `tf.ready()`. */
export async function createTfjsBackend(options: CreateTfjsBackendOptions = {}): Promise<TfjsBackend> {
  const tf = options.tf ?? tfDefault;
  if (options.backend !== undefined && tf.getBackend() !== options.backend) {
    const ok = await tf.setBackend(options.backend);
    if (!ok)
      throw new Error(
        `tfjs backend '${options.backend}' could not be initialised (is its package imported?)`,
      );
  }
  await tf.ready();
  return new TfjsBackend(tf, options);
}

/** Register with core's registry as 'tfjs' (priority 200). */
export function register(): void {
  registerBackend('tfjs', (options) => createTfjsBackend(options as CreateTfjsBackendOptions), 200);
}
