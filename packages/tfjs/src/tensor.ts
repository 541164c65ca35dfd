import { type DType, type Tensor, TensorStateError } from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';

export type Tf = typeof tfc;

/**
 * A deerjs tensor around a float32 tf.Tensor. `owned` is false for views of a caller's tf.Tensor
 * (the tfjs op wraps its inputs): disposing the wrapper then leaves the caller's tensor alone.
 */
export class TfjsTensor implements Tensor {
  readonly backendName = 'tfjs';
  readonly dtype: DType = 'float32';
  readonly size: number;
  disposed = false;

  constructor(
    readonly shape: readonly number[],
    private readonly value: tfc.Tensor,
    /** The backend instance that made it (the leak count is that backend's). */
    readonly owner: object,
    readonly owned = true,
  ) {
    this.size = value.size;
  }

  /** The wrapped tf.Tensor; throws after dispose. */
  get tf(): tfc.Tensor {
    if (this.disposed || this.value.isDisposed) throw new TensorStateError('tfjs: tensor used after dispose');
    return this.value;
  }
}
