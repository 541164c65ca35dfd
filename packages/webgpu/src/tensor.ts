import type { DType, Tensor } from '@deerjs/core';

/** A float32 tensor held in one GPU storage buffer (possibly larger than `size` floats). */
export class GpuTensor implements Tensor {
  readonly backendName = 'webgpu';
  readonly dtype: DType = 'float32';
  readonly size: number;
  disposed = false;

  constructor(
    readonly shape: readonly number[],
    readonly buffer: GPUBuffer,
    /** The backend instance (device) whose buffer this is: another device cannot bind it. */
    readonly owner: object,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
  }
}
