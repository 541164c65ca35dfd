import { type DType, OutOfMemoryError, type Tensor, TensorStateError, type TypedArray } from '@deerjs/core';

export const ARRAY: Record<DType, Float64ArrayConstructor | Float32ArrayConstructor> = {
  float64: Float64Array,
  float32: Float32Array,
};

/** A tensor held in a typed array of its dtype. */
export class CpuTensor implements Tensor {
  readonly backendName = 'cpu';
  readonly size: number;
  disposed = false;

  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    private readonly buffer: TypedArray,
    /** The backend instance that made it (its leak count and pooled arrays are that backend's). */
    readonly owner: object,
  ) {
    this.size = buffer.length;
  }

  /** The backing array; throws after dispose. */
  get data(): TypedArray {
    if (this.disposed) throw new TensorStateError('cpu: tensor used after dispose');
    return this.buffer;
  }
}

/**
 * `alloc()`, an allocation of `bytes`: where the engine refuses it with a RangeError (a length over
 * its limit, memory it could not get) it is the library's OutOfMemoryError instead.
 */
export function allocating<T>(bytes: number, alloc: () => T): T {
  try {
    return alloc();
  } catch (err) {
    if (err instanceof RangeError) throw new OutOfMemoryError('cpu', bytes, err.message);
    throw err;
  }
}

/** A copy of `a` (a read, a tensor made from another's values); OutOfMemoryError where it cannot be made. */
export const copyOf = (a: TypedArray): TypedArray => allocating(a.byteLength, () => a.slice());
