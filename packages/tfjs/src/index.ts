import {
  type Backend,
  BackendUnavailableError,
  checkOptionNames,
  DTypeError,
  describeValue,
  InvalidArgumentError,
  ownOptions,
  registerBackend,
  UnsupportedOptionError,
} from '@deerjs/core';
import * as tfDefault from '@tensorflow/tfjs-core';
import { CREATE_OPTION_NAMES, TfjsBackend, type TfjsBackendOptions } from './backend.js';
import type { Tf } from './tensor.js';

export { TfjsBackend, type TfjsBackendOptions } from './backend.js';
export { type DeerRnnOptions, deerRnn } from './op.js';
export type { ScanMethod } from './scan.js';
export { TfjsTensor } from './tensor.js';

export interface CreateTfjsBackendOptions extends Omit<TfjsBackendOptions, 'hostKernels'> {
  /**
   * Step programs on a host backend (see `TfjsBackendOptions.hostKernels`): default `@deerjs/cpu`'s
   * (float32, threads on every core) when the engine is cpu or wasm and that package is installed;
   * false for tfjs ops always.
   */
  readonly hostKernels?: Backend | false;
  /** The @tensorflow/tfjs(-core) namespace to use; default the imported @tensorflow/tfjs-core. */
  readonly tf?: Tf;
  /** A tfjs backend to switch to first (tf.setBackend), e.g. 'cpu', 'wasm', 'webgl', 'webgpu'. */
  readonly backend?: string;
  /** 'float32', the only dtype (accepted so that `{ dtype }` can be given to any backend); float64 is a DTypeError. */
  readonly dtype?: 'float32';
}


/** A deerjs backend over tfjs, after `tf.setBackend(backend)` (when given) and `tf.ready()`. */
export async function createTfjsBackend(options: CreateTfjsBackendOptions = {}): Promise<TfjsBackend> {
  checkOptionNames(options, CREATE_OPTION_NAMES, 'createTfjsBackend');
  if (options.dtype !== undefined && options.dtype !== 'float32')
    throw new DTypeError('dtype', 'float32 (the tfjs backend computes in float32)', String(options.dtype));
  const tf = options.tf ?? tfDefault;
  const needs = ['ready', 'getBackend', 'setBackend', 'tensor', 'tidy'] as const;
  if (typeof tf !== 'object' || tf === null || needs.some((k) => typeof (tf as unknown as Record<string, unknown>)[k] !== 'function'))
    throw new InvalidArgumentError('tf', `the @tensorflow/tfjs(-core) namespace (with ${needs.join(', ')})`, describeValue(tf));
  if (options.backend !== undefined && typeof options.backend !== 'string')
    throw new UnsupportedOptionError('backend', options.backend, "the name of a tfjs backend ('cpu', 'wasm', 'webgl', …)");
  if (options.backend !== undefined && tf.getBackend() !== options.backend) {
    let ok = false;
    try {
      ok = await tf.setBackend(options.backend);
    } catch {
      // tfjs throws for a name it has never heard of, and answers false for one that failed to start.
    }
    if (!ok)
      throw new BackendUnavailableError('tfjs', [
        { name: `tfjs (${options.backend})`, reason: `tfjs backend '${options.backend}' could not be initialised (is its package imported?)` },
      ]);
  }
  try {
    await tf.ready();
  } catch (err) {
    // tfjs-core alone has no engine: "No backend found in registry."
    throw new BackendUnavailableError('tfjs', [
      {
        name: 'tfjs',
        reason: `tfjs has no engine to run on (${err instanceof Error ? err.message : String(err)}): import one first, e.g. import '@tensorflow/tfjs-backend-cpu' (or -wasm, -webgl, -webgpu)`,
      },
    ]);
  }
  const engine = tf.getBackend();
  const { hostKernels: asked, tf: _tf, backend: _backend, dtype: _dtype, ...rest } = options;
  const hostKernels =
    asked === false ? undefined : (asked ?? (engine === 'cpu' || engine === 'wasm' ? await cpuKernels() : undefined));
  return new TfjsBackend(tf, { ...rest, ...(hostKernels ? { hostKernels } : {}) }, hostKernels !== undefined && asked === undefined);
}

/** `@deerjs/cpu`'s backend for step programs, when that package is installed (an optional peer). */
async function cpuKernels(): Promise<Backend | undefined> {
  const name = '@deerjs/cpu';
  try {
    const cpu = (await import(name)) as { createCpuBackend(o: { dtype: 'float32' }): Backend };
    return cpu.createCpuBackend({ dtype: 'float32' });
  } catch {
    return undefined;
  }
}

/** Register with core's registry as 'tfjs' (priority 200). */
export function register(): void {
  registerBackend('tfjs', (options, context) => createTfjsBackend(ownOptions(options, CREATE_OPTION_NAMES, context) as CreateTfjsBackendOptions), 200, CREATE_OPTION_NAMES);
}
