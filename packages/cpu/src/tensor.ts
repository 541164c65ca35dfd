import { allocating, type DType, type Tensor, TensorStateError, type TypedArray } from '@deerjs/core';

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

/** A copy of `a` (a read, a tensor made from another's values); OutOfMemoryError where it cannot be made. */
export const copyOf = (a: TypedArray): TypedArray => allocating('cpu', a.byteLength, () => a.slice());
