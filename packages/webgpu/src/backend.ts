import {
  checkIsTensor,
  type Backend,
  type BackendCapabilities,
  forEachTensor,
  guardOpArgs,
  type DampedScanArgs,
  type DeerStepInputs,
  type DeviceCounters,
  type DType,
  DTypeError,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  newtonUpdateFromRows,
  type ScanArgs,
  ShapeError,
  scanThenUpdate,
  type StepInputs,
  type StepOutputs,
  type StepProgram,
  type Tensor,
  TensorStateError,
} from '@deerjs/core';
import { f32Bits, type GpuContext, type KernelTime } from './context.js';
import { ADD, ADD4, affineOffsetKernel, BROADCAST_TIME, COPY4, LISTED_ROWS, MASK_TIME, SUB, SUB4, TIME_WINDOW } from './kernels/elementwise.js';
import { ADD_IDENTITY, BLOCK_MATMUL, BLOCK_MATVEC, CAP_TRANSITIONS, MAX_ABS_BITS, SCALE_TIME } from './kernels/matrix.js';
import {
  COLUMN_SUM,
  FIND_NON_FINITE,
  NEWTON_UPDATE,
  OUTER_PARTIAL,
  ROWS_PER_GROUP,
  updateGroupsPerRow,
} from './kernels/reduce.js';
import {
  DAMPED_BLOCK_FACTOR,
  DAMPED_BLOCK_FORWARD,
  DAMPED_BLOCK_ROUND,
  DAMPED_BLOCK_SETUP,
  DAMPED_BLOCK_SOLVE,
  DAMPED_ROUND,
  DAMPED_SETUP,
  DAMPED_SOLVE,
} from './kernels/damped-scan.js';
import { chunking, type ScanKernels, scanKernels, summaryThreads, vectorScanKernel } from './kernels/scan.js';
import { TILE, TILED_MAX_N, type TiledScanKernels, tiledScanKernels } from './kernels/tiled-scan.js';
import { compileDeerStep, type DeerStepKernel } from './wgsl/deer-step.js';
import { GpuTensor } from './tensor.js';
import { SERIAL_WG, WG } from './wgsl/common.js';
import { compileSequential, compileSequentialWorkgroup, type SequentialKernel } from './wgsl/sequential.js';
import { type CompiledStep, compileStep, type Hoist, type Role } from './wgsl/step.js';

const F32 = 4;
/** Batch rows up to which a layout op records a copy command per row; past it, one dispatch. */
const ROW_COPIES_MAX = 32;

/** How a backend was set up (see `createWebGpuBackend`'s options). */
export interface BackendConfig {
  readonly device: string;
  readonly maxBufferBytes: number;
  /** Invocations the device runs at once, roughly: sets how finely the scan is chunked. */
  readonly scanLanes: number;
  /** Lanes the chunked scan's cost model assumes (`chunking`). */
  readonly chunkLanes: number;
  /** Scalar operations the device runs at once (`capabilities.parallelism`). */
  readonly parallelism: number;
  /** Sequential evaluation: one invocation per row, one workgroup per row where it fits, or by n. */
  readonly sequentialKernel: 'row' | 'workgroup' | 'auto';
  readonly scanKernel: 'tiled' | 'chunked' | 'auto';
  /** The dense scan's serial passes: an invocation per block, a workgroup per chain, or by shape. */
  readonly denseScanKernel: 'invocation' | 'workgroup' | 'auto';
  /** A software adapter (llvmpipe and the like). */
  readonly software: boolean;
  /** `capabilities.iterationOverhead` as the caller set it (else the adapter's default). */
  readonly iterationOverhead?: number;
  /** Floats of workgroup memory a kernel may use. */
  readonly sharedFloats: number;
}
/** Blocks from which 'auto' runs the dense scan's serial passes a workgroup per chain: on a GPU, … */
const CHAIN_SCAN_FROM = 8;
/** … and on a software adapter, where a barrier costs about as much as 16² multiply-adds. */
const SOFTWARE_CHAIN_SCAN_FROM = 32;
/** Floats a software adapter's core computes at once (its `parallelism` is this times its cores). */
const SOFTWARE_SIMD = 8;
/** Multiply-adds per element (core's stepCost) up to which a step counts as light. */
const LIGHT_STEP = 256;
/** Hoisted value sets kept per input tensor. */
const HOISTS_KEPT = 2;
const shapeSize = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
/** Entries per (row, step) of a [B, T, ...] shape: from the shape, so that T = 0 gives no 0/0. */
const perStep = (shape: readonly number[]) => shapeSize(shape.slice(2));
const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** A Newton iteration's fixed cost on a GPU, in the cost model's units (see capabilities). */
const GPU_ITERATION_OVERHEAD = 200_000;
/**
 * Smallest state whose sequential steps a GPU shares over a workgroup: on an H200 (GRU, B = 16,
 * T = 1e4) one lane per row stepped nh = 8 in 18.9 ms against the workgroup's 25.2 ms, and
 * nh = 16 in 791 ms (its n² work spills registers) against 63 ms for the workgroup at nh = 32.
 */
const WORKGROUP_SEQUENTIAL_FROM = 9;
/** How the cost model prices a GPU's workgroup-per-row sequential step (see capabilities). */
const GPU_SEQUENTIAL_STEP = { spread: 12, floor: 700, fromState: WORKGROUP_SEQUENTIAL_FROM } as const;
/** `capabilities.parallelism` on a GPU (see the constructor). */
const GPU_MODEL_LANES = 4096;

/** GPU instances of destroyed backends, held until their event pump is idle (see `destroy`). */
const HELD = new Set<unknown>();
/** How long after the device's loss a destroyed backend's instance stays held (ms). */
const DRAIN_MS = 50;

/**
 * The WebGPU backend: float32 tensors in storage buffers, step programs compiled to generated
 * WGSL, the linear recurrence as a scan (chunked, tiled or one vectorised serial pass, by device).
 * Commands are recorded into one pending encoder and submitted at the next read (a Newton
 * iteration is one submission); only reads wait on the device.
 */
export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly capabilities: BackendCapabilities;
  private live = 0;
  /** Per program: compiled with hoisting [0] and without [1] (for inputs too long to hoist). */
  private readonly steps = new WeakMap<StepProgram, (CompiledStep | undefined)[]>();
  /** Per program: [hoisting, not hoisting] sequential kernels. */
  private readonly sequentials = new WeakMap<StepProgram, (SequentialKernel | undefined)[]>();
  /** Fused DEER-step kernels per residual program: [hoisting, not]; null where none compiles. */
  private readonly deerSteps = new WeakMap<StepProgram, (DeerStepKernel | null | undefined)[]>();
  /**
   * Hoisted input-only values per input tensor (see Hoist), the latest few, released with the
   * tensor: a solve alternates between programs with and without the Jacobian, whose frontiers
   * may differ.
   */
  private readonly hoisted = new WeakMap<GpuTensor, { hoist: Hoist; params: readonly Tensor[]; buffer: GPUBuffer }[]>();

  constructor(
    private readonly ctx: GpuContext,
    private readonly config: BackendConfig,
    /** Whatever must stay alive with the device (the GPU object of the Node addon). */
    private readonly keepAlive?: unknown,
  ) {
    this.capabilities = {
      dtypes: ['float32'],
      defaultDType: 'float32',
      maxBufferBytes: config.maxBufferBytes,
      syncRead: false,
      device: config.device,
      ...(config.software ? { emulated: true } : {}),
      // On a GPU the cost model's lanes are fitted, not counted: DEER's passes (a lane per element
      // evaluating its whole step from registers, then the scan) achieved about 4096 lanes' worth
      // of the sequential kernel's speed per lane on an H200 (apps/bench/results/webgpu-h200),
      // 6–18× fewer than the invocations in flight that size the scan (config.parallelism).
      parallelism: config.software ? config.parallelism : GPU_MODEL_LANES,
      // Measured on an H200 (apps/bench/results/webgpu-h200): a Newton iteration's submission and
      // read round trip take about 1 ms of wall time, ~2·10⁵ of the sequential kernel's
      // multiply-adds (~5 ns each there). A software adapter keeps the model's default.
      ...(config.iterationOverhead !== undefined
        ? { iterationOverhead: config.iterationOverhead }
        : config.software
          ? {}
          : { iterationOverhead: GPU_ITERATION_OVERHEAD }),
      // The workgroup-per-row sequential kernel (a GPU, states from 8): on the H200 a step of a
      // GRU nh = 64 ran ~12× faster than its work on one lane, and no step (nh = 8) took less than
      // ~4 µs, ~700 units.
      ...(!config.software && config.sequentialKernel !== 'row' ? { sequentialStep: GPU_SEQUENTIAL_STEP } : {}),
    };
    // Bad arguments are refused before a command is recorded (core's op contracts).
    guardOpArgs(this, (args) => forEachTensor(args, 3, (t) => this.get(t)));
  }

  /**
   * Elements each step-kernel invocation walks, of `count`: up to 16 for a light step on a
   * software adapter, where an invocation's fixed cost (index arithmetic, bounds checks) rivals
   * the step's work (llvmpipe, GRU n = 1: the step pass 1.6× faster; no gain at n = 8), while
   * leaving a few waves of invocations for every core; one on a GPU.
   */
  private elementsPerInvocation(c: CompiledStep, count: number): number {
    if (!this.config.software || c.cost > LIGHT_STEP) return 1;
    return Math.max(1, Math.min(16, Math.floor(count / (4 * this.scanLanes))));
  }

  /** Invocations the device runs at once, roughly: sets how finely the scan is chunked. */
  private get scanLanes(): number {
    return this.config.scanLanes;
  }

  // ---- tensors -------------------------------------------------------------------------------

  private wrap(shape: readonly number[], buffer: GPUBuffer): GpuTensor {
    this.live++;
    return new GpuTensor([...shape], buffer, this);
  }

  /**
   * Buffers hold whole vec4s (the vectorised elementwise kernels read and write them so), unless
   * the padding would pass the largest binding (not always a multiple of 16 bytes: 2³¹ − 4 on an
   * H200); such a tensor gets its exact size and the scalar kernels.
   */
  private make(shape: readonly number[]): GpuTensor {
    const size = shapeSize(shape);
    const padded = Math.ceil(size / 4) * 4 * F32;
    return this.wrap(shape, this.ctx.buffer(padded <= this.scratchLimit ? padded : size * F32));
  }

  /**
   * Dispatch a vectorised elementwise kernel (kernels/elementwise.ts) over `size` floats when
   * every buffer holds whole vec4s; false (nothing recorded) when one does not.
   */
  private vec4Elementwise(code: string, label: string, buffers: readonly GPUBuffer[], size: number): boolean {
    const vecs = Math.ceil(size / 4);
    if (vecs === 0 || buffers.some((b) => b.size < vecs * 16)) return false;
    const threads = this.strideThreads(vecs);
    this.ctx.dispatch(code, label, buffers, [vecs, threads], threads);
    return true;
  }

  /**
   * Invocations of a grid-stride kernel over `count` items (a whole number of workgroups, so it is
   * also the stride): the lanes a software adapter runs at once, a few waves of them on a GPU. One
   * invocation per item had cost llvmpipe more than the data's read-back: maxAbs over 1.6e6 floats
   * 85 ms against a 5 ms read, with a workgroup's barriers per 64 items.
   */
  private strideThreads(count: number): number {
    const threads = Math.min(count, this.config.software ? this.scanLanes : Math.max(16 * 1024, 4 * this.scanLanes));
    return Math.max(1, Math.ceil(threads / WG)) * WG;
  }

  private get(t: Tensor): GpuTensor {
    this.own(t);
    if (t.disposed) throw new TensorStateError('webgpu: tensor used after dispose');
    return t;
  }

  /**
   * Refused before any command records it: a buffer of another device fails Dawn's validation, and
   * that fault would stay with this backend for good.
   */
  private own(t: Tensor): asserts t is GpuTensor {
    checkIsTensor('webgpu', t);
    if (!(t instanceof GpuTensor))
      throw new TensorStateError(`webgpu: not a webgpu tensor (from '${t.backendName}')`);
    if (t.owner !== this)
      throw new TensorStateError('webgpu: tensor of another webgpu backend (another device): read it and make it again here');
  }

  private checkDType(what: string, dtype: DType): void {
    if (dtype !== 'float32') throw new DTypeError(what, 'float32 (WGSL has no f64)', String(dtype));
  }

  // tensor's and zeros' shape and data are core's contract (checkTensorData), checked by guardOpArgs
  // before either runs.
  tensor(data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'float32'): Tensor {
    this.checkDType('tensor', dtype);
    // Converted before the tensor is made and counted: nothing is left counted if it fails.
    const values = Float32Array.from(data);
    const t = this.make(shape);
    try {
      this.ctx.write(t.buffer, values);
    } catch (err) {
      this.dispose(t);
      throw err;
    }
    return t;
  }

  zeros(shape: readonly number[], dtype: DType = 'float32'): Tensor {
    this.checkDType('zeros', dtype);
    const t = this.make(shape);
    this.ctx.encode((enc) => enc.clear(t.buffer, 0, t.buffer.size));
    return t;
  }

  async read(t: Tensor): Promise<Float32Array> {
    const g = this.get(t);
    const bytes = await this.ctx.readBytes(g.buffer, 0, g.size * F32);
    return new Float32Array(bytes, 0, g.size);
  }

  dispose(t: Tensor): void {
    this.own(t);
    if (t.disposed) return;
    t.disposed = true;
    this.live--;
    this.ctx.release(t.buffer);
    for (const h of this.hoisted.get(t) ?? []) this.ctx.release(h.buffer);
    this.hoisted.delete(t);
  }

  liveTensors(): number {
    return this.live;
  }

  /** Dispatches, submits, host reads and bytes written since the backend was made. */
  counters(): DeviceCounters {
    return this.ctx.counters();
  }

  /**
   * Device time by kernel (ms and passes, keyed by kernel label) of everything submitted so far,
   * with `timestamps: true`; undefined otherwise. A profile: difference two calls around a solve.
   */
  deviceTimeByKernel(): Promise<Record<string, KernelTime> | undefined> {
    return this.ctx.deviceTimeByKernel();
  }

  /**
   * Device time so far (ms): the sum over submissions of first pass start to last pass end, from
   * timestamp queries. undefined unless made with `timestamps: true` on an adapter that offers them.
   */
  deviceTimeMs(): Promise<number | undefined> {
    return this.ctx.deviceTimeMs();
  }

  /** Bytes of GPU buffers in use by tensors and scratch (deer-bench samples it). */
  liveBytes(): number {
    return this.ctx.pool.liveBytes;
  }

  // ---- step programs -------------------------------------------------------------------------

  /**
   * The compiled step for an input of B·T elements (none: `withInput` false): hoisting unless the
   * hoisted values would not fit one binding.
   */
  private compiled(program: StepProgram, BT: number, withInput: boolean): CompiledStep {
    const variants = this.steps.get(program) ?? [];
    this.steps.set(program, variants);
    const software = this.config.software;
    const hoisting = (variants[0] ??= compileStep(program, true, software));
    if (!hoisting.hoist || (withInput && this.hoistFits(hoisting.hoist, BT))) return hoisting;
    return (variants[1] ??= compileStep(program, false, software));
  }

  private hoistFits(h: Hoist, BT: number): boolean {
    return BT * h.floats * F32 <= this.scratchLimit;
  }

  /**
   * The hoisted values of input `x` for `hoist`: computed once and kept with x while the graph,
   * the frontier and the param tensors stay the same (tensors are immutable, so identity is enough).
   */
  private hoistedValues(
    program: StepProgram,
    hoist: Hoist,
    x: GpuTensor,
    params: Readonly<Record<string, Tensor>>,
    prm: GPUBuffer | undefined,
  ): GPUBuffer {
    const ps = program.graph.params.map((p) => params[p.name]!);
    const kept = this.hoisted.get(x) ?? [];
    const at = kept.findIndex((h) => h.hoist.graph === hoist.graph && h.hoist.frontier === hoist.frontier);
    if (at >= 0) {
      const hit = kept[at]!;
      if (hit.params.every((p, i) => p === ps[i])) return hit.buffer;
      this.ctx.release(hit.buffer);
      kept.splice(at, 1);
    }
    if (kept.length >= HOISTS_KEPT) this.ctx.release(kept.shift()!.buffer);
    const BT = x.shape[0]! * x.shape[1]!;
    const buffer = this.ctx.buffer(BT * hoist.floats * F32);
    try {
      const bufs = this.bind(hoist.kernel.bindings, { input: x.buffer, params: prm, hoisted: buffer });
      this.ctx.dispatch(hoist.kernel.code, 'hoist', bufs, [BT], BT);
    } catch (err) {
      this.ctx.release(buffer);
      throw err;
    }
    kept.push({ hoist, params: ps, buffer });
    this.hoisted.set(x, kept);
    return buffer;
  }

  /** All params of the graph, back to back in graph order (the layout the kernels index). */
  private packParams(program: StepProgram, params: Readonly<Record<string, Tensor>>): GPUBuffer {
    const specs = program.graph.params;
    const total = specs.reduce((s, p) => s + p.size, 0);
    // Whole vec4s: the buffer may bind as a uniform array<vec4<f32>>.
    // Checked before the buffer is taken, so a bad parameter leaks nothing.
    const sources = specs.map((spec) => {
      const t = params[spec.name];
      if (!t) throw new ShapeError('params', `a tensor for parameter ${spec.name}`, 'none');
      const g = this.get(t);
      if (g.size !== spec.size) throw new ShapeError(`params.${spec.name}`, `${spec.size} values`, `${g.size}`);
      return g;
    });
    const buf = this.ctx.buffer(Math.ceil(total / 4) * 4 * F32);
    this.ctx.encode((enc) => {
      let at = 0;
      for (const [k, spec] of specs.entries()) {
        if (spec.size > 0) enc.copy(sources[k]!.buffer, 0, buf, at * F32, spec.size * F32);
        at += spec.size;
      }
    });
    return buf;
  }

  private bind(roles: readonly Role[], buffers: Partial<Record<Role, GPUBuffer>>): GPUBuffer[] {
    return roles.map((r) => {
      const b = buffers[r];
      if (!b) throw new ShapeError('runStep', `a tensor for the program's ${r}`, 'none');
      return b;
    });
  }

  /** Largest scratch buffer a method may bind: the device's limit, or the option when lower. */
  private get scratchLimit(): number {
    return Math.min(this.ctx.maxBindingBytes, this.capabilities.maxBufferBytes);
  }

  /**
   * Elements go through in slabs whose packed outputs fit one binding: core sizes windows by the
   * Jacobian alone, and the packed outputs (with a diagonal Jacobian, or a VJP's many terms) can
   * be several times larger.
   */
  runStep(program: StepProgram, inputs: StepInputs): StepOutputs {
    const state = this.get(inputs.state);
    const [B, T] = state.shape as [number, number];
    const BT = B * T;
    const c = this.compiled(program, BT, inputs.input !== undefined);
    const slab = Math.max(1, Math.min(BT, Math.floor(this.scratchLimit / Math.max(1, c.perElement * F32))));
    const made: GpuTensor[] = [];
    const scratch: GPUBuffer[] = [];
    try {
      const prm = c.paramFloats > 0 ? this.packParams(program, inputs.params) : undefined;
      if (prm) scratch.push(prm);
      // One slab and one output segment: the packed layout is the output's, so write it in place.
      const direct = slab === BT && c.segments.size === 1 && program.outputs.length === 1;
      const outputs = program.outputs.map((id) => {
        const seg = c.segments.get(id)!;
        const t = this.make([B, T, seg.size]);
        made.push(t);
        return { t, seg };
      });
      const packed = direct ? outputs[0]!.t.buffer : this.ctx.buffer(slab * c.perElement * F32);
      if (!direct) scratch.push(packed);
      const buffers: Partial<Record<Role, GPUBuffer>> = {
        state: state.buffer,
        input: inputs.input ? this.get(inputs.input).buffer : undefined,
        cotangent: inputs.cotangent ? this.get(inputs.cotangent).buffer : undefined,
        params: prm,
        packed,
      };
      if (c.hoist && inputs.input)
        buffers.hoisted = this.hoistedValues(program, c.hoist, this.get(inputs.input), inputs.params, prm);
      const n = program.graph.stateSize;
      const s = c.jacobian?.blockSize ?? c.fusedJacobian?.blockSize ?? 1;
      const J = c.jacobian || c.fusedJacobian ? this.make([B, T, n / s, s, s]) : undefined;
      if (J) made.push(J);
      buffers.jacobian = J?.buffer;
      // A program with nothing to write (a VJP whose gradients are all identically zero) binds
      // nothing: WGSL drops the unused 'packed' binding, so it is not dispatched at all.
      const evaluate =
        c.perElement > 0 || c.fusedJacobian ? this.bind(c.evaluate.bindings, buffers) : undefined;
      const jacobian = c.jacobian ? this.bind(c.jacobian.bindings, buffers) : [];
      for (let e0 = 0; e0 < BT; e0 += slab) {
        const count = Math.min(slab, BT - e0);
        if (evaluate) {
          const threads = Math.ceil(count / this.elementsPerInvocation(c, count));
          this.ctx.dispatch(c.evaluate.code, 'step', evaluate, [count, e0, threads], threads);
        }
        if (!direct) this.ctx.encode((enc) => {
          for (const { t, seg } of outputs) {
            if (seg.size === 0) continue;
            const bytes = count * seg.size * F32;
            enc.copy(packed, count * seg.pre * F32, t.buffer, e0 * seg.size * F32, bytes);
          }
        });
        if (c.jacobian) this.ctx.dispatch(c.jacobian.code, 'jacobian', jacobian, [count, e0], (count * n * s) / c.jacobian.entriesPerInvocation);
      }
      return { outputs: outputs.map((o) => o.t), ...(J ? { jacobian: J } : {}) };
    } catch (err) {
      for (const t of made) this.dispose(t);
      throw err;
    } finally {
      for (const b of scratch) this.ctx.release(b);
    }
  }

  runSequential(
    program: StepProgram,
    inputs: { input?: Tensor; y0: Tensor; params: Readonly<Record<string, Tensor>> },
  ): Tensor {
    const y0 = this.get(inputs.y0);
    const x = inputs.input ? this.get(inputs.input) : undefined;
    const B = y0.shape[0]!;
    const T = x ? x.shape[1]! : 1;
    const n = program.graph.stateSize;
    const variants = this.sequentials.get(program) ?? [];
    this.sequentials.set(program, variants);
    const mode = this.config.sequentialKernel;
    const shared = mode === 'workgroup' || (mode === 'auto' && !this.config.software && n >= WORKGROUP_SEQUENTIAL_FROM);
    const compile = (hoisting: boolean) =>
      (shared
        ? compileSequentialWorkgroup(program, this.config.sharedFloats, hoisting)
        : undefined) ?? compileSequential(program, hoisting);
    let k = (variants[0] ??= compile(true));
    if (k.hoist && !(x && this.hoistFits(k.hoist, B * T))) k = variants[1] ??= compile(false);
    const usesParams = k.bindings.includes('params') || !!k.hoist?.kernel.bindings.includes('params');
    const prm = usesParams ? this.packParams(program, inputs.params) : undefined;
    const out = this.make([B, T, n]);
    try {
      const hoisted = k.hoist && x ? this.hoistedValues(program, k.hoist, x, inputs.params, prm) : undefined;
      const buffers = this.bind(k.bindings, {
        input: x?.buffer,
        params: prm,
        y0: y0.buffer,
        out: out.buffer,
        hoisted,
      });
      this.ctx.dispatch(k.code, 'sequential', buffers, [B, T], B * k.perRow, k.wg);
    } catch (err) {
      this.dispose(out);
      throw err;
    } finally {
      if (prm) this.ctx.release(prm);
    }
    return out;
  }

  // ---- the linear recurrence -----------------------------------------------------------------

  scan(args: ScanArgs): Tensor {
    const c = this.get(args.c);
    const out = this.make(c.shape);
    if (out.size === 0) return out;
    try {
      if (this.tiled(args)) {
        this.tiledPasses(args, (k, dims, Yc) => {
          const bufs = [this.get(args.A).buffer, c.buffer, this.get(args.y0).buffer, Yc, out.buffer];
          this.ctx.dispatch(k.fixup, 'scan-tile-fixup', bufs, dims, dims[0]! * dims[2]! * TILE, TILE);
        });
        return out;
      }
      const vector = this.vectorScan(args);
      if (vector) {
        const [B, T] = c.shape as [number, number];
        const bufs = [this.get(args.A).buffer, c.buffer, this.get(args.y0).buffer, out.buffer];
        this.ctx.dispatch(vector.code, 'scan-vector', bufs, [B, T], vector.threads(B), SERIAL_WG);
        return out;
      }
      this.scanPasses(args, (k, dims, Yb, threads) => {
        const bufs = [this.get(args.A).buffer, c.buffer, Yb, out.buffer];
        this.ctx.dispatch(k.fixup, 'scan-fixup', bufs, dims, threads, k.serialWg);
      });
    } catch (err) {
      this.dispose(out);
      throw err;
    }
    return out;
  }

  /** Whether the diagonal scan runs tiled (kernels/tiled-scan.ts): see the scanKernel option. */
  private tiled(args: ScanArgs): boolean {
    if (args.blockSize !== 1 || this.config.scanKernel === 'chunked') return false;
    const [B, T, n] = this.get(args.c).shape as [number, number, number];
    // T ≥ 2 also ends the recursion: the summaries' scan has ⌈T·n / TILE⌉ < T steps.
    if (B * T * n === 0 || n > TILED_MAX_N || T < 2) return false;
    return this.config.scanKernel === 'tiled' || (!this.config.software && T * n >= 2 * TILE);
  }

  /**
   * The tiled scan's summaries and their scan (any of this backend's scans, by recursion), then
   * `fixup(kernels, uniforms, carries)` with the y at every tile's end.
   */
  private tiledPasses(args: ScanArgs, fixup: (k: TiledScanKernels, dims: number[], Yc: GPUBuffer) => void): void {
    const c = this.get(args.c);
    const [B, T, n] = c.shape as [number, number, number];
    const nT = Math.ceil((T * n) / TILE);
    const k = tiledScanKernels(n, args.reverse);
    const dims = [B, T, nT];
    const M = this.make([B, nT, n, 1, 1]);
    const V = this.make([B, nT, n]);
    // Per row: whether a tile's composed map overflowed (the repair pass then walks its carries).
    const flags = this.ctx.buffer(Math.max(4, B * 4));
    let Yc: GpuTensor | undefined;
    try {
      this.ctx.encode((enc) => enc.clear(flags, 0, flags.size));
      const A = this.get(args.A).buffer;
      this.ctx.dispatch(k.summarize, 'scan-tile-summarize', [A, c.buffer, M.buffer, V.buffer, flags], dims, B * nT * TILE, TILE);
      Yc = this.get(this.scan({ A: M, c: V, y0: args.y0, blockSize: 1, reverse: false }));
      const repair = [A, c.buffer, this.get(args.y0).buffer, Yc.buffer, flags];
      this.ctx.dispatch(k.repair, 'scan-tile-repair', repair, dims, B * n, SERIAL_WG);
      fixup(k, dims, Yc.buffer);
    } finally {
      this.dispose(M);
      this.dispose(V);
      this.ctx.release(flags);
      if (Yc) this.dispose(Yc);
    }
  }

  /**
   * The diagonal scan as one vectorised serial pass per chain (kernels/scan.ts vectorScanKernel),
   * where its chains fill the device's lanes; undefined where it does not apply.
   */
  private vectorScan(args: ScanArgs): ReturnType<typeof vectorScanKernel> {
    if (args.blockSize !== 1 || this.config.scanKernel !== 'auto') return undefined;
    const [B, T, n] = this.get(args.c).shape as [number, number, number];
    if (B * T * n === 0 || (n === 1 && T % 4 !== 0)) return undefined;
    const k = vectorScanKernel(n, args.reverse);
    return k && k.threads(B) >= this.config.parallelism ? k : undefined;
  }

  /** The scan's step δ applied as the Newton update in its fix-up pass: δ never goes to memory. */
  async scanUpdate(args: ScanArgs, yOld: Tensor, opts: NewtonUpdateOptions): Promise<NewtonUpdate> {
    const fused = this.fusedScanUpdate(args, yOld, opts);
    if (!fused) return scanThenUpdate(this, args, yOld, opts);
    return this.withUpdateResult(this.get(yOld), fused.B, fused.T, opts, fused.record);
  }

  /**
   * `scanUpdate`'s iterate with its measures left on the device: no read, and the commands are
   * submitted at once so the device runs this step while the host records the next.
   */
  scanUpdateUnread(args: ScanArgs, yOld: Tensor, opts: NewtonUpdateOptions): Tensor {
    const old = this.get(yOld);
    const fused = this.fusedScanUpdate(args, yOld, opts);
    if (fused) return this.recordUnread(old, fused.B, opts, fused.record);
    const raw = this.scan(args);
    try {
      return this.recordUnread(old, Math.max(1, old.shape[0] ?? 1), opts, this.newtonUpdatePass(this.get(raw), old, true, opts));
    } finally {
      this.dispose(raw);
    }
  }

  /** How scanUpdate records its passes, or null where it composes the scan and the update (reverse scans, empty tensors). */
  private fusedScanUpdate(
    args: ScanArgs,
    yOld: Tensor,
    opts: NewtonUpdateOptions,
  ): { B: number; T: number; record: (y: GpuTensor, res: GPUBuffer, act: GPUBuffer) => void } | null {
    const old = this.get(yOld);
    const c = this.get(args.c);
    if (old.size !== c.size) throw new ShapeError('scanUpdate', fmt(c.shape), fmt(old.shape));
    // The fix-up fuses forward scans only.
    if (args.reverse || c.size === 0) return null;
    const [B, T] = c.shape as [number, number];
    if (this.tiled(args)) {
      return {
        B,
        T,
        record: (y, res, act) =>
          this.tiledPasses(args, (k, dims, Yc) => {
            const bufs = [this.get(args.A).buffer, c.buffer, this.get(args.y0).buffer, Yc, old.buffer, y.buffer, res, act];
            const uniforms = [...dims, f32Bits(opts.atol), f32Bits(opts.rtol), f32Bits(opts.clip)];
            this.ctx.dispatch(k.fixupUpdate!, 'scan-tile-fixup-update', bufs, uniforms, B * dims[2]! * TILE, TILE);
          }),
      };
    }
    return {
      B,
      T,
      record: (y, res, act) =>
        this.scanPasses(args, (k, dims, Yb, threads) => {
          const bufs = [this.get(args.A).buffer, c.buffer, Yb, old.buffer, y.buffer, res, act];
          const uniforms = [...dims, f32Bits(opts.atol), f32Bits(opts.rtol), f32Bits(opts.clip)];
          this.ctx.dispatch(k.fixupUpdate!, 'scan-fixup-update', bufs, uniforms, threads, k.serialWg);
        }),
    };
  }

  /**
   * A whole DEER step as one serial pass per batch row (wgsl/deer-step.ts), where the batch rows
   * alone fill the device's lanes — there the scan runs about one serial chunk per row anyway, and the
   * fused pass leaves the Jacobian, the residual and the shifted iterate out of memory. Null
   * elsewhere (a GPU with lanes to spare needs the parallel scan), and where the Jacobian blocks
   * are too large to unroll.
   */
  deerStep(
    program: StepProgram,
    inputs: DeerStepInputs,
    previous: Tensor,
    opts: NewtonUpdateOptions,
  ): Promise<NewtonUpdate> | null {
    const old = this.get(previous);
    const x = this.get(inputs.input);
    const y0 = this.get(inputs.y0);
    const s = program.jacobian?.blockSize;
    const [B, T, n] = old.shape as [number, number, number];
    if (s === undefined || old.size === 0 || B < this.config.parallelism) return null;
    if (x.shape[0] !== B || x.shape[1] !== T || y0.shape[0] !== B || y0.shape[1] !== n) return null;
    const variants = this.deerSteps.get(program) ?? [];
    this.deerSteps.set(program, variants);
    const compile = (hoisting: boolean) => compileDeerStep(program, hoisting) ?? null;
    let k = variants[0] === undefined ? (variants[0] = compile(true)) : variants[0];
    if (k?.hoist && !this.hoistFits(k.hoist, B * T)) k = variants[1] === undefined ? (variants[1] = compile(false)) : variants[1];
    if (!k) return null;
    const kernel = k;
    return this.withUpdateResult(old, B, T, opts, (y, res, act) => {
      const usesParams = kernel.bindings.includes('params') || !!kernel.hoist?.kernel.bindings.includes('params');
      const prm = usesParams ? this.packParams(program, inputs.params) : undefined;
      try {
        const hoisted = kernel.hoist ? this.hoistedValues(program, kernel.hoist, x, inputs.params, prm) : undefined;
        const buffers = this.bind(kernel.bindings, {
          input: x.buffer,
          params: prm,
          cotangent: old.buffer,
          y0: y0.buffer,
          out: y.buffer,
          hoisted,
        });
        const uniforms = [B, T, f32Bits(opts.atol), f32Bits(opts.rtol), f32Bits(opts.clip)];
        this.ctx.dispatch(kernel.code, 'deer-step', [...buffers, res, act], uniforms, B, SERIAL_WG);
      } finally {
        if (prm) this.ctx.release(prm);
      }
    });
  }

  /** Whether the dense scan's serial passes take a workgroup per chain (`denseScanKernel`). */
  private chainScan(B: number, n: number, s: number): boolean {
    const choice = this.config.denseScanKernel;
    if (choice !== 'auto') return choice === 'workgroup';
    if (!this.config.software) return s >= CHAIN_SCAN_FROM;
    // A software adapter: only where one invocation per block leaves most SIMD lanes idle.
    return s >= SOFTWARE_CHAIN_SCAN_FROM && B * (n / s) * SOFTWARE_SIMD <= this.config.parallelism;
  }

  /**
   * The chunked scan's first two passes, then `fixup(kernels, dims, boundaries, threads)` — the
   * boundaries being y0 itself when there is one chunk.
   */
  private scanPasses(
    args: ScanArgs,
    fixup: (k: ScanKernels, dims: number[], Yb: GPUBuffer, threads: number) => void,
  ): void {
    const c = this.get(args.c);
    const A = this.get(args.A);
    const y0 = this.get(args.y0);
    const [B, T, n] = c.shape as [number, number, number];
    const s = args.blockSize;
    // The passes are serial loops bound by arithmetic: by default a software adapter counts 8 of
    // them per core (its SIMD width), not the scanLanes invocations it is given to keep busy
    // (llvmpipe, GRU n = 64, T = 5000, B = 1: 1.0 s with 64 chunks, 0.13 s with one).
    const workgroup = this.chainScan(B, n, s);
    const { L, Q } = chunking(T, B, n, s, this.config.chunkLanes, workgroup);
    const k = scanKernels(n, s, args.reverse, workgroup);
    const dims = [B, T, L, Q];
    if (Q === 1) {
      fixup(k, dims, y0.buffer, k.serialThreads(B));
      return;
    }
    const M = this.ctx.buffer(B * Q * n * s * F32);
    const V = this.ctx.buffer(B * Q * n * F32);
    const Yb = this.ctx.buffer(B * Q * n * F32);
    try {
      const summary = summaryThreads(B, Q, n, s);
      this.ctx.dispatch(k.summarize, 'scan-summarize', [A.buffer, c.buffer, M, V], dims, summary, SERIAL_WG);
      this.ctx.dispatch(k.boundaries, 'scan-boundaries', [y0.buffer, M, V, Yb, A.buffer, c.buffer], dims, k.serialThreads(B), k.serialWg);
      fixup(k, dims, Yb, k.serialThreads(B * Q));
    } finally {
      for (const b of [M, V, Yb]) this.ctx.release(b);
    }
  }

  affineOffset(F: Tensor, A: Tensor, y: Tensor, blockSize: number): Tensor {
    const f = this.get(F);
    const n = f.shape[2]!;
    const out = this.make(f.shape);
    const bufs = [f.buffer, this.get(A).buffer, this.get(y).buffer, out.buffer];
    this.ctx.dispatch(affineOffsetKernel(n, blockSize), 'affine-offset', bufs, [f.size], f.size);
    return out;
  }

  // ---- layout ops (copies) -------------------------------------------------------------------

  /**
   * Copy `floats` floats of every batch row: from `src` (rows of `srcRow` floats) at `srcAt` to
   * `out` (rows of `outRow`) at `outAt`, or zeros there. A copy command per row for a few rows
   * (long contiguous runs, copied at memory speed), one dispatch for many.
   */
  private copyRows(
    B: number,
    floats: number,
    src: GpuTensor,
    srcRow: number,
    srcAt: number,
    out: GpuTensor,
    outRow: number,
    outAt: number,
    zero = false,
  ): void {
    if (floats === 0 || B === 0) return;
    if (B > ROW_COPIES_MAX) {
      const uniforms = [B * floats, floats, srcRow, srcAt, outRow, outAt, zero ? 1 : 0];
      this.ctx.dispatch(TIME_WINDOW, 'time-window', [src.buffer, out.buffer], uniforms, B * floats);
      return;
    }
    this.ctx.encode((enc) => {
      for (let b = 0; b < B; b++) {
        const to = (b * outRow + outAt) * F32;
        if (zero) enc.clear(out.buffer, to, floats * F32);
        else enc.copy(src.buffer, (b * srcRow + srcAt) * F32, out.buffer, to, floats * F32);
      }
    });
  }

  shiftTime(x: Tensor, fill: Tensor | null, dir: 1 | -1): Tensor {
    const src = this.get(x);
    const f = fill ? this.get(fill) : null;
    const [B, T] = src.shape as [number, number];
    const K = perStep(src.shape);
    const out = this.make(src.shape);
    if (out.size === 0) return out;
    const row = T * K;
    this.copyRows(B, (T - 1) * K, src, row, dir === 1 ? 0 : K, out, row, dir === 1 ? K : 0);
    const edge = dir === 1 ? 0 : (T - 1) * K;
    if (f) this.copyRows(B, K, f, K, 0, out, row, edge);
    else this.copyRows(B, K, src, row, 0, out, row, edge, true);
    return out;
  }

  broadcastTime(x: Tensor, T: number): Tensor {
    const src = this.get(x);
    const B = src.shape[0]!;
    const inner = src.size / B;
    const out = this.make([B, T, ...src.shape.slice(1)]);
    this.ctx.dispatch(
      BROADCAST_TIME,
      'broadcast-time',
      [src.buffer, out.buffer],
      [out.size, T, inner],
      out.size,
    );
    return out;
  }

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const src = this.get(x);
    const out = this.make(shape);
    if (src.size > 0) this.ctx.encode((enc) => enc.copy(src.buffer, 0, out.buffer, 0, src.size * F32));
    return out;
  }

  sliceTime(x: Tensor, start: number, length: number): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const K = perStep(src.shape);
    const out = this.make([B, length, ...src.shape.slice(2)]);
    this.copyRows(B, length * K, src, T * K, start * K, out, length * K, 0);
    return out;
  }

  concatTime(parts: readonly Tensor[]): Tensor {
    const ps = parts.map((p) => this.get(p));
    const first = ps[0]!;
    const B = first.shape[0]!;
    const K = perStep(first.shape);
    const T = ps.reduce((s, p) => s + p.shape[1]!, 0);
    const out = this.make([B, T, ...first.shape.slice(2)]);
    let t0 = 0;
    for (const p of ps) {
      const len = p.shape[1]!;
      this.copyRows(B, len * K, p, len * K, 0, out, T * K, t0 * K);
      t0 += len;
    }
    return out;
  }

  timeStep(x: Tensor, t: number): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const K = perStep(src.shape);
    const out = this.make([B, ...src.shape.slice(2)]);
    this.copyRows(B, K, src, T * K, t * K, out, K, 0);
    return out;
  }

  // ---- reductions ----------------------------------------------------------------------------

  async newtonUpdate(yRaw: Tensor, yOld: Tensor, opts: NewtonUpdateOptions): Promise<NewtonUpdate> {
    const raw = this.get(yRaw);
    const old = this.get(yOld);
    if (old.size !== raw.size) throw new ShapeError('newtonUpdate', fmt(raw.shape), fmt(old.shape));
    const B = Math.max(1, raw.shape[0] ?? 1);
    const steps = raw.shape[1] ?? 1;
    return this.withUpdateResult(old, B, steps, opts, this.newtonUpdatePass(raw, old, opts.delta === true, opts));
  }

  /** NEWTON_UPDATE's pass over `raw` (the raw iterate, or the step δ where `delta`). */
  private newtonUpdatePass(
    raw: GpuTensor,
    old: GpuTensor,
    delta: boolean,
    opts: NewtonUpdateOptions,
  ): (y: GpuTensor, res: GPUBuffer, act: GPUBuffer) => void {
    return (y, res, act) => {
      const B = Math.max(1, raw.shape[0] ?? 1);
      const rowLen = Math.max(1, raw.size / B);
      // A few waves of invocations, each walking a stretch of its row.
      const G = updateGroupsPerRow(rowLen, B, this.scanLanes * 16);
      const uniforms = [
        raw.size,
        f32Bits(opts.atol),
        f32Bits(opts.rtol),
        f32Bits(opts.clip),
        rowLen,
        delta ? 1 : 0,
        G,
      ];
      const bufs = [raw.buffer, old.buffer, y.buffer, res, act];
      this.ctx.dispatch(NEWTON_UPDATE, 'newton-update', bufs, uniforms, B * G * WG);
    };
  }

  /**
   * What newtonUpdate and scanUpdate share: the new iterate (shaped like `old`), the result buffer
   * res (cleared) and the active-row mask act for `record` to fill, then the one read of res
   * turned into per-row measures (see NEWTON_UPDATE for its layout).
   */
  private async withUpdateResult(
    old: GpuTensor,
    B: number,
    steps: number,
    opts: NewtonUpdateOptions,
    record: (y: GpuTensor, res: GPUBuffer, act: GPUBuffer) => void,
  ): Promise<NewtonUpdate> {
    const { y, res, resBytes } = this.recordUpdate(old, B, opts, record);
    try {
      const bits = new Uint32Array(await this.ctx.readBytes(res, 0, resBytes));
      const f = new Float32Array(bits.buffer);
      const rowLen = Math.max(1, old.size / B);
      const inner = rowLen / Math.max(1, steps);
      const rows = {
        maxScaledDiff: Float64Array.from({ length: B }, (_, b) => f[1 + 4 * b]!),
        replaced: Uint32Array.from({ length: B }, (_, b) => bits[2 + 4 * b]!),
        clipped: Uint32Array.from({ length: B }, (_, b) => bits[3 + 4 * b]!),
        settled: Uint32Array.from({ length: B }, (_, b) => {
          const key = bits[4 + 4 * b]!;
          if (opts.active && !opts.active[b]) return 0;
          return key === 0 ? steps : Math.floor((rowLen - key) / inner);
        }),
      };
      return newtonUpdateFromRows(y, f[0]!, rows);
    } catch (err) {
      this.dispose(y);
      throw err;
    } finally {
      this.ctx.release(res);
    }
  }

  /**
   * Records an update: allocates the new iterate, clears the result buffer (the caller's to read
   * and release), writes the active-row mask and lets `record` fill them.
   */
  private recordUpdate(
    old: GpuTensor,
    B: number,
    opts: NewtonUpdateOptions,
    record: (y: GpuTensor, res: GPUBuffer, act: GPUBuffer) => void,
  ): { y: GpuTensor; res: GPUBuffer; resBytes: number } {
    const y = this.make(old.shape);
    const resBytes = (1 + 4 * B) * 4;
    const res = this.ctx.buffer(resBytes);
    const act = this.ctx.buffer(B * 4);
    try {
      this.ctx.encode((enc) => enc.clear(res, 0, Math.ceil(resBytes / 4) * 4));
      this.ctx.write(
        act,
        Uint32Array.from({ length: B }, (_, b) => (opts.active ? opts.active[b]! : 1)),
      );
      record(y, res, act);
    } catch (err) {
      this.dispose(y);
      this.ctx.release(res);
      throw err;
    } finally {
      this.ctx.release(act);
    }
    return { y, res, resBytes };
  }

  /**
   * `recordUpdate` whose result nobody reads: it goes back to the pool at once (the queue runs in
   * recording order, so its next user comes after these passes), and the commands are submitted.
   */
  private recordUnread(
    old: GpuTensor,
    B: number,
    opts: NewtonUpdateOptions,
    record: (y: GpuTensor, res: GPUBuffer, act: GPUBuffer) => void,
  ): GpuTensor {
    const { y, res } = this.recordUpdate(old, B, opts, record);
    this.ctx.release(res);
    this.ctx.flush();
    return y;
  }

  async findNonFinite(t: Tensor): Promise<{ index: number; value: number } | null> {
    const x = this.get(t);
    const res = this.ctx.buffer(16);
    try {
      this.ctx.encode((enc) => enc.clear(res, 0, 16));
      const threads = this.strideThreads(x.size);
      this.ctx.dispatch(FIND_NON_FINITE, 'find-non-finite', [x.buffer, res], [x.size, threads], threads);
      const key = new Uint32Array(await this.ctx.readBytes(res, 0, 4))[0]!;
      if (key === 0) return null;
      const index = x.size - key;
      const value = new Float32Array(await this.ctx.readBytes(x.buffer, index * F32, 4))[0]!;
      return { index, value };
    } finally {
      this.ctx.release(res);
    }
  }

  add(a: Tensor, b: Tensor): Tensor {
    const x = this.get(a);
    const y = this.get(b);
    if (x.size !== y.size) throw new ShapeError('add', fmt(x.shape), fmt(y.shape));
    const out = this.make(x.shape);
    const bufs = [x.buffer, y.buffer, out.buffer];
    if (!this.vec4Elementwise(ADD4, 'add', bufs, x.size)) this.ctx.dispatch(ADD, 'add', bufs, [x.size], x.size);
    return out;
  }
  sub(a: Tensor, b: Tensor): Tensor {
    const x = this.get(a);
    const y = this.get(b);
    if (x.size !== y.size) throw new ShapeError('sub', fmt(x.shape), fmt(y.shape));
    const out = this.make(x.shape);
    const bufs = [x.buffer, y.buffer, out.buffer];
    if (!this.vec4Elementwise(SUB4, 'sub', bufs, x.size)) this.ctx.dispatch(SUB, 'sub', bufs, [x.size], x.size);
    return out;
  }

  dampedScan(args: DampedScanArgs): Tensor {
    const a = this.get(args.A);
    const c = this.get(args.c);
    const s = a.shape[3]!;
    const [B, T, n] = c.shape as [number, number, number];
    const size = c.size;
    const out = this.make(c.shape);
    if (size === 0) return out;
    if (s > 1) {
      try {
        this.dampedScanBlocks(a.buffer, c.buffer, args.lambda, out.buffer, B, T, n, s);
      } catch (err) {
        this.dispose(out);
        throw err;
      }
      return out;
    }
    let P = this.ctx.buffer(4 * size * F32);
    let Q = this.ctx.buffer(4 * size * F32);
    const lam = this.ctx.buffer(Math.max(1, B) * F32);
    try {
      this.ctx.write(lam, Float32Array.from(args.lambda));
      this.ctx.dispatch(DAMPED_SETUP, 'damped-setup', [a.buffer, c.buffer, lam, P], [size, T, n], size);
      for (let k = 1; k < T; k *= 2) {
        this.ctx.dispatch(DAMPED_ROUND, 'damped-round', [P, Q], [size, T, n, k], size);
        [P, Q] = [Q, P];
      }
      this.ctx.dispatch(DAMPED_SOLVE, 'damped-solve', [P, out.buffer], [size], size);
    } catch (err) {
      this.dispose(out);
      throw err;
    } finally {
      this.ctx.release(P);
      this.ctx.release(Q);
      this.ctx.release(lam);
    }
    return out;
  }

  /**
   * The damped scan with s × s blocks (s > 1) by block parallel cyclic reduction (see
   * kernels/damped-scan.ts): a setup, then per round (⌈log2 T⌉ of them) a Cholesky factor of every
   * pivot block, a forward solve per (row, column) and the combine, then a last factor and solve.
   * P and Q (ping-pong) hold the planes L, D and G; Y the forward-solved columns; the factors live
   * in the L plane of the buffer the round writes next.
   */
  private dampedScanBlocks(
    A: GPUBuffer,
    c: GPUBuffer,
    lambda: ArrayLike<number>,
    out: GPUBuffer,
    B: number,
    T: number,
    n: number,
    s: number,
  ): void {
    const nb = n / s;
    const R = B * T * nb;
    const planes = R * (2 * s * s + s) * F32;
    // Taken inside the try, so that a refused allocation still releases the ones before it.
    const scratch: GPUBuffer[] = [];
    const take = (bytes: number) => {
      const buf = this.ctx.buffer(bytes);
      scratch.push(buf);
      return buf;
    };
    try {
      let P = take(planes);
      let Q = take(planes);
      const Y = take(planes);
      const lam = take(Math.max(1, B) * F32);
      this.ctx.write(lam, Float32Array.from(lambda));
      const dims = [R, T, nb, s];
      const cells = R * s * (s + 1);
      const columns = R * (2 * s + 1);
      this.ctx.dispatch(DAMPED_BLOCK_SETUP, 'damped-block-setup', [A, c, lam, P], dims, cells);
      for (let h = 1; h < T; h *= 2) {
        this.ctx.dispatch(DAMPED_BLOCK_FACTOR, 'damped-block-factor', [P, Q], dims, R, SERIAL_WG);
        this.ctx.dispatch(DAMPED_BLOCK_FORWARD, 'damped-block-forward', [P, Q, Y], [...dims, h], columns);
        this.ctx.dispatch(DAMPED_BLOCK_ROUND, 'damped-block-round', [P, Y, Q], [...dims, h], cells);
        [P, Q] = [Q, P];
      }
      this.ctx.dispatch(DAMPED_BLOCK_FACTOR, 'damped-block-factor', [P, Q], dims, R, SERIAL_WG);
      this.ctx.dispatch(DAMPED_BLOCK_SOLVE, 'damped-block-solve', [P, Q, out], dims, R, SERIAL_WG);
    } finally {
      for (const buf of scratch) this.ctx.release(buf);
    }
  }

  maskTime(x: Tensor, lengths: ArrayLike<number>): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const out = this.make(src.shape);
    const lens = this.ctx.buffer(Math.max(1, B) * 4);
    try {
      this.ctx.write(lens, Uint32Array.from({ length: B }, (_, b) => Math.max(0, Math.min(T, lengths[b]!))));
      const inner = perStep(src.shape);
      const kept = Array.from({ length: B }, (_, b) => lengths[b]! >= T).every(Boolean);
      if (!(kept && this.vec4Elementwise(COPY4, 'copy', [src.buffer, out.buffer], src.size)))
        this.ctx.dispatch(MASK_TIME, 'mask-time', [src.buffer, out.buffer, lens], [src.size, T, inner], src.size);
    } finally {
      this.ctx.release(lens);
    }
    return out;
  }

  gatherRows(x: Tensor, rows: readonly number[]): Tensor {
    const src = this.get(x);
    const B = src.shape[0]!;
    const row = (src.size / B) * F32;
    const out = this.make([rows.length, ...src.shape.slice(1)]);
    if (row > 0 && rows.length > ROW_COPIES_MAX) this.listedRows(src.buffer, out.buffer, rows, row / F32, 0);
    else if (row > 0) {
      this.ctx.encode((enc) => {
        for (const [k, r] of rows.entries()) enc.copy(src.buffer, r * row, out.buffer, k * row, row);
      });
    }
    return out;
  }

  /** Gather (mode 0) or scatter (mode 1) listed rows of `floats` floats in one dispatch. */
  private listedRows(src: GPUBuffer, out: GPUBuffer, rows: readonly number[], floats: number, mode: 0 | 1): void {
    const index = this.ctx.buffer(Math.max(16, rows.length * 4));
    try {
      this.ctx.write(index, Uint32Array.from(rows));
      const count = rows.length * floats;
      this.ctx.dispatch(LISTED_ROWS, mode === 0 ? 'gather-rows' : 'scatter-rows', [src, index, out], [count, floats, mode], count);
    } finally {
      this.ctx.release(index);
    }
  }

  scatterRows(into: Tensor, rows: readonly number[], src: Tensor): Tensor {
    const dst = this.get(into);
    const from = this.get(src);
    const B = dst.shape[0]!;
    const rowSize = dst.size / B;
    const row = rowSize * F32;
    const out = this.make(dst.shape);
    if (dst.size > 0) {
      this.ctx.encode((enc) => {
        enc.copy(dst.buffer, 0, out.buffer, 0, dst.size * F32);
        if (rows.length <= ROW_COPIES_MAX)
          for (const [k, r] of rows.entries()) enc.copy(from.buffer, k * row, out.buffer, r * row, row);
      });
      if (rows.length > ROW_COPIES_MAX && row > 0) this.listedRows(from.buffer, out.buffer, rows, rowSize, 1);
    }
    return out;
  }

  /** Sum the rows of a [rows, cols] buffer into a new [cols] tensor, 64 rows per pass. */
  private sumRows(src: GPUBuffer, rows: number, cols: number, owned: boolean): GpuTensor {
    let cur = src;
    let curOwned = owned;
    let r = rows;
    do {
      const groups = Math.max(1, Math.ceil(r / ROWS_PER_GROUP));
      const next = this.ctx.buffer(groups * cols * F32);
      this.ctx.dispatch(COLUMN_SUM, 'column-sum', [cur, next], [r, cols, groups], groups * cols);
      if (curOwned) this.ctx.release(cur);
      cur = next;
      curOwned = true;
      r = groups;
    } while (r > 1);
    return this.wrap([cols], cur);
  }

  sumBatchTime(x: Tensor): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    return this.sumRows(src.buffer, B * T, perStep(src.shape), false);
  }

  outerSum(left: Tensor, right: Tensor, blocks: number): Tensor {
    const l = this.get(left);
    const r = this.get(right);
    const [B, T, L] = l.shape as [number, number, number];
    const R = r.shape[2]!;
    const rows = L / blocks;
    const cols = R / blocks;
    const per = blocks * rows * cols;
    const elems = B * T;
    // As many partial sums as fit one binding, at most one per ROWS_PER_GROUP elements.
    const fit = Math.max(1, Math.floor(this.scratchLimit / (per * F32)));
    const span = Math.max(ROWS_PER_GROUP, Math.ceil(elems / fit));
    const groups = Math.max(1, Math.ceil(elems / span));
    const partial = this.ctx.buffer(groups * per * F32);
    try {
      this.ctx.dispatch(
        OUTER_PARTIAL,
        'outer-partial',
        [l.buffer, r.buffer, partial],
        [elems, groups, blocks, rows, cols, span],
        groups * per,
      );
    } catch (err) {
      this.ctx.release(partial);
      throw err;
    }
    return this.sumRows(partial, groups, per, true);
  }

  // ---- batched small matrices (the ODE exponential) ------------------------------------------

  private checkBlocks(op: string, a: GpuTensor, s: number): void {
    if (!Number.isInteger(s) || s < 1 || a.size % (s * s) !== 0)
      throw new ShapeError(op, `whole ${s}×${s} blocks`, fmt(a.shape));
  }

  blockMatmul(a: Tensor, b: Tensor, s: number): Tensor {
    const x = this.get(a);
    const y = this.get(b);
    this.checkBlocks('blockMatmul', x, s);
    if (y.size !== x.size) throw new ShapeError('blockMatmul', fmt(x.shape), fmt(y.shape));
    const out = this.make(x.shape);
    this.ctx.dispatch(BLOCK_MATMUL, 'block-matmul', [x.buffer, y.buffer, out.buffer], [x.size, s], x.size);
    return out;
  }

  blockMatvec(a: Tensor, v: Tensor, s: number): Tensor {
    const x = this.get(a);
    const vec = this.get(v);
    this.checkBlocks('blockMatvec', x, s);
    if (vec.size * s !== x.size)
      throw new ShapeError('blockMatvec', `${x.size / s} values for ${fmt(x.shape)}`, fmt(vec.shape));
    const out = this.make(vec.shape);
    const bufs = [x.buffer, vec.buffer, out.buffer];
    this.ctx.dispatch(BLOCK_MATVEC, 'block-matvec', bufs, [vec.size, s], vec.size);
    return out;
  }

  scaleTime(x: Tensor, h: ArrayLike<number>, alpha: number): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    if (h.length !== T) throw new ShapeError('scaleTime', `${T} factors`, `${h.length}`);
    // alpha·h[t] in float64, rounded once.
    const f = Float32Array.from({ length: T }, (_, t) => alpha * h[t]!);
    const factors = this.ctx.buffer(T * F32);
    const out = this.make(src.shape);
    try {
      this.ctx.write(factors, f);
      const inner = perStep(src.shape);
      const bufs = [src.buffer, factors, out.buffer];
      this.ctx.dispatch(SCALE_TIME, 'scale-time', bufs, [src.size, T, inner], src.size);
    } catch (err) {
      this.dispose(out);
      throw err;
    } finally {
      this.ctx.release(factors);
    }
    return out;
  }

  capTransitions(a: Tensor, s: number, caps: ArrayLike<number>): Tensor {
    const src = this.get(a);
    this.checkBlocks('capTransitions', src, s);
    const [B, T] = src.shape as [number, number];
    if (caps.length !== B) throw new ShapeError('capTransitions', `${B} caps`, `${caps.length}`);
    const c = this.ctx.buffer(Math.max(B, 4) * F32);
    const out = this.make(src.shape);
    try {
      this.ctx.write(c, Float32Array.from(caps));
      const n = perStep(src.shape) / s;
      this.ctx.dispatch(CAP_TRANSITIONS, 'cap-transitions', [src.buffer, c, out.buffer], [B * T, n, s, T], B * T);
    } catch (err) {
      this.dispose(out);
      throw err;
    } finally {
      this.ctx.release(c);
    }
    return out;
  }

  addIdentity(a: Tensor, s: number, alpha: number): Tensor {
    const src = this.get(a);
    this.checkBlocks('addIdentity', src, s);
    const out = this.make(src.shape);
    const uniforms = [src.size, s, f32Bits(alpha)];
    this.ctx.dispatch(ADD_IDENTITY, 'add-identity', [src.buffer, out.buffer], uniforms, src.size);
    return out;
  }

  async maxAbs(x: Tensor): Promise<number> {
    const src = this.get(x);
    const res = this.ctx.buffer(16);
    try {
      this.ctx.encode((enc) => enc.clear(res, 0, 16));
      const threads = this.strideThreads(src.size);
      this.ctx.dispatch(MAX_ABS_BITS, 'max-abs', [src.buffer, res], [src.size, threads], threads);
      return new Float32Array(await this.ctx.readBytes(res, 0, 4))[0]!;
    } finally {
      this.ctx.release(res);
    }
  }

  // ---- lifetime ------------------------------------------------------------------------------

  /** For tests: WGSL compiled by this device, rejecting with a ShaderCompileError on failure. */
  compileWgsl(code: string, label = 'user'): Promise<void> {
    return this.ctx.compileChecked(code, label);
  }

  /** For tests: lose the device the way a driver reset would (device.destroy()). */
  simulateDeviceLoss(): void {
    this.ctx.loseDevice();
  }

  destroy(): void {
    const lost = this.ctx.device.lost;
    this.ctx.destroy();
    // Dawn's Node binding pumps the instance's events from a queued callback that holds it only by
    // pointer: a GPU object collected while one is queued (the backend dropped right after
    // destroy()) had the next pump lock a freed mutex and abort the process at exit. The instance
    // is held until the device's loss is delivered and the pump has had time to drain.
    const hold = this.keepAlive;
    if (hold === undefined) return;
    HELD.add(hold);
    void lost
      .then(() => new Promise((done) => setTimeout(done, DRAIN_MS)))
      .finally(() => HELD.delete(hold));
  }
}
