import { checkOptionNames } from '@deerjs/core';
import { OnnxFormatError, OnnxInputError, OnnxRuntimeError, OnnxRuntimeUnavailableError } from './errors.js';
import type { OnnxData, OnnxTensor } from './tensor.js';

/** The few parts of onnxruntime-node used here (so this package's types do not need it installed). */
interface OrtTensor {
  readonly data: unknown;
  readonly dims: readonly number[];
}
interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface OrtModule {
  InferenceSession: { create(bytes: Uint8Array, options?: object): Promise<OrtSession> };
  Tensor: new (type: string, data: OnnxData, dims: readonly number[]) => OrtTensor;
}

export interface OrtOptions {
  /** How to import onnxruntime-node; tests inject a failing importer. Default: dynamic import. */
  readonly importer?: () => Promise<unknown>;
  /** Passed to InferenceSession.create; default CPU execution provider. */
  readonly sessionOptions?: object;
}

/** An onnxruntime session over one model: reuse it to time repeated runs. */
export interface OrtReferenceSession {
  run(inputs: Readonly<Record<string, OnnxTensor>>): Promise<Record<string, OnnxTensor>>;
  release(): Promise<void>;
}

const TYPE_NAMES = new Map<unknown, string>([
  [Float32Array, 'float32'],
  [Float64Array, 'float64'],
  [Int32Array, 'int32'],
  [BigInt64Array, 'int64'],
]);

async function importOrt(importer: () => Promise<unknown>): Promise<OrtModule> {
  let mod: unknown;
  try {
    mod = await importer();
  } catch (err) {
    const code = (err as { code?: string }).code;
    const reason =
      code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
        ? 'not installed'
        : String((err as Error)?.message ?? err);
    throw new OnnxRuntimeUnavailableError(reason);
  }
  const ort = ((mod as { default?: unknown } | null)?.default ?? mod) as Partial<OrtModule> | null;
  if (typeof ort?.InferenceSession?.create !== 'function' || typeof ort.Tensor !== 'function') {
    throw new OnnxRuntimeUnavailableError(
      'the imported module is not onnxruntime-node (no InferenceSession/Tensor)',
    );
  }
  return ort as OrtModule;
}

/** Open an onnxruntime-node session (CPU EP) for `modelBytes`; onnxruntime-node is imported lazily. */
export async function openOrtSession(
  modelBytes: Uint8Array,
  options: OrtOptions = {},
): Promise<OrtReferenceSession> {
  checkOptionNames(options, ['importer', 'sessionOptions'], 'openOrtSession');
  const ort = await importOrt(options.importer ?? (() => import('onnxruntime-node')));
  let session: OrtSession;
  try {
    session = await ort.InferenceSession.create(modelBytes, options.sessionOptions ?? { executionProviders: ['cpu'] });
  } catch (err) {
    throw new OnnxFormatError(`onnxruntime could not load the model: ${errorMessage(err)}`, { cause: err });
  }
  return {
    async run(inputs) {
      const feeds: Record<string, OrtTensor> = {};
      if (inputs === null || typeof inputs !== 'object')
        throw new OnnxInputError('<inputs>', 'expected an object of { data, dims } by name');
      const accepted = new Set(session.inputNames);
      for (const name of Object.keys(inputs)) {
        // onnxruntime-node passes only the session's input names on and drops any other feed
        // (an initializer that is also a graph input among them): refused, never ignored.
        if (!accepted.has(name))
          throw new OnnxInputError(
            name,
            `onnxruntime does not take this input (its inputs: ${[...accepted].join(', ') || 'none'}); an initializer that is also a graph input cannot be overridden through onnxruntime-node`,
          );
      }
      for (const name of accepted)
        if (!Object.hasOwn(inputs, name)) throw new OnnxInputError(name, 'missing: onnxruntime needs every input of the session');
      for (const [name, t] of Object.entries(inputs)) {
        const data = (t as Partial<OnnxTensor> | null)?.data;
        const type = ArrayBuffer.isView(data) ? TYPE_NAMES.get(data.constructor) : undefined;
        if (!type || !Array.isArray(t.dims))
          throw new OnnxInputError(
            name,
            ArrayBuffer.isView(data) && Array.isArray(t.dims)
              ? `unsupported data type ${data.constructor.name} (supported: Float32Array, Float64Array, Int32Array, BigInt64Array)`
              : 'expected { data: Float32Array | Float64Array | Int32Array | BigInt64Array, dims: number[] }',
          );
        const dims = t.dims as unknown[];
        if (!dims.every((d) => Number.isSafeInteger(d) && (d as number) >= 0))
          throw new OnnxInputError(name, `dims must be integers ≥ 0, got [${dims.join(', ')}]`);
        const count = (dims as number[]).reduce((a, d) => a * d, 1);
        if (count !== (data as ArrayLike<unknown>).length)
          throw new OnnxInputError(name, `dims [${dims.join(', ')}] hold ${count} values, data has ${(data as ArrayLike<unknown>).length}`);
        // onnxruntime-node aborts the whole process on an empty recurrent input.
        if (count === 0) throw new OnnxInputError(name, `empty tensor (dims [${dims.join(', ')}]); onnxruntime cannot run it`);
        feeds[name] = new ort.Tensor(type, t.data, t.dims);
      }
      let results: Record<string, OrtTensor>;
      try {
        results = await session.run(feeds);
      } catch (err) {
        throw new OnnxRuntimeError(errorMessage(err), { cause: err });
      }
      const out: Record<string, OnnxTensor> = {};
      for (const name of session.outputNames) {
        const r = results[name];
        if (r) out[name] = { data: r.data as OnnxData, dims: [...r.dims] };
      }
      return out;
    },
    release: () => session.release(),
  };
}

/** Run `modelBytes` once in onnxruntime-node (CPU EP) and return its outputs by name. */
export async function ortReference(
  modelBytes: Uint8Array,
  inputs: Readonly<Record<string, OnnxTensor>>,
  options: OrtOptions = {},
): Promise<Record<string, OnnxTensor>> {
  const session = await openOrtSession(modelBytes, options);
  try {
    return await session.run(inputs);
  } finally {
    await session.release();
  }
}

const errorMessage = (err: unknown): string => String((err as Error | null)?.message ?? err);
