import {
  checkIsTensor,
  hostFindNonFinite,
  allocating,
  checkOptionNames,
  numberOption,
  type Backend,
  type BackendCapabilities,
  forEachTensor,
  guardOpArgs,
  type DampedScanArgs,
  type DeerStepInputs,
  type DType,
  DTypeError,
  hostCapTransitions,
  hostDampedScan,
  hostMaxAbs,
  hostNewtonUpdate,
  hostSequential,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  newtonUpdateFromRows,
  type ScanArgs,
  ShapeError,
  type StepInputs,
  type StepOutputs,
  type StepProgram,
  type Tensor,
  TensorStateError,
  UnsupportedOptionError,
} from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import { type DataMoves, dampedScanPcr, linearScan, SCAN_METHODS, type ScanMethod, timeSteps } from './scan.js';
import { newtonStep } from './newton.js';
import { HoistCache } from './hoist.js';
import { capTransitionsOps } from './transitions.js';
import { hostOuterSum } from './host.js';
import { type CompiledStep, compileStep } from './step.js';
import { type Tf, TfjsTensor } from './tensor.js';

export interface TfjsBackendOptions {
  /**
   * Largest buffer in bytes: default 128 MiB on wasm (its heap must hold several Jacobian-sized
   * tensors at once inside 32-bit memory), 1 GiB otherwise; set lower to exercise windowing.
   */
  readonly maxBufferBytes?: number;
  /** Order of the linear scan; see `ScanMethod`. Default 'auto'. */
  readonly scan?: ScanMethod;
  /**
   * A deerjs backend whose data is on the host (e.g. `@deerjs/cpu`'s) to run step programs on
   * (`runStep`) when this backend's tfjs engine keeps its data on the host too (cpu, wasm): a step
   * program is many small per-element ops, which tfjs dispatches one by one. One you pass stays
   * yours (destroy it yourself; several tfjs backends may share it); the one `createTfjsBackend`
   * makes when `@deerjs/cpu` is installed is destroyed with this backend.
   */
  readonly hostKernels?: Backend;
}

/** The options `TfjsBackend` takes (createTfjsBackend adds its own). */
export const TFJS_BACKEND_OPTION_NAMES: readonly string[] = ['maxBufferBytes', 'scan', 'hostKernels'];
/** The options of createTfjsBackend: the backend's, and which tfjs, engine and dtype. */
export const CREATE_OPTION_NAMES: readonly string[] = [...TFJS_BACKEND_OPTION_NAMES, 'tf', 'backend', 'dtype'];

/** sumBatchTime sums more rows than this in two levels (see there). */
const PAIRWISE_FROM = 4096;

type NewtonOpts = NewtonUpdateOptions;

const shapeSize = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
/** A record with every value mapped (params by name). */
const mapValues = <A, B>(r: Readonly<Record<string, A>>, f: (v: A) => B): Record<string, B> =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [k, f(v)]));
const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/**
 * deerjs on TensorFlow.js: every method is a few batched tf ops, run on whichever tfjs backend is
 * active (cpu, wasm, webgl, webgpu). float32 only (tfjs has no float64).
 */
export class TfjsBackend implements Backend {
  readonly name = 'tfjs';
  readonly capabilities: BackendCapabilities;
  readonly scanMethod: ScanMethod;
  private live = 0;
  /** Set by destroy(): every use but dispose, liveTensors and destroy is then a TensorStateError. */
  private destroyed = false;
  /** How the tfjs engine in use when the backend was made moves data. */
  private readonly moves: DataMoves;
  private readonly compiled = new WeakMap<StepProgram, CompiledStep>();
  private readonly hoisted: HoistCache;
  private readonly kernels: Backend | undefined;

  /**
   * @param ownsHostKernels whether `options.hostKernels` was made for this backend alone
   *   (`createTfjsBackend`'s own), and is destroyed with it.
   */
  constructor(
    readonly tf: Tf,
    options: TfjsBackendOptions = {},
    private readonly ownsHostKernels = false,
  ) {
    const engine = tf.getBackend();
    this.hoisted = new HoistCache(tf);
    this.moves = {
      viewSlices: engine === 'cpu',
      gatherSteps: engine === 'wasm',
      hostLoops: engine === 'cpu',
      hostData: engine === 'cpu' || engine === 'wasm',
    };
    checkOptionNames(options, TFJS_BACKEND_OPTION_NAMES, 'TfjsBackend');
    numberOption('maxBufferBytes', options.maxBufferBytes, 0, 'integer');
    if (options.scan !== undefined && !SCAN_METHODS.includes(options.scan))
      throw new UnsupportedOptionError('scan', options.scan, SCAN_METHODS.map((m) => `'${m}'`).join(', '));
    this.scanMethod = options.scan ?? 'auto';
    const k = options.hostKernels;
    if (k && (!k.readSync || !k.capabilities.dtypes.includes('float32'))) {
      throw new UnsupportedOptionError(
        'hostKernels',
        k,
        'a backend with synchronous reads and float32 (e.g. @deerjs/cpu)',
      );
    }
    this.kernels = this.moves.hostData ? k : undefined;
    this.capabilities = {
      dtypes: ['float32'],
      defaultDType: 'float32',
      maxBufferBytes: options.maxBufferBytes ?? (engine === 'wasm' ? 2 ** 27 : 2 ** 30),
      syncRead: engine === 'cpu' || engine === 'wasm' || engine === 'tensorflow',
      device: `tfjs ${engine}${this.kernels ? `, step programs on ${this.kernels.name}` : ''}`,
      // Steps, sequential passes and fused DEER steps run on the host backend, so 'auto' prices them
      // as that backend's (without, it had no figures and ran Newton at any cost: 5× sequential).
      ...(this.kernels ? costsOf(this.kernels.capabilities) : {}),
      // tfjs's cpu and wasm engines are the host CPU behind a tensor library: loadBackend() with
      // no name prefers @deerjs/cpu where it loads (1.1–1.7× faster 'auto', GRU B = 16, nh = 1–32).
      ...(engine === 'cpu' || engine === 'wasm' ? { emulated: true } : {}),
    };
    // Bad arguments are refused before tfjs sees them (core's op contracts).
    guardOpArgs(this, (args) => {
      this.checkAlive();
      forEachTensor(args, 3, (t) => this.unwrap(t));
    });
  }

  /**
   * A deerjs tensor around `t` (float32). Not owned: disposing the wrapper leaves `t` alone. After
   * destroy() a TensorStateError, and an owned `t` is disposed (it was handed over).
   */
  wrap(t: tfc.Tensor, owned = false): TfjsTensor {
    if (this.destroyed) {
      if (owned) t.dispose();
      this.checkAlive();
    }
    this.live++;
    return new TfjsTensor([...t.shape], t, this, owned);
  }

  /** The tf.Tensor inside a tensor of this backend. */
  unwrap(t: Tensor): tfc.Tensor {
    this.checkAlive();
    this.mine(t);
    return t.tf;
  }

  /** A tensor this backend made: not another backend's, nor another tfjs backend's (whose count it is). */
  private mine(t: Tensor): asserts t is TfjsTensor {
    checkIsTensor('tfjs', t);
    if (!(t instanceof TfjsTensor))
      throw new TensorStateError(`tfjs: not a tfjs tensor (from '${t.backendName}')`);
    if (t.owner !== this)
      throw new TensorStateError('tfjs: tensor of another tfjs backend instance: read it and make it again here');
  }

  private own(t: tfc.Tensor): TfjsTensor {
    return this.wrap(t, true);
  }

  /**
   * Refuse use after destroy(), naming this backend (not the host kernels' backend, destroyed with
   * it where it owns them). Async methods check again after each wait: a destroy() that lands
   * mid-solve stops the solve at its next use of the backend.
   */
  private checkAlive(): void {
    if (this.destroyed) throw new TensorStateError('tfjs: backend used after destroy()');
  }

  private checkDType(what: string, dtype: DType): void {
    if (dtype !== 'float32') throw new DTypeError(what, 'float32 (tfjs has no float64)', String(dtype));
  }

  // tensor's and zeros' shape and data are core's contract (checkTensorData), checked by guardOpArgs
  // before either runs.
  tensor(data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'float32'): Tensor {
    this.checkAlive();
    this.checkDType('tensor', dtype);
    return this.own(allocating('tfjs', shapeSize(shape) * 4, () => this.tf.tensor(Float32Array.from(data), [...shape], 'float32')));
  }

  zeros(shape: readonly number[], dtype: DType = 'float32'): Tensor {
    this.checkAlive();
    this.checkDType('zeros', dtype);
    return this.own(allocating('tfjs', shapeSize(shape) * 4, () => this.tf.zeros([...shape], 'float32')));
  }

  async read(t: Tensor): Promise<Float32Array> {
    // A copy: some tfjs backends hand out their own storage.
    const d = (await this.unwrap(t).data()) as Float32Array;
    this.checkAlive();
    return d.slice();
  }

  /** `read`, synchronously (dataSync: blocks on GPU backends). */
  readSync(t: Tensor): Float32Array {
    return (this.unwrap(t).dataSync() as Float32Array).slice();
  }

  /** Allowed after destroy(), so cleanup code in `finally` blocks never throws. */
  dispose(t: Tensor): void {
    this.mine(t);
    if (t.disposed) return;
    this.hoisted.forget(t);
    if (t.owned) this.tf.dispose(t.tf);
    t.disposed = true;
    this.live--;
  }

  /** Hand the tf.Tensor inside an owned tensor to the caller; the wrapper counts as disposed. */
  release(t: Tensor): tfc.Tensor {
    const inner = this.unwrap(t);
    const w = t as TfjsTensor;
    if (!w.owned) throw new TensorStateError('tfjs: release of a borrowed tensor');
    this.hoisted.forget(w);
    w.disposed = true;
    this.live--;
    return inner;
  }

  /** Allowed after destroy() (the leak check). */
  liveTensors(): number {
    return this.live;
  }

  private program(p: StepProgram): CompiledStep {
    let c = this.compiled.get(p);
    if (!c) {
      c = compileStep(this.tf, p, { cutByGather: this.moves.viewSlices, hostLoops: this.moves.hostLoops });
      this.compiled.set(p, c);
    }
    return c;
  }

  private flatParams(params: Readonly<Record<string, Tensor>>): Record<string, tfc.Tensor> {
    return mapValues(params, (v) => this.unwrap(v));
  }

  runStep(program: StepProgram, inputs: StepInputs): StepOutputs {
    this.checkAlive();
    if (this.kernels) return this.runStepOnHost(this.kernels, program, inputs);
    const tf = this.tf;
    const step = this.program(program);
    const state = this.unwrap(inputs.state);
    const [B, T] = state.shape as [number, number];
    const R = B * T;
    const flat = (t: Tensor | undefined) => (t ? tf.reshape(this.unwrap(t), [R, t.shape[2]!]) : undefined);
    const params = this.flatParams(inputs.params);
    // All of a step's intermediates ([rows, size] vectors, [rows, size, n] Jacobian terms) are
    // alive at once, so elements go through in slabs that keep them within one buffer's bytes.
    const slab = Math.max(
      1,
      Math.floor(this.capabilities.maxBufferBytes / (4 * step.floatsPerElement)),
    );
    const all = { state: flat(inputs.state)!, input: flat(inputs.input), cotangent: flat(inputs.cotangent) };
    const parts: tfc.Tensor[][] = [];
    let res: tfc.Tensor[];
    try {
      for (let r0 = 0; r0 < R; r0 += slab) {
        const rows = Math.min(slab, R - r0);
        // One tidy per slab: its intermediates are freed before the next slab starts.
        parts.push(
          tf.tidy(() => {
            const cut = (t: tfc.Tensor | undefined) =>
              t && rows < R ? tf.slice(t, [r0, 0], [rows, t.shape[1]!]) : t;
            const kept = step.hoistable ? this.hoisted.slab(inputs, r0, rows) : undefined;
            const v = step.run(
              { rows, state: cut(all.state)!, input: cut(all.input), cotangent: cut(all.cotangent), params },
              kept,
            );
            return v.jacobian ? [...v.outputs, v.jacobian] : v.outputs;
          }),
        );
      }
      res = tf.tidy(() =>
        parts[0]!.map((first, k) => {
          const whole =
            parts.length === 1
              ? first
              : tf.concat(
                  parts.map((p) => p[k]!),
                  0,
                );
          return tf.reshape(whole, [B, T, ...whole.shape.slice(1)]);
        }),
      );
    } finally {
      for (const list of parts) for (const t of list) t.dispose();
      for (const t of Object.values(all)) if (t) t.dispose();
    }
    const wrapped = res.map((t) => this.own(t));
    if (!program.jacobian) return { outputs: wrapped };
    const jacobian = wrapped.pop()!;
    return { outputs: wrapped, jacobian };
  }

  /** runStep on `kernels` (see TfjsBackendOptions.hostKernels): the inputs read once, the outputs copied back. */
  private runStepOnHost(kernels: Backend, program: StepProgram, inputs: StepInputs): StepOutputs {
    const made: Tensor[] = [];
    const put = this.toHost(kernels, made);
    try {
      const out = kernels.runStep(program, {
        state: put(inputs.state),
        ...(inputs.input ? { input: put(inputs.input) } : {}),
        ...(inputs.cotangent ? { cotangent: put(inputs.cotangent) } : {}),
        params: mapValues(inputs.params, put),
      });
      const back = (h: Tensor) => this.fromHost(kernels, h, made);
      const outputs = out.outputs.map(back);
      return out.jacobian ? { outputs, jacobian: back(out.jacobian) } : { outputs };
    } finally {
      for (const h of made) kernels.dispose(h);
    }
  }

  /**
   * The host backend's fused DEER step (see `Backend.deerStep`), where it has one for this case:
   * residual, Jacobian, scan and update in one pass over the inputs read once.
   */
  deerStep(
    program: StepProgram,
    inputs: DeerStepInputs,
    previous: Tensor,
    opts: NewtonOpts,
  ): Promise<NewtonUpdate> | null {
    this.checkAlive();
    const kernels = this.kernels;
    if (!kernels?.deerStep) return null;
    const made: Tensor[] = [];
    const put = this.toHost(kernels, made);
    const release = () => {
      for (const h of made) kernels.dispose(h);
    };
    let pending: Promise<NewtonUpdate> | null;
    try {
      const host = { input: put(inputs.input), y0: put(inputs.y0), params: mapValues(inputs.params, put) };
      pending = kernels.deerStep(program, host, put(previous), opts);
    } catch (err) {
      release();
      throw err;
    }
    if (!pending) {
      release();
      return null;
    }
    // A destroy() while the host step ran (which destroys `kernels` where this backend owns them):
    // the error names this backend, whichever way the host step ended (its own error would name
    // the host backend).
    return pending
      .then(
        (u) => {
          if (this.destroyed) made.push(u.y);
          this.checkAlive();
          return { ...u, y: this.fromHost(kernels, u.y, made) };
        },
        (err: unknown) => {
          this.checkAlive();
          throw err;
        },
      )
      .finally(release);
  }

  /** A tensor of `kernels` with the data of one of ours (recorded in `made` for disposal). */
  private toHost(kernels: Backend, made: Tensor[]): (t: Tensor) => Tensor {
    return (t) => {
      const inner = this.unwrap(t);
      const h = kernels.tensor(inner.dataSync() as Float32Array, inner.shape, 'float32');
      made.push(h);
      return h;
    };
  }

  /** One of our tensors with the data of `kernels`' tensor h (h recorded in `made` for disposal). */
  private fromHost(kernels: Backend, h: Tensor, made: Tensor[]): TfjsTensor {
    made.push(h);
    return this.own(this.tf.tensor(kernels.readSync!(h), [...h.shape], 'float32'));
  }

  runSequential(
    program: StepProgram,
    inputs: { input?: Tensor; y0: Tensor; params: Readonly<Record<string, Tensor>> },
  ): Tensor {
    this.checkAlive();
    const tf = this.tf;
    const kernels = this.kernels;
    if (kernels) {
      // The host backend's own sequential pass (@deerjs/cpu: compiled, batch rows in SIMD lanes):
      // 5–34× faster than core's host interpreter below (GRU, B = 16, nh = 1–32).
      const made: Tensor[] = [];
      const put = this.toHost(kernels, made);
      try {
        const host = { ...(inputs.input ? { input: put(inputs.input) } : {}), y0: put(inputs.y0), params: mapValues(inputs.params, put) };
        return this.fromHost(kernels, kernels.runSequential(program, host), made);
      } finally {
        for (const h of made) kernels.dispose(h);
      }
    }
    if (this.moves.hostData) {
      const y0 = this.unwrap(inputs.y0);
      const [B, n] = y0.shape as [number, number];
      const x = inputs.input ? this.unwrap(inputs.input) : undefined;
      const T = x ? x.shape[1]! : 1;
      const data = (t: tfc.Tensor) => t.dataSync() as Float32Array;
      const params = mapValues(inputs.params, (v) => data(this.unwrap(v)));
      const y = hostSequential(program, params, x && data(x), data(y0), B, T, 'float32');
      return this.own(tf.tensor(y, [B, T, n], 'float32'));
    }
    const step = this.program(program);
    const y0 = this.unwrap(inputs.y0);
    const B = y0.shape[0]!;
    const input = inputs.input ? this.unwrap(inputs.input) : undefined;
    const xs = input ? tf.tidy(() => timeSteps(tf, input, this.moves)) : [undefined];
    const params = this.flatParams(inputs.params);
    const ys: tfc.Tensor[] = [];
    try {
      let prev = y0;
      for (const x of xs) {
        prev = tf.tidy(() => step.run({ rows: B, state: prev, input: x, params }).outputs[0]!);
        ys.push(prev);
      }
      return this.own(tf.stack(ys, 1));
    } finally {
      tf.dispose(ys);
      for (const x of xs) if (x) x.dispose();
    }
  }

  scan(args: ScanArgs): Tensor {
    const tf = this.tf;
    const { blockSize: s, reverse } = args;
    const A = this.unwrap(args.A);
    const c = this.unwrap(args.c);
    const y0 = this.unwrap(args.y0);
    if (c.size === 0) return this.own(tf.zeros(c.shape));
    return this.own(tf.tidy(() => linearScan(tf, this.scanMethod, A, c, y0, s, reverse, this.moves)));
  }

  affineOffset(F: Tensor, A: Tensor, y: Tensor, s: number): Tensor {
    const tf = this.tf;
    const f = this.unwrap(F);
    const a = this.unwrap(A);
    const yy = this.unwrap(y);
    return this.own(
      tf.tidy(() => {
        const Ay =
          s === 1
            ? tf.mul(tf.reshape(a, f.shape), yy)
            : tf.reshape(tf.matMul(tf.reshape(a, [-1, s, s]), tf.reshape(yy, [-1, s, 1])), f.shape);
        return tf.sub(f, Ay);
      }),
    );
  }

  shiftTime(x: Tensor, fill: Tensor | null, dir: 1 | -1): Tensor {
    const tf = this.tf;
    const src = this.unwrap(x);
    const fl = fill ? this.unwrap(fill) : null;
    const [B, T, ...rest] = src.shape as number[];
    return this.own(
      tf.tidy(() => {
        // No steps (or rows): nothing to shift (the slices below would start past the end).
        if (src.size === 0) return tf.clone(src);
        const edge = fl ? tf.reshape(fl, [B!, 1, ...rest]) : tf.zeros([B!, 1, ...rest]);
        if (T === 1) return tf.clone(edge);
        if (this.moves.hostData) {
          // On the host, one pass: each row's T − 1 kept steps are one contiguous run. (A strided
          // Slice on tfjs cpu goes entry by entry, ~0.5 µs each; a slice and a join per row cost
          // two tensors per row: 4 s for 150,000 rows. On wasm, whose reads copy, the copy is
          // still cheaper than its slice, a JavaScript loop: 17% of a GRU DEER solve.)
          const K = shapeSize(rest);
          const from = src.dataSync() as Float32Array;
          const edges = fl ? (fl.dataSync() as Float32Array) : null;
          const out = new Float32Array(B! * T! * K);
          for (let b = 0; b < B!; b++) {
            const row = b * T! * K;
            const at = dir === 1 ? row : row + (T! - 1) * K;
            out.set(from.subarray(dir === 1 ? row : row + K, row + (dir === 1 ? (T! - 1) * K : T! * K)), dir === 1 ? row + K : row);
            if (edges) out.set(edges.subarray(b * K, (b + 1) * K), at);
          }
          return tf.tensor(out, src.shape, 'float32');
        }
        // As [B, T, K]: wasm slices and joins tensors of rank > 4 entry by entry in JavaScript.
        const K = shapeSize(rest);
        const body = tf.slice(tf.reshape(src, [B!, T!, K]), [0, dir === 1 ? 0 : 1], [-1, T! - 1]);
        const e = tf.reshape(edge, [B!, 1, K]);
        return tf.reshape(tf.concat(dir === 1 ? [e, body] : [body, e], 1), src.shape);
      }),
    );
  }

  broadcastTime(x: Tensor, T: number): Tensor {
    const tf = this.tf;
    const src = this.unwrap(x);
    const [B, ...rest] = src.shape as number[];
    // tf.broadcastTo to a zero extent kept the 1 (shape [B, 1, ...]).
    if (T === 0) return this.own(tf.zeros([B!, 0, ...rest]));
    return this.own(tf.tidy(() => tf.broadcastTo(tf.reshape(src, [B!, 1, ...rest]), [B!, T, ...rest])));
  }

  sliceTime(x: Tensor, start: number, length: number): Tensor {
    const src = this.unwrap(x);
    const T = src.shape[1]!;
    const tf = this.tf;
    const [B, , ...rest] = src.shape as number[];
    return this.own(
      tf.tidy(() =>
        tf.reshape(tf.slice(tf.reshape(src, [B!, T, shapeSize(rest)]), [0, start], [-1, length]), [
          B!,
          length,
          ...rest,
        ]),
      ),
    );
  }

  concatTime(parts: readonly Tensor[]): Tensor {
    this.checkAlive();
    return this.own(
      this.tf.concat(
        parts.map((p) => this.unwrap(p)),
        1,
      ),
    );
  }

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const src = this.unwrap(x);
    return this.own(this.tf.reshape(src, [...shape]));
  }

  timeStep(x: Tensor, t: number): Tensor {
    const tf = this.tf;
    const src = this.unwrap(x);
    const [B, T, ...rest] = src.shape as number[];
    return this.own(
      tf.tidy(() => tf.reshape(tf.slice(tf.reshape(src, [B!, T!, shapeSize(rest)]), [0, t], [-1, 1]), [B!, ...rest])),
    );
  }

  /** See `newtonStep`; engines with synchronous reads probe for the quiet case first. */
  private newtonStep(yRaw: Tensor, yOld: Tensor, o: NewtonOpts): [tfc.Tensor, tfc.Tensor] {
    return newtonStep(this.tf, this.unwrap(yRaw), this.unwrap(yOld), o, this.capabilities.syncRead);
  }

  private finishUpdate(y: tfc.Tensor, stats: ArrayLike<number>): NewtonUpdate {
    const B = (stats.length - 1) / 4;
    const rows = {
      maxScaledDiff: Float64Array.from({ length: B }, (_, b) => stats[b]!),
      replaced: Uint32Array.from({ length: B }, (_, b) => stats[B + b]!),
      clipped: Uint32Array.from({ length: B }, (_, b) => stats[2 * B + b]!),
      settled: Uint32Array.from({ length: B }, (_, b) => stats[3 * B + b]!),
    };
    return newtonUpdateFromRows(this.own(y), stats[4 * B]!, rows);
  }

  /**
   * On engines whose tensors are JavaScript typed arrays (tfjs cpu), core's host update: one pass
   * over raw and old instead of a dozen full-size tfjs ops.
   */
  private newtonUpdateOnHost(yRaw: Tensor, yOld: Tensor, opts: NewtonOpts): NewtonUpdate {
    const raw = this.unwrap(yRaw);
    const old = this.unwrap(yOld);
    const out = new Float32Array(raw.size);
    const B = raw.shape[0] ?? 1;
    const { maxAbsDiff, rows } = hostNewtonUpdate(raw.dataSync(), old.dataSync(), out, B, raw.shape[1] ?? 1, opts);
    return newtonUpdateFromRows(this.own(this.tf.tensor(out, [...raw.shape], 'float32')), maxAbsDiff, rows);
  }

  async newtonUpdate(yRaw: Tensor, yOld: Tensor, opts: NewtonOpts): Promise<NewtonUpdate> {
    if (this.moves.hostLoops) return this.newtonUpdateOnHost(yRaw, yOld, opts);
    const [y, stats] = this.newtonStep(yRaw, yOld, opts);
    try {
      // After a destroy() during the read, finishUpdate's own(y) disposes y and throws.
      return this.finishUpdate(y, await stats.data());
    } finally {
      stats.dispose();
    }
  }

  /** `newtonUpdate` with a synchronous read, for the tfjs op (tfjs kernels are synchronous). */
  newtonUpdateSync(yRaw: Tensor, yOld: Tensor, opts: NewtonOpts): NewtonUpdate {
    if (this.moves.hostLoops) return this.newtonUpdateOnHost(yRaw, yOld, opts);
    const [y, stats] = this.newtonStep(yRaw, yOld, opts);
    try {
      return this.finishUpdate(y, stats.dataSync());
    } finally {
      stats.dispose();
    }
  }

  async findNonFinite(t: Tensor): Promise<{ index: number; value: number } | null> {
    const tf = this.tf;
    const src = this.unwrap(t);
    if (this.moves.hostData) {
      // One loop over the host data (tfjs-cpu's isFinite, logicalNot and any had taken more than
      // the sequential pass they guard).
      return hostFindNonFinite(src.dataSync() as Float32Array);
    }
    const flag = tf.tidy(() => tf.any(tf.logicalNot(tf.isFinite(src))));
    const any = (await flag.data())[0];
    flag.dispose();
    this.checkAlive();
    if (!any) return null;
    return hostFindNonFinite(await this.read(t));
  }

  add(a: Tensor, b: Tensor): Tensor {
    const x = this.unwrap(a);
    const y = this.unwrap(b);
    if (x.size !== y.size) throw new ShapeError('add', fmt(x.shape), fmt(y.shape));
    return this.own(this.tf.tidy(() => this.tf.add(x, this.tf.reshape(y, x.shape))));
  }

  sub(a: Tensor, b: Tensor): Tensor {
    const x = this.unwrap(a);
    const y = this.unwrap(b);
    if (x.size !== y.size) throw new ShapeError('sub', fmt(x.shape), fmt(y.shape));
    return this.own(this.tf.tidy(() => this.tf.sub(x, this.tf.reshape(y, x.shape))));
  }

  dampedScan(args: DampedScanArgs): Tensor {
    const a = this.unwrap(args.A);
    const c = this.unwrap(args.c);
    const s = a.shape[3]!;
    const [B, T, n] = c.shape as [number, number, number];
    // Data in host memory: one read of each and the Thomas sweeps (core's), O(B·T·n·s²) with no
    // dispatches, instead of ⌈log₂T⌉ levels of a dozen ops. Blocks (ELK with full Jacobians) take
    // the same path on every engine: tfjs has no batched factorisation to build block cyclic
    // reduction from, so engines with device data read A and c back for it.
    if (this.moves.hostData || s > 1) {
      const out = new Float32Array(B * T * n);
      hostDampedScan(a.dataSync(), c.dataSync(), args.lambda, out, B, T, n, s);
      return this.own(this.tf.tensor3d(out, [B, T, n], 'float32'));
    }
    return this.own(this.tf.tidy(() => dampedScanPcr(this.tf, this.tf.reshape(a, [B, T, n]), c, args.lambda)));
  }

  maskTime(x: Tensor, lengths: ArrayLike<number>): Tensor {
    const tf = this.tf;
    const src = this.unwrap(x);
    const [B, T] = src.shape as [number, number];
    // Nothing to mask in an empty tensor; tfjs-wasm's where/broadcast on one corrupted its heap.
    if (src.size === 0) return this.own(this.tf.zeros(src.shape));
    const keep = new Float32Array(B * T);
    for (let b = 0; b < B; b++) keep.fill(1, b * T, b * T + Math.max(0, Math.min(T, lengths[b]!)));
    return this.own(
      tf.tidy(() => {
        const m = tf.reshape(tf.tensor1d(keep), [B, T, ...src.shape.slice(2).map(() => 1)]);
        // where, not multiply: padding holding NaN/Inf must become 0 too.
        return tf.where(tf.cast(tf.broadcastTo(m, src.shape), 'bool'), src, tf.zerosLike(src));
      }),
    );
  }

  gatherRows(x: Tensor, rows: readonly number[]): Tensor {
    const src = this.unwrap(x);
    // tfjs-wasm's gather on an empty tensor gave the wrong shape.
    if (src.size === 0) return this.own(this.tf.zeros([rows.length, ...src.shape.slice(1)]));
    return this.own(this.tf.tidy(() => this.tf.gather(src, this.tf.tensor1d([...rows], 'int32'), 0)));
  }

  scatterRows(into: Tensor, rows: readonly number[], src: Tensor): Tensor {
    const tf = this.tf;
    const dst = this.unwrap(into);
    const from = this.unwrap(src);
    const B = dst.shape[0]!;
    const row = dst.size / B;
    // Row b of the result: row k of src when rows[k] = b, else row b of into.
    const pick = new Int32Array(B).map((_, b) => b);
    rows.forEach((r, k) => {
      pick[r] = B + k;
    });
    return this.own(
      tf.tidy(() => {
        const both = tf.concat([tf.reshape(dst, [B, row]), tf.reshape(from, [rows.length, row])], 0);
        return tf.reshape(tf.gather(both, tf.tensor1d(pick, 'int32'), 0), dst.shape);
      }),
    );
  }

  sumBatchTime(x: Tensor): Tensor {
    const tf = this.tf;
    const src = this.unwrap(x);
    const [B, T] = src.shape as [number, number];
    return this.own(
      tf.tidy(() => {
        const E = B * T;
        let x = tf.reshape(src, [E, shapeSize(src.shape.slice(2))]);
        const F = x.shape[1]!;
        // wasm's sum over no rows left what its output memory held (3.6e-41).
        if (E === 0) return tf.zeros([F]);
        // tfjs cpu reduces only the innermost axis and transposes entry by entry first: a row of
        // ones times x sums the rows at matMul speed instead.
        const sumRows = (m: tfc.Tensor2D): tfc.Tensor =>
          this.moves.viewSlices ? tf.reshape(tf.matMul(tf.ones([1, m.shape[0]]), m), [m.shape[1]]) : tf.sum(m, 0);
        if (E <= PAIRWISE_FROM) return sumRows(x as tfc.Tensor2D);
        // Two levels — chunks of about √E rows, then the chunks' sums — so float32 rounding grows
        // with √E rather than E (wasm's one pass had lost 1e-5 relative at E = 1e5; a bias
        // gradient of a long batch, summed over B·T, showed it).
        const c = Math.ceil(Math.sqrt(E));
        const k = Math.ceil(E / c);
        if (k * c > E) x = tf.concat([x, tf.zeros([k * c - E, F])], 0);
        const chunks = this.moves.viewSlices
          ? tf.reshape(tf.matMul(tf.ones([k, 1, c]), tf.reshape(x, [k, c, F])), [k, F])
          : tf.sum(tf.reshape(x, [k, c, F]), 1);
        return sumRows(chunks as tfc.Tensor2D);
      }),
    );
  }

  outerSum(left: Tensor, right: Tensor, blocks: number): Tensor {
    const tf = this.tf;
    const l = this.unwrap(left);
    const r = this.unwrap(right);
    const [B, T, L] = l.shape as [number, number, number];
    const R = r.shape[2]!;
    const E = B * T;
    if (this.moves.hostLoops) return this.own(hostOuterSum(tf, l, r, E, L, R, blocks));
    return this.own(
      tf.tidy(() => {
        if (blocks === 1)
          return tf.reshape(tf.matMul(tf.reshape(l, [E, L]), tf.reshape(r, [E, R]), true, false), [L * R]);
        if (this.moves.viewSlices && blocks <= 8) {
          // The whole lᵀr, then its diagonal blocks: `blocks`× the products, but no per-entry
          // transposes of l and r (the slow part on tfjs cpu).
          const full = tf.matMul(tf.reshape(l, [E, L]), tf.reshape(r, [E, R]), true, false);
          return tf.gather(tf.reshape(full, [L * R]), tf.tensor1d(diagonalBlocks(L, R, blocks), 'int32'));
        }
        const lb = tf.transpose(tf.reshape(l, [E, blocks, L / blocks]), [1, 0, 2]);
        const rb = tf.transpose(tf.reshape(r, [E, blocks, R / blocks]), [1, 0, 2]);
        return tf.reshape(tf.matMul(lb, rb, true, false), [(L * R) / blocks]);
      }),
    );
  }

  blockMatmul(a: Tensor, b: Tensor, s: number): Tensor {
    const tf = this.tf;
    const x = this.unwrap(a);
    const y = this.unwrap(b);
    return this.own(
      tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(x, [-1, s, s]), tf.reshape(y, [-1, s, s])), x.shape)),
    );
  }

  blockMatvec(a: Tensor, v: Tensor, s: number): Tensor {
    const tf = this.tf;
    const x = this.unwrap(a);
    const vec = this.unwrap(v);
    return this.own(
      tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(x, [-1, s, s]), tf.reshape(vec, [-1, s, 1])), vec.shape)),
    );
  }

  scaleTime(x: Tensor, h: ArrayLike<number>, alpha: number): Tensor {
    const tf = this.tf;
    const src = this.unwrap(x);
    const [B, T, ...rest] = src.shape as number[];
    if (h.length !== T) throw new ShapeError('scaleTime', `${T} factors`, `${h.length}`);
    const f = Float32Array.from(h, (v) => alpha * v);
    return this.own(
      tf.tidy(() =>
        tf.reshape(tf.mul(tf.reshape(src, [B!, T!, -1]), tf.tensor3d(f, [1, T!, 1])), [B!, T!, ...rest]),
      ),
    );
  }

  capTransitions(a: Tensor, s: number, caps: ArrayLike<number>): Tensor {
    const tf = this.tf;
    const src = this.unwrap(a);
    const [B, T] = src.shape as [number, number];
    if (caps.length !== B) throw new ShapeError('capTransitions', `${B} caps`, `${caps.length}`);
    if (this.moves.hostData) {
      const data = src.dataSync();
      const out = Float32Array.from(data);
      hostCapTransitions(data, out, B, T, s, caps);
      return this.own(tf.tensor(out, src.shape, 'float32'));
    }
    return this.own(tf.tidy(() => capTransitionsOps(tf, src, s, caps)));
  }

  addIdentity(a: Tensor, s: number, alpha: number): Tensor {
    const tf = this.tf;
    const src = this.unwrap(a);
    return this.own(
      tf.tidy(() => tf.reshape(tf.add(tf.reshape(src, [-1, s, s]), tf.mul(tf.eye(s), alpha)), src.shape)),
    );
  }

  async maxAbs(x: Tensor): Promise<number> {
    const tf = this.tf;
    const src = this.unwrap(x);
    if (src.size === 0) return 0;
    // Where the data lives on the host, one loop over it (tfjs-cpu's abs, max, isNaN and any had
    // taken ~40 ms for 1.6e6 entries, a third of a GRU's sequential pass on the host kernels).
    if (this.moves.hostData) return hostMaxAbs(src.dataSync() as Float32Array);
    const both = tf.tidy(() => tf.stack([tf.max(tf.abs(src)), tf.cast(tf.any(tf.isNaN(src)), 'float32')]));
    const [m, nan] = await both.data();
    both.dispose();
    this.checkAlive();
    return nan ? Number.NaN : m!;
  }

  /**
   * Releases kept input-only values and the host kernels' backend `createTfjsBackend` made (one
   * passed as `hostKernels`, and the tfjs engine itself, belong to the caller). Afterwards every
   * method but dispose, liveTensors and destroy (a no-op) throws a TensorStateError. Tensors made
   * before stay readable through tfjs itself, not through this.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.hoisted.clear();
    if (this.ownsHostKernels) this.kernels?.destroy?.();
  }
}

/** Flat indices into an [L, R] matrix of its `blocks` diagonal blocks, block after block. */
function diagonalBlocks(L: number, R: number, blocks: number): Int32Array {
  const lb = L / blocks;
  const rb = R / blocks;
  const idx = new Int32Array(lb * rb * blocks);
  let o = 0;
  for (let b = 0; b < blocks; b++)
    for (let i = 0; i < lb; i++) for (let j = 0; j < rb; j++) idx[o++] = (b * lb + i) * R + b * rb + j;
  return idx;
}

/** The cost model's figures of a host backend whose kernels a tfjs backend runs its steps on. */
function costsOf(c: BackendCapabilities): Partial<BackendCapabilities> {
  const { parallelism, iterationOverhead, sequentialStep, sequentialRowGain } = c;
  return {
    ...(parallelism !== undefined ? { parallelism } : {}),
    ...(iterationOverhead !== undefined ? { iterationOverhead } : {}),
    ...(sequentialStep !== undefined ? { sequentialStep } : {}),
    ...(sequentialRowGain !== undefined ? { sequentialRowGain } : {}),
  };
}
