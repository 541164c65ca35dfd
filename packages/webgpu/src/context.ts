import { DeviceLostError, OutOfMemoryError } from '@deerjs/core';
import { compileError } from './errors.js';
import { MAP_READ, STORAGE_USAGE, USAGE } from './flags.js';
import { BufferPool } from './pool.js';
import { WG } from './wgsl/common.js';

const MAX_GROUPS = 65535;

/**
 * One device and what the backend keeps on it: buffer pool, pipeline cache, fault state. Every
 * recorded command is submitted at once, so queue order is program order.
 */
export class GpuContext {
  readonly pool: BufferPool;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly uniforms: GPUBuffer[] = [];
  /** Asynchronous checks (compilation, allocation) not yet awaited. */
  private pending: Promise<void>[] = [];
  private fault: Error | null = null;
  private destroyed = false;
  private lost: DeviceLostError | null = null;
  private readonly lostSignal: Promise<never>;

  constructor(
    readonly device: GPUDevice,
    readonly maxBindingBytes: number,
  ) {
    this.pool = new BufferPool((bytes) => this.allocate(bytes), maxBindingBytes);
    this.lostSignal = device.lost.then((info) => {
      this.lost = new DeviceLostError('webgpu', info.message || String(info.reason ?? 'unknown'));
      throw this.lost;
    });
    // Observed only through races; keep an unobserved rejection from surfacing on its own.
    this.lostSignal.catch(() => {});
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) =>
      this.setFault(new Error(`webgpu: ${ev.error.message}`));
  }

  /**
   * Keep an asynchronous check for `settle()`. Its rejection (a check still in flight when the
   * device is destroyed or lost) becomes the backend's fault, never an unhandled rejection.
   */
  private track(check: Promise<void>): void {
    this.pending.push(
      check.catch((err: unknown) => {
        if (!this.destroyed) this.setFault(err instanceof Error ? err : new Error(`webgpu: ${String(err)}`));
      }),
    );
  }

  private setFault(err: Error): void {
    if (!this.fault) this.fault = err;
  }

  /** Throw if the device is gone or an earlier asynchronous error is known. */
  check(): void {
    if (this.lost) throw this.lost;
    if (this.fault) throw this.fault;
  }

  /** Wait for outstanding compile and allocation checks, then `check()`. */
  async settle(): Promise<void> {
    if (this.pending.length > 0) {
      const p = this.pending;
      this.pending = [];
      await Promise.race([Promise.all(p), this.lostSignal]);
    }
    this.check();
  }

  private allocate(bytes: number): GPUBuffer {
    const limit = Math.min(this.maxBindingBytes, this.device.limits.maxBufferSize);
    if (bytes > limit) throw new OutOfMemoryError('webgpu', bytes, `largest buffer is ${limit} bytes`);
    this.device.pushErrorScope('out-of-memory');
    let buf: GPUBuffer;
    try {
      buf = this.device.createBuffer({ size: bytes, usage: STORAGE_USAGE });
    } catch (err) {
      void this.device.popErrorScope();
      throw new OutOfMemoryError('webgpu', bytes, err instanceof Error ? err.message : String(err));
    }
    this.track(
      this.device.popErrorScope().then((e) => {
        if (e) this.setFault(new OutOfMemoryError('webgpu', bytes, e.message));
      }),
    );
    return buf;
  }

  /** A pooled storage buffer of at least `bytes` (≥ 16). */
  buffer(bytes: number): GPUBuffer {
    this.check();
    return this.pool.acquire(bytes);
  }

  release(buf: GPUBuffer): void {
    if (!this.lost) this.pool.release(buf);
  }

  pipeline(code: string, label: string): GPUComputePipeline {
    const hit = this.pipelines.get(code);
    if (hit) return hit;
    const module = this.device.createShaderModule({ code, label });
    this.device.pushErrorScope('validation');
    const pipeline = this.device.createComputePipeline({
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
      label,
    });
    const scope = this.device.popErrorScope();
    this.track(
      module.getCompilationInfo().then(async (info) => {
        if (info.messages.some((m) => m.type === 'error'))
          this.setFault(compileError(label, code, info.messages));
        const e = await scope;
        if (e) this.setFault(new Error(`webgpu: pipeline ${label}: ${e.message}`));
      }),
    );
    this.pipelines.set(code, pipeline);
    return pipeline;
  }

  /** Compile WGSL and reject with a ShaderCompileError (line number and text) if it fails. */
  async compileChecked(code: string, label: string): Promise<void> {
    this.check();
    // Scoped, so a failure here is this call's error and not a fault of the backend.
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code, label });
    const scope = this.device.popErrorScope();
    const info = await Promise.race([module.getCompilationInfo(), this.lostSignal]);
    await scope;
    if (info.messages.some((m) => m.type === 'error')) throw compileError(label, code, info.messages);
  }

  private uniform(values: readonly number[]): GPUBuffer {
    const buf =
      this.uniforms.pop() ?? this.device.createBuffer({ size: 32, usage: USAGE.UNIFORM | USAGE.COPY_DST });
    const data = new Uint32Array(8);
    if (values.length > 7) throw new Error('webgpu: uniform slot 7 is reserved (always 0)');
    values.forEach((v, i) => {
      data[i] = v >>> 0;
    });
    this.device.queue.writeBuffer(buf, 0, data);
    return buf;
  }

  /**
   * Run `code` over `threads` invocations: binding 0 is the uniform block (u32 values; use
   * `f32Bits` for floats), bindings 1.. the buffers in order.
   */
  dispatch(
    code: string,
    label: string,
    buffers: readonly GPUBuffer[],
    values: readonly number[],
    threads: number,
  ): void {
    this.check();
    if (threads <= 0) return;
    const pipeline = this.pipeline(code, label);
    const ub = this.uniform(values);
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: ub } },
      ...buffers.map((b, i) => ({ binding: i + 1, resource: { buffer: b } })),
    ];
    const bind = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const groups = Math.ceil(threads / WG);
    const x = Math.min(groups, MAX_GROUPS);
    const y = Math.ceil(groups / x);
    if (y > MAX_GROUPS)
      throw new OutOfMemoryError('webgpu', threads * 4, `${threads} invocations exceed one dispatch`);
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(x, y);
    pass.end();
    this.device.queue.submit([enc.finish()]);
    this.uniforms.push(ub);
  }

  /** Record copies and clears with `fill` and submit them. */
  encode(fill: (enc: GPUCommandEncoder) => void): void {
    this.check();
    const enc = this.device.createCommandEncoder();
    fill(enc);
    this.device.queue.submit([enc.finish()]);
  }

  write(buf: GPUBuffer, data: Float32Array | Uint32Array): void {
    this.check();
    if (data.byteLength > 0) this.device.queue.writeBuffer(buf, 0, data);
  }

  /** Copy `bytes` from `src` at `offset` back to the host. Rejects with DeviceLostError on loss. */
  async readBytes(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.check();
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ size, usage: MAP_READ_USAGE });
    try {
      this.encode((enc) => enc.copyBufferToBuffer(src, offset, staging, 0, size));
      await this.settle();
      try {
        await Promise.race([staging.mapAsync(MAP_READ), this.lostSignal]);
      } catch (err) {
        if (this.lost) throw this.lost;
        throw err;
      }
      const out = staging.getMappedRange(0, size).slice(0);
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
    }
  }

  /** For tests: lose the device as a driver fault would. */
  loseDevice(): void {
    this.device.destroy();
  }

  destroy(): void {
    this.destroyed = true;
    this.pool.clear();
    for (const u of this.uniforms) u.destroy();
    this.uniforms.length = 0;
    this.pipelines.clear();
    this.device.destroy();
  }
}

const MAP_READ_USAGE = MAP_READ | USAGE.COPY_DST;

/** A float's bit pattern, for the uniform block. */
export function f32Bits(v: number): number {
  const f = new Float32Array([v]);
  return new Uint32Array(f.buffer)[0]!;
}
