import { DeviceLostError, OutOfMemoryError, TensorStateError } from '@deerjs/core';
import { compileError } from './errors.js';
import { MAP_READ, STORAGE_USAGE, USAGE } from './flags.js';
import { BufferPool } from './pool.js';
import { WG } from './wgsl/common.js';

const MAX_GROUPS = 65535;
/** Uniform buffers and bind groups kept for reuse (each 32 bytes / a few hundred bytes of host memory). */
const UNIFORM_CACHE = 1024;
const BIND_GROUP_CACHE = 4096;
/** Commands recorded before the pending encoder is submitted anyway (bounds its size). */
const MAX_RECORDED = 1024;
/** Writes into a buffer that pending commands use go through an upload buffer up to this size. */
const MAX_UPLOAD_BYTES = 1 << 20;
/** Read staging buffers up to this size are kept for the next read. */
const MAX_KEPT_STAGING_BYTES = 1 << 20;
const KEPT_STAGING = 4;

/** Copies and clears, recorded into the pending encoder. */
export interface Recorder {
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void;
  clear(buf: GPUBuffer, offset: number, bytes: number): void;
}

/** One submission's timestamp queries: two per compute pass. */
interface TimerSlot {
  readonly qs: GPUQuerySet;
  readonly resolve: GPUBuffer;
  readonly read: GPUBuffer;
  used: number;
  /** The label of each pass (pass i wrote timestamps 2i and 2i + 1). */
  readonly labels: string[];
}

/** Device time of one kernel label: its passes' summed spans. */
export interface KernelTime {
  readonly ms: number;
  readonly passes: number;
}

/** What the context has sent to the device since it was made (`Backend.counters`). */
export interface Counters {
  dispatches: number;
  submits: number;
  reads: number;
  bytesWritten: number;
  bytesRead: number;
}

/**
 * One device and what the backend keeps on it: buffer pool, pipeline cache, fault state.
 *
 * Dispatches, copies and clears are recorded into one pending command encoder, submitted when
 * the host reads (`readBytes`), when `flush()` is called, or after MAX_RECORDED commands: a Newton
 * iteration is one submission. Queue order is program order, with three hazards handled here:
 * `queue.writeBuffer` runs at once (before the pending commands), so a uniform block is written
 * into a buffer no pending command uses (recycled after the submit that uses it), and `write()`
 * into a buffer that pending commands use goes through an upload buffer and a recorded copy (or
 * flushes first when large); a buffer destroyed while pending commands use it is destroyed after
 * the submit.
 */
export class GpuContext {
  readonly pool: BufferPool;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
  /** Per pipeline code: the bindings it writes (read_write), for the counters. */
  private readonly written = new Map<string, number[]>();
  /**
   * Uniform buffers by their values, written once and kept (least recently used first): the same
   * few shapes recur through a solve, so most dispatches write no uniform at all.
   */
  private readonly uniforms = new Map<string, GPUBuffer>();
  /** Bind groups by pipeline, uniform and buffers (least recently used first). */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  /** Small ids of pipelines and buffers, for the bind group keys. */
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;
  /** Buffers to destroy once the pending commands are submitted. */
  private readonly afterSubmit: GPUBuffer[] = [];
  /** Buffers the pending commands use. */
  private readonly touched = new Set<GPUBuffer>();
  private encoder: GPUCommandEncoder | null = null;
  /** The compute pass left open for further dispatches (none when timing). */
  private pass: GPUComputePassEncoder | null = null;
  private recorded = 0;
  private readonly staging: GPUBuffer[] = [];
  private timer: TimerSlot | null = null;
  private readonly timerFree: TimerSlot[] = [];
  private timerPending: Promise<void>[] = [];
  private deviceNs = 0;
  private readonly kernelNs = new Map<string, { ns: number; passes: number }>();
  private readonly counts: Counters = { dispatches: 0, submits: 0, reads: 0, bytesWritten: 0, bytesRead: 0 };
  /** Asynchronous checks (compilation, allocation) not yet awaited. */
  private pending: Promise<void>[] = [];
  private fault: Error | null = null;
  private destroyed = false;
  /** Why every call now fails: the device was lost (DeviceLostError) or the backend destroyed (TensorStateError). */
  private lost: DeviceLostError | TensorStateError | null = null;
  private readonly lostSignal: Promise<never>;

  constructor(
    readonly device: GPUDevice,
    readonly maxBindingBytes: number,
    /** Timestamp queries around every compute pass (the device has 'timestamp-query'). */
    readonly timestamps = false,
  ) {
    this.pool = new BufferPool(
      (bytes) => this.allocate(bytes),
      maxBindingBytes,
      (buf) => this.destroyBuffer(buf),
    );
    this.lostSignal = device.lost.then((info) => {
      // destroy() loses the device too: calls in flight then fail as any use after destroy() does.
      this.lost = this.destroyed
        ? afterDestroy()
        : new DeviceLostError('webgpu', info.message || String(info.reason ?? 'unknown'));
      throw this.lost;
    });
    // Observed only through races; keep an unobserved rejection from surfacing on its own.
    this.lostSignal.catch(() => {});
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) =>
      this.setFault(new Error(`webgpu: ${ev.error.message}`));
  }

  /** A copy of the counters. */
  counters(): Counters {
    return { ...this.counts };
  }

  /** Destroy `buf` now, or after the submit when pending commands use it. */
  private destroyBuffer(buf: GPUBuffer): void {
    if (this.touched.has(buf)) this.afterSubmit.push(buf);
    else buf.destroy();
  }

  /** The pending encoder, made on first use, for a command outside compute passes (its open pass ended). */
  private record(): GPUCommandEncoder {
    this.endPass();
    return this.encoderForPass();
  }

  private encoderForPass(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.recorded++;
    return this.encoder;
  }

  /**
   * A compute pass for the next dispatch. Without timestamps one pass stays open across
   * consecutive dispatches (WebGPU synchronises storage between the dispatches of a pass, each its
   * own usage scope), which saves a pass's begin and end per dispatch; with them each dispatch gets
   * its own pass, whose timestamps are labelled by kernel.
   */
  private computePass(label: string): GPUComputePassEncoder {
    const enc = this.encoderForPass();
    if (this.timestamps) return enc.beginComputePass(this.passDescriptor(label));
    if (!this.pass) this.pass = enc.beginComputePass();
    return this.pass;
  }

  /** End the open compute pass (before a copy, a clear or the submit). */
  private endPass(): void {
    if (!this.pass) return;
    this.pass.end();
    this.pass = null;
  }

  /** After a command is recorded: submit when the encoder holds many. */
  private recordedOne(): void {
    if (this.recorded >= MAX_RECORDED) this.flush();
  }

  /** The timestamp writes of the next compute pass, when timing. */
  private passDescriptor(label: string): GPUComputePassDescriptor | undefined {
    if (!this.timestamps) return undefined;
    if (!this.timer) {
      this.timer = this.timerFree.pop() ?? {
        qs: this.device.createQuerySet({ type: 'timestamp', count: 2 * MAX_RECORDED }),
        resolve: this.device.createBuffer({ size: 16 * MAX_RECORDED, usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC }),
        read: this.device.createBuffer({ size: 16 * MAX_RECORDED, usage: MAP_READ_USAGE }),
        used: 0,
        labels: [],
      };
    }
    const i = this.timer.used;
    this.timer.used += 2;
    this.timer.labels.push(label);
    return { timestampWrites: { querySet: this.timer.qs, beginningOfPassWriteIndex: i, endOfPassWriteIndex: i + 1 } };
  }

  /** Add a submitted slot's span (first pass start to last pass end) to the device time. */
  private async collect(t: TimerSlot): Promise<void> {
    const bytes = t.used * 8;
    try {
      await t.read.mapAsync(MAP_READ, 0, bytes);
      const v = new BigUint64Array(t.read.getMappedRange(0, bytes).slice(0));
      t.read.unmap();
      let lo = v[0]!;
      let hi = v[1]!;
      for (let i = 0; i < v.length; i += 2) {
        if (v[i]! < lo) lo = v[i]!;
        if (v[i + 1]! > hi) hi = v[i + 1]!;
        const label = t.labels[i / 2] ?? '?';
        const k = this.kernelNs.get(label) ?? { ns: 0, passes: 0 };
        if (v[i + 1]! > v[i]!) k.ns += Number(v[i + 1]! - v[i]!);
        k.passes++;
        this.kernelNs.set(label, k);
      }
      if (hi > lo) this.deviceNs += Number(hi - lo);
      t.used = 0;
      t.labels.length = 0;
      if (!this.destroyed) this.timerFree.push(t);
    } catch {
      // Device lost or destroyed: the time is simply not counted.
    }
  }

  /**
   * Device time by kernel label of everything submitted so far (ms and passes), once its
   * timestamps are read; undefined when not timing. Passes of one submission may overlap, so
   * the labels' sum can exceed `deviceTimeMs`.
   */
  async deviceTimeByKernel(): Promise<Record<string, KernelTime> | undefined> {
    if (!this.timestamps) return undefined;
    await this.deviceTimeMs();
    return Object.fromEntries([...this.kernelNs].map(([k, v]) => [k, { ms: v.ns / 1e6, passes: v.passes }]));
  }

  /** Device time of everything submitted so far (ms), once its timestamps are read; undefined when not timing. */
  async deviceTimeMs(): Promise<number | undefined> {
    if (!this.timestamps) return undefined;
    const p = this.timerPending;
    this.timerPending = [];
    await Promise.all(p);
    return this.deviceNs / 1e6;
  }

  /** Submit the pending commands (if any). */
  flush(): void {
    const enc = this.encoder;
    if (!enc) return;
    this.endPass();
    this.encoder = null;
    this.recorded = 0;
    const t = this.timer;
    this.timer = null;
    if (t && t.used > 0) {
      enc.resolveQuerySet(t.qs, 0, t.used, t.resolve, 0);
      enc.copyBufferToBuffer(t.resolve, 0, t.read, 0, t.used * 8);
    }
    if (!this.lost && !this.destroyed) {
      this.device.queue.submit([enc.finish()]);
      this.counts.submits++;
      if (t && t.used > 0) this.timerPending.push(this.collect(t));
      else if (t) this.timerFree.push(t);
    }
    this.touched.clear();
    for (const b of this.afterSubmit) b.destroy();
    this.afterSubmit.length = 0;
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
    if (this.destroyed) throw afterDestroy();
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
    // The scope covers the module too: outside it, a WGSL error reached the uncaptured-error
    // handler first and became the fault as a plain Error, not the ShaderCompileError below.
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code, label });
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

  /**
   * The uniform block holding `values`: made and written once, then kept by its values and never
   * written again (queue writes run before pending commands, which may still read it).
   */
  private uniform(values: readonly number[]): GPUBuffer {
    if (values.length > 7) throw new Error('webgpu: uniform slot 7 is reserved (always 0)');
    const data = new Uint32Array(8);
    values.forEach((v, i) => {
      data[i] = v >>> 0;
    });
    const key = data.join(',');
    let buf = this.uniforms.get(key);
    if (buf) {
      this.uniforms.delete(key);
    } else {
      buf = this.device.createBuffer({ size: 32, usage: USAGE.UNIFORM | USAGE.COPY_DST });
      this.device.queue.writeBuffer(buf, 0, data);
      if (this.uniforms.size >= UNIFORM_CACHE) {
        const [oldest, old] = this.uniforms.entries().next().value!;
        this.uniforms.delete(oldest);
        this.destroyBuffer(old);
      }
    }
    this.uniforms.set(key, buf);
    return buf;
  }

  private id(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(o, id);
    }
    return id;
  }

  /**
   * The bind group of a dispatch, made once per pipeline, uniform and buffers: creating one cost
   * about a third of a small dispatch's host time. A buffer is never bound again once destroyed, so
   * an entry naming one is only dead weight until it ages out.
   */
  private bindGroup(pipeline: GPUComputePipeline, uniform: GPUBuffer, buffers: readonly GPUBuffer[]): GPUBindGroup {
    let key = `${this.id(pipeline)}:${this.id(uniform)}`;
    for (const b of buffers) key += `,${this.id(b)}`;
    let bind = this.bindGroups.get(key);
    if (bind) {
      this.bindGroups.delete(key);
    } else {
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: uniform } },
        ...buffers.map((b, i) => ({ binding: i + 1, resource: { buffer: b } })),
      ];
      bind = this.device.createBindGroup({ layout: this.bindLayout(pipeline), entries });
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.delete(this.bindGroups.keys().next().value!);
    }
    this.bindGroups.set(key, bind);
    return bind;
  }


  /** The pipeline's bind group layout (asked of the device once per pipeline). */
  private bindLayout(pipeline: GPUComputePipeline): GPUBindGroupLayout {
    let layout = this.layouts.get(pipeline);
    if (!layout) {
      layout = pipeline.getBindGroupLayout(0);
      this.layouts.set(pipeline, layout);
    }
    return layout;
  }

  /** Bindings (1-based) that `code` declares read_write. */
  private writtenBindings(code: string): number[] {
    let w = this.written.get(code);
    if (!w) {
      w = [...code.matchAll(/@binding\((\d+)\)\s*var<storage,\s*read_write>/g)].map((m) => Number(m[1]));
      this.written.set(code, w);
    }
    return w;
  }

  /**
   * Record `code` over `threads` invocations: binding 0 is the uniform block (u32 values; use
   * `f32Bits` for floats), bindings 1.. the buffers in order.
   */
  dispatch(
    code: string,
    label: string,
    buffers: readonly GPUBuffer[],
    values: readonly number[],
    threads: number,
    /** The kernel's @workgroup_size. */
    wg = WG,
  ): void {
    this.check();
    if (threads <= 0) return;
    const groups = Math.ceil(threads / wg);
    const x = Math.min(groups, MAX_GROUPS);
    const y = Math.ceil(groups / x);
    if (y > MAX_GROUPS)
      throw new OutOfMemoryError('webgpu', threads * 4, `${threads} invocations exceed one dispatch`);
    const pipeline = this.pipeline(code, label);
    const ub = this.uniform(values);
    const bind = this.bindGroup(pipeline, ub, buffers);
    const pass = this.computePass(label);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(x, y);
    if (this.timestamps) pass.end();
    for (const b of buffers) this.touched.add(b);
    this.touched.add(ub);
    this.counts.dispatches++;
    for (const k of this.writtenBindings(code)) this.counts.bytesWritten += buffers[k - 1]?.size ?? 0;
    this.recordedOne();
  }

  /** Record copies and clears. */
  encode(fill: (r: Recorder) => void): void {
    this.check();
    fill({
      copy: (src, srcOffset, dst, dstOffset, bytes) => {
        if (bytes <= 0) return;
        this.record().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
        this.touched.add(src);
        this.touched.add(dst);
        this.counts.bytesWritten += bytes;
        this.recordedOne();
      },
      clear: (buf, offset, bytes) => {
        if (bytes <= 0) return;
        this.record().clearBuffer(buf, offset, bytes);
        this.touched.add(buf);
        this.counts.bytesWritten += bytes;
        this.recordedOne();
      },
    });
  }

  /**
   * `data` into `buf` from offset 0, ordered after the commands recorded so far. `writeBuffer`
   * itself runs before them, so when they use `buf` the data goes through an upload buffer and
   * a recorded copy (or, when large, they are submitted first).
   */
  write(buf: GPUBuffer, data: Float32Array | Uint32Array): void {
    this.check();
    const bytes = data.byteLength;
    if (bytes === 0) return;
    if (!this.touched.has(buf)) {
      this.device.queue.writeBuffer(buf, 0, data);
      return;
    }
    if (bytes > MAX_UPLOAD_BYTES) {
      this.flush();
      this.device.queue.writeBuffer(buf, 0, data);
      return;
    }
    const upload = this.device.createBuffer({ size: bytes, usage: USAGE.COPY_SRC | USAGE.COPY_DST });
    this.device.queue.writeBuffer(upload, 0, data);
    this.encode((r) => r.copy(upload, 0, buf, 0, bytes));
    this.afterSubmit.push(upload);
  }

  /** A MAP_READ buffer of at least `size` bytes, kept ones first. */
  private takeStaging(size: number): GPUBuffer {
    const i = this.staging.findIndex((b) => b.size >= size);
    if (i >= 0) return this.staging.splice(i, 1)[0]!;
    const keep = size <= MAX_KEPT_STAGING_BYTES;
    // Kept buffers are made a little larger, so that reads of similar sizes share them.
    const bytes = keep ? Math.max(256, 2 ** Math.ceil(Math.log2(size))) : size;
    return this.device.createBuffer({ size: bytes, usage: MAP_READ_USAGE });
  }

  private returnStaging(buf: GPUBuffer): void {
    if (buf.size <= MAX_KEPT_STAGING_BYTES && this.staging.length < KEPT_STAGING && !this.destroyed)
      this.staging.push(buf);
    else buf.destroy();
  }

  /**
   * Copy `bytes` from `src` at `offset` back to the host: submits the pending commands with the
   * copy. Rejects with DeviceLostError on loss.
   */
  async readBytes(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.check();
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.takeStaging(size);
    let reusable = false;
    try {
      this.record().copyBufferToBuffer(src, offset, staging, 0, size);
      this.touched.add(src);
      this.counts.reads++;
      this.counts.bytesRead += size;
      this.flush();
      await this.settle();
      try {
        await Promise.race([staging.mapAsync(MAP_READ, 0, size), this.lostSignal]);
      } catch (err) {
        if (this.lost) throw this.lost;
        throw err;
      }
      const out = staging.getMappedRange(0, size).slice(0);
      staging.unmap();
      reusable = true;
      return out;
    } finally {
      if (reusable) this.returnStaging(staging);
      else staging.destroy();
    }
  }

  /** For tests: lose the device as a driver fault would. */
  loseDevice(): void {
    this.device.destroy();
  }

  destroy(): void {
    this.destroyed = true;
    this.encoder = null;
    this.pass = null;
    this.touched.clear();
    this.pool.clear();
    for (const u of [...this.uniforms.values(), ...this.afterSubmit, ...this.staging]) u.destroy();
    this.uniforms.clear();
    this.bindGroups.clear();
    this.afterSubmit.length = 0;
    this.staging.length = 0;
    for (const t of [...this.timerFree, ...(this.timer ? [this.timer] : [])]) {
      t.qs.destroy();
      t.resolve.destroy();
      t.read.destroy();
    }
    this.timerFree.length = 0;
    this.timer = null;
    this.pipelines.clear();
    this.device.destroy();
  }
}

const MAP_READ_USAGE = MAP_READ | USAGE.COPY_DST;

const afterDestroy = () => new TensorStateError('webgpu: backend used after destroy()');

/** A float's bit pattern, for the uniform block. */
export function f32Bits(v: number): number {
  const f = new Float32Array([v]);
  return new Uint32Array(f.buffer)[0]!;
}
