import {
  checkIsTensor,
  hostFindNonFinite,
  type Backend,
  type BackendCapabilities,
  type DType,
  allocating,
  DTypeError,
  checkOpArgs,
  checkOptionNames,
  type DampedScanArgs,
  HostStep,
  hostCapTransitions,
  hostDampedScan,
  hostMaxAbs,
  hostNewtonUpdate,
  hostSequential,
  isTensor,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  newtonUpdateFromRows,
  numberOption,
  type ScanArgs,
  OutOfMemoryError,
  REFUSED_MEMORY,
  ShapeError,
  type StepInputs,
  type StepOutputs,
  type StepProgram,
  type Tensor,
  TensorStateError,
  type TypedArray,
  UnsupportedOptionError,
} from '@deerjs/core';
import { scanBlocks } from './scan.js';
import { ARRAY, CpuTensor, copyOf } from './tensor.js';

export interface CpuBackendOptions {
  /** Default dtype of new tensors (float64 unless set). */
  readonly dtype?: DType;
  /** Largest buffer in bytes (default 2 GiB); set lower to exercise windowing. */
  readonly maxBufferBytes?: number;
}

/** The options the reference backend takes. */
export const CPU_OPTION_NAMES: readonly string[] = ['dtype', 'maxBufferBytes'];

const shapeSize = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Entries per (row, step) of a [B, T, ...] shape: from the shape, so that T = 0 gives no 0/0. */
export const perStep = (shape: readonly number[]) => shapeSize(shape.slice(2));

/**
 * The Backend methods that take tensors (their overrides in subclasses included). Every call
 * checks each tensor among its arguments — passed directly, in an array (concatTime's parts) or
 * inside the argument objects (StepInputs and its params, ScanArgs) — before the method runs, so a
 * disposed or foreign tensor is a TensorStateError before anything is made; and tensors made by a
 * call that then throws are disposed, so no error leaves an output behind.
 */
export const TENSOR_METHODS: readonly string[] = [
  'readSync',
  'runStep',
  'runSequential',
  'scan',
  'dampedScan',
  'capTransitions',
  'affineOffset',
  'shiftTime',
  'broadcastTime',
  'sliceTime',
  'concatTime',
  'timeStep',
  'reshape',
  'newtonUpdateSync',
  'deerStep',
  'add',
  'sub',
  'maskTime',
  'gatherRows',
  'scatterRows',
  'sumBatchTime',
  'outerSum',
  'blockMatmul',
  'blockMatvec',
  'scaleTime',
  'addIdentity',
];
/** The asynchronous ones: their checks reject the returned promise (they make no tensor themselves). */
export const ASYNC_TENSOR_METHODS: readonly string[] = ['read', 'newtonUpdate', 'findNonFinite', 'maxAbs'];

/**
 * The reference backend: plain TypeScript loops over typed arrays, one (b, t) element at a time.
 * Simple on purpose: in float64 it is the oracle every other backend is tested against.
 */
export class CpuBackend implements Backend {
  readonly name = 'cpu';
  readonly capabilities: BackendCapabilities;
  private live = 0;
  private destroyed = false;
  private readonly defaultDType: DType;
  /** Tensors made during the running tensor method (TENSOR_METHODS), disposed if it throws. */
  private made: CpuTensor[] | undefined;

  /**
   * `parallelism`: scalar operations at once (1 here: one thread, no SIMD; subclasses pass theirs),
   * and what else a subclass states about its costs.
   */
  constructor(options: CpuBackendOptions = {}, parallelism = 1, costs: Partial<BackendCapabilities> = {}, names = CPU_OPTION_NAMES) {
    // Checked here, not at first use: a misspelt or misplaced option used to leave the default in
    // silence, and dtype 'float16' made a backend whose first zeros() was a TypeError.
    checkOptionNames(options, names, 'the cpu backend');
    if (options.dtype !== undefined && options.dtype !== 'float64' && options.dtype !== 'float32')
      throw new UnsupportedOptionError('dtype', options.dtype, "'float64' or 'float32'");
    numberOption('maxBufferBytes', options.maxBufferBytes, 0, 'integer');
    this.defaultDType = options.dtype ?? 'float64';
    this.capabilities = {
      dtypes: ['float64', 'float32'],
      defaultDType: this.defaultDType,
      maxBufferBytes: options.maxBufferBytes ?? 2 ** 31,
      syncRead: true,
      device: 'cpu (JavaScript)',
      parallelism,
      ...costs,
    };
    // On the instance, so that a subclass's overrides are wrapped too.
    for (const name of [...TENSOR_METHODS, ...ASYNC_TENSOR_METHODS]) {
      const method = (this as unknown as Record<string, unknown>)[name];
      if (typeof method !== 'function') continue;
      const guarded = this.guard(name, method as (...args: unknown[]) => unknown, ASYNC_TENSOR_METHODS.includes(name));
      Object.defineProperty(this, name, { value: guarded, writable: true, configurable: true });
    }
  }

  /**
   * `method` with its tensor arguments checked first and, when it throws, the tensors it made
   * disposed (a nested call disposes its own; the outermost, everything made under it).
   */
  private guard(name: string, method: (...args: unknown[]) => unknown, async: boolean): (...args: unknown[]) => unknown {
    return (...args) => {
      if (async) {
        try {
          this.checkTensors(args, 3);
          checkOpArgs(name, args);
        } catch (err) {
          return Promise.reject(err);
        }
        return method.apply(this, args);
      }
      this.checkTensors(args, 3);
      checkOpArgs(name, args);
      const outer = this.made === undefined;
      const made = (this.made ??= []);
      const start = made.length;
      try {
        return method.apply(this, args);
      } catch (err) {
        for (const t of made.splice(start)) if (!t.disposed) this.dispose(t);
        // Memory the engine refused inside an op (a WebAssembly instance or memory.grow, a scratch
        // array) is as much an out-of-memory as a refused tensor.
        if (err instanceof RangeError && REFUSED_MEMORY.test(err.message))
          throw new OutOfMemoryError('cpu', 0, err.message);
        throw err;
      } finally {
        if (outer) this.made = undefined;
      }
    };
  }

  /** Checks every tensor in `v`: `v` itself, or inside arrays and plain objects down to `depth` levels. */
  private checkTensors(v: unknown, depth: number): void {
    if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return;
    if (isTensor(v)) {
      this.get(v);
      return;
    }
    if (depth === 0) return;
    if (Array.isArray(v)) {
      for (const x of v) this.checkTensors(x, depth - 1);
      return;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) for (const x of Object.values(v)) this.checkTensors(x, depth - 1);
  }

  protected make(shape: readonly number[], dtype: DType, data?: TypedArray): CpuTensor {
    this.checkAlive();
    const size = shapeSize(shape);
    const Arr = ARRAY[dtype];
    const buf = data ?? allocating('cpu', size * Arr.BYTES_PER_ELEMENT, () => new Arr(size));
    if (buf.length !== size)
      throw new ShapeError('tensor', `${size} values for [${shape.join(', ')}]`, `${buf.length}`);
    const t = new CpuTensor([...shape], dtype, buf, this);
    this.live++;
    this.made?.push(t);
    return t;
  }

  /** A tensor this backend made: not another backend's, nor another cpu backend's (whose count it is). */
  protected own(t: Tensor): asserts t is CpuTensor {
    checkIsTensor('cpu', t);
    if (!(t instanceof CpuTensor))
      throw new TensorStateError(`cpu: not a cpu tensor (from '${t.backendName}')`);
    if (t.owner !== this)
      throw new TensorStateError('cpu: tensor of another cpu backend instance: read it and make it again here');
  }

  protected get(t: Tensor): CpuTensor {
    this.checkAlive();
    this.own(t);
    if (t.disposed) throw new TensorStateError('cpu: tensor used after dispose');
    return t;
  }

  protected data(t: Tensor): TypedArray {
    return this.get(t).data;
  }

  tensor(data: ArrayLike<number>, shape: readonly number[], dtype: DType = this.defaultDType): Tensor {
    // Core's contract (shape, numbers, count) first, as guardOpArgs does on the other backends.
    checkOpArgs('tensor', [data, shape, dtype]);
    if (!this.capabilities.dtypes.includes(dtype))
      throw new DTypeError('tensor', 'float64 or float32', String(dtype));
    const Arr = ARRAY[dtype];
    return this.make(shape, dtype, allocating('cpu', data.length * Arr.BYTES_PER_ELEMENT, () => Arr.from(data)));
  }

  zeros(shape: readonly number[], dtype: DType = this.defaultDType): Tensor {
    checkOpArgs('zeros', [shape, dtype]);
    if (!this.capabilities.dtypes.includes(dtype))
      throw new DTypeError('zeros', 'float64 or float32', String(dtype));
    return this.make(shape, dtype);
  }

  async read(t: Tensor): Promise<TypedArray> {
    return copyOf(this.data(t));
  }

  readSync(t: Tensor): TypedArray {
    return copyOf(this.data(t));
  }

  dispose(t: Tensor): void {
    // Allowed after destroy(), so cleanup code in `finally` blocks never throws.
    this.own(t);
    const c = t;
    if (c.disposed) return;
    c.disposed = true;
    this.live--;
  }

  liveTensors(): number {
    return this.live;
  }

  private compile(
    program: StepProgram,
    params: Readonly<Record<string, Tensor>>,
    dtype: DType,
  ): HostStep {
    return new HostStep(program, this.paramData(params), dtype);
  }

  private paramData(params: Readonly<Record<string, Tensor>>): Record<string, TypedArray> {
    const bufs: Record<string, TypedArray> = {};
    for (const [k, v] of Object.entries(params)) bufs[k] = this.data(v);
    return bufs;
  }

  runStep(program: StepProgram, inputs: StepInputs): StepOutputs {
    const state = this.get(inputs.state);
    const [B, T] = state.shape as [number, number];
    const dtype = state.dtype;
    const step = this.compile(program, inputs.params, dtype);
    const g = program.graph;
    const outs = program.outputs.map((id) => this.make([B, T, g.nodes[id]!.size], dtype));
    const jac = program.jacobian;
    const s = jac?.blockSize ?? 0;
    const n = g.stateSize;
    const J = jac ? this.make([B, T, n / s, s, s], dtype) : undefined;
    const src = {
      state: state.data,
      stateOffset: 0,
      input: inputs.input ? this.data(inputs.input) : undefined,
      inputOffset: 0,
      cotangent: inputs.cotangent ? this.data(inputs.cotangent) : undefined,
      cotangentOffset: 0,
    };
    const m = g.inputSize;
    const ct = inputs.cotangent ? inputs.cotangent.shape[2]! : 0;
    for (let e = 0; e < B * T; e++) {
      src.stateOffset = e * n;
      src.inputOffset = e * m;
      src.cotangentOffset = e * ct;
      step.run(src);
      program.outputs.forEach((id, k) => {
        const v = step.value(id);
        outs[k]!.data.set(v, e * v.length);
      });
      if (J) step.writeJacobian(J.data, e * n * s);
    }
    return J ? { outputs: outs, jacobian: J } : { outputs: outs };
  }

  runSequential(
    program: StepProgram,
    inputs: { input?: Tensor; y0: Tensor; params: Readonly<Record<string, Tensor>> },
  ): Tensor {
    const y0 = this.get(inputs.y0);
    const x = inputs.input ? this.get(inputs.input) : undefined;
    const [B, n] = y0.shape as [number, number];
    const T = x ? x.shape[1]! : 1;
    const y = hostSequential(program, this.paramData(inputs.params), x?.data, y0.data, B, T, y0.dtype);
    return this.make([B, T, n], y0.dtype, y);
  }

  scan(args: ScanArgs): Tensor {
    const c = this.get(args.c);
    const [B, T, n] = c.shape as [number, number, number];
    const out = this.make([B, T, n], c.dtype);
    scanBlocks(
      this.data(args.A),
      c.data,
      this.data(args.y0),
      out.data,
      B,
      T,
      n,
      args.blockSize,
      args.reverse,
    );
    return out;
  }

  affineOffset(F: Tensor, A: Tensor, y: Tensor, s: number): Tensor {
    const f = this.get(F);
    const [B, T, n] = f.shape as [number, number, number];
    const a = this.data(A);
    const yy = this.data(y);
    const out = this.make([B, T, n], f.dtype);
    const o = out.data;
    const fd = f.data;
    for (let e = 0; e < B * T; e++) {
      for (let k = 0; k < n / s; k++) {
        for (let i = 0; i < s; i++) {
          let acc = 0;
          const row = ((e * n) / s + k) * s * s + i * s;
          for (let j = 0; j < s; j++) acc += a[row + j]! * yy[e * n + k * s + j]!;
          o[e * n + k * s + i] = fd[e * n + k * s + i]! - acc;
        }
      }
    }
    return out;
  }

  shiftTime(x: Tensor, fill: Tensor | null, dir: 1 | -1): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const inner = perStep(src.shape);
    const out = this.make(src.shape, src.dtype);
    if (out.size === 0) return out;
    const d = src.data;
    const o = out.data;
    const f = fill ? this.data(fill) : null;
    for (let b = 0; b < B; b++) {
      const base = b * T * inner;
      if (dir === 1) {
        o.set(d.subarray(base, base + (T - 1) * inner), base + inner);
        if (f) o.set(f.subarray(b * inner, (b + 1) * inner), base);
      } else {
        o.set(d.subarray(base + inner, base + T * inner), base);
        if (f) o.set(f.subarray(b * inner, (b + 1) * inner), base + (T - 1) * inner);
      }
    }
    return out;
  }

  broadcastTime(x: Tensor, T: number): Tensor {
    const src = this.get(x);
    const B = src.shape[0]!;
    const inner = src.size / B;
    const out = this.make([B, T, ...src.shape.slice(1)], src.dtype);
    for (let b = 0; b < B; b++) {
      const row = src.data.subarray(b * inner, (b + 1) * inner);
      for (let t = 0; t < T; t++) out.data.set(row, (b * T + t) * inner);
    }
    return out;
  }

  sliceTime(x: Tensor, start: number, length: number): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const inner = perStep(src.shape);
    const out = this.make([B, length, ...src.shape.slice(2)], src.dtype);
    for (let b = 0; b < B; b++) {
      const from = (b * T + start) * inner;
      out.data.set(src.data.subarray(from, from + length * inner), b * length * inner);
    }
    return out;
  }

  concatTime(parts: readonly Tensor[]): Tensor {
    const ps = parts.map((p) => this.get(p));
    const first = ps[0]!;
    const B = first.shape[0]!;
    const inner = perStep(first.shape);
    const T = ps.reduce((s, p) => s + p.shape[1]!, 0);
    const out = this.make([B, T, ...first.shape.slice(2)], first.dtype);
    for (let b = 0; b < B; b++) {
      let t0 = 0;
      for (const p of ps) {
        const len = p.shape[1]!;
        out.data.set(p.data.subarray(b * len * inner, (b + 1) * len * inner), (b * T + t0) * inner);
        t0 += len;
      }
    }
    return out;
  }

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const src = this.get(x);
    const out = this.make(shape, src.dtype);
    out.data.set(src.data);
    return out;
  }

  timeStep(x: Tensor, t: number): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const inner = perStep(src.shape);
    const out = this.make([B, ...src.shape.slice(2)], src.dtype);
    for (let b = 0; b < B; b++) {
      const from = (b * T + t) * inner;
      out.data.set(src.data.subarray(from, from + inner), b * inner);
    }
    return out;
  }

  async newtonUpdate(yRaw: Tensor, yOld: Tensor, opts: NewtonUpdateOptions): Promise<NewtonUpdate> {
    return this.newtonUpdateSync(yRaw, yOld, opts);
  }

  newtonUpdateSync(yRaw: Tensor, yOld: Tensor, opts: NewtonUpdateOptions): NewtonUpdate {
    const raw = this.get(yRaw);
    const old = this.data(yOld);
    if (old.length !== raw.size)
      throw new ShapeError('newtonUpdate', `[${raw.shape.join(', ')}]`, `${old.length} values`);
    const out = this.make(raw.shape, raw.dtype);
    const { maxAbsDiff, rows } = hostNewtonUpdate(
      raw.data,
      old,
      out.data,
      raw.shape[0] ?? 1,
      raw.shape[1] ?? 1,
      opts,
    );
    return newtonUpdateFromRows(out, maxAbsDiff, rows);
  }

  async findNonFinite(t: Tensor): Promise<{ index: number; value: number } | null> {
    return hostFindNonFinite(this.data(t));
  }

  add(a: Tensor, b: Tensor): Tensor {
    const x = this.get(a);
    const y = this.data(b);
    if (x.size !== y.length) throw new ShapeError('add', `[${x.shape.join(', ')}]`, `${y.length} values`);
    const out = this.make(x.shape, x.dtype);
    for (let i = 0; i < x.size; i++) out.data[i] = x.data[i]! + y[i]!;
    return out;
  }

  sub(a: Tensor, b: Tensor): Tensor {
    const x = this.get(a);
    const y = this.data(b);
    if (x.size !== y.length) throw new ShapeError('sub', `[${x.shape.join(', ')}]`, `${y.length} values`);
    const out = this.make(x.shape, x.dtype);
    for (let i = 0; i < x.size; i++) out.data[i] = x.data[i]! - y[i]!;
    return out;
  }

  dampedScan(args: DampedScanArgs): Tensor {
    const A = this.get(args.A);
    const c = this.get(args.c);
    const [B, T, n] = c.shape as [number, number, number];
    const s = A.shape[3]!;
    const out = this.make(c.shape, c.dtype);
    hostDampedScan(A.data, c.data, args.lambda, out.data, B, T, n, s);
    return out;
  }

  maskTime(x: Tensor, lengths: ArrayLike<number>): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const inner = perStep(src.shape);
    const out = this.make(src.shape, src.dtype);
    for (let b = 0; b < B; b++) {
      const keep = Math.max(0, Math.min(T, lengths[b]!)) * inner;
      out.data.set(src.data.subarray(b * T * inner, b * T * inner + keep), b * T * inner);
    }
    return out;
  }

  gatherRows(x: Tensor, rows: readonly number[]): Tensor {
    const src = this.get(x);
    const B = src.shape[0]!;
    const row = src.size / B;
    const out = this.make([rows.length, ...src.shape.slice(1)], src.dtype);
    rows.forEach((r, k) => {
      out.data.set(src.data.subarray(r * row, (r + 1) * row), k * row);
    });
    return out;
  }

  scatterRows(into: Tensor, rows: readonly number[], src: Tensor): Tensor {
    const dst = this.get(into);
    const from = this.get(src);
    const B = dst.shape[0]!;
    const row = dst.size / B;
    const out = this.make(dst.shape, dst.dtype, copyOf(dst.data));
    rows.forEach((r, k) => {
      out.data.set(from.data.subarray(k * row, (k + 1) * row), r * row);
    });
    return out;
  }

  sumBatchTime(x: Tensor): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const inner = perStep(src.shape);
    const acc = new Float64Array(inner);
    for (let e = 0; e < B * T; e++) for (let i = 0; i < inner; i++) acc[i]! += src.data[e * inner + i]!;
    return this.make([inner], src.dtype, ARRAY[src.dtype].from(acc));
  }

  outerSum(left: Tensor, right: Tensor, blocks: number): Tensor {
    const l = this.get(left);
    const r = this.get(right);
    const [B, T, L] = l.shape as [number, number, number];
    const R = r.shape[2]!;
    const rows = L / blocks;
    const cols = R / blocks;
    const acc = new Float64Array(blocks * rows * cols);
    for (let e = 0; e < B * T; e++) {
      for (let k = 0; k < blocks; k++) {
        for (let i = 0; i < rows; i++) {
          const li = l.data[e * L + k * rows + i]!;
          if (li === 0) continue;
          const base = (k * rows + i) * cols;
          for (let j = 0; j < cols; j++) acc[base + j]! += li * r.data[e * R + k * cols + j]!;
        }
      }
    }
    return this.make([blocks * rows * cols], l.dtype, ARRAY[l.dtype].from(acc));
  }

  blockMatmul(a: Tensor, b: Tensor, s: number): Tensor {
    const x = this.get(a);
    const y = this.data(b);
    const out = this.make(x.shape, x.dtype);
    const o = out.data;
    const d = x.data;
    for (let base = 0; base < d.length; base += s * s) {
      for (let i = 0; i < s; i++) {
        for (let j = 0; j < s; j++) {
          let acc = 0;
          for (let k = 0; k < s; k++) acc += d[base + i * s + k]! * y[base + k * s + j]!;
          o[base + i * s + j] = acc;
        }
      }
    }
    return out;
  }

  blockMatvec(a: Tensor, v: Tensor, s: number): Tensor {
    const x = this.data(a);
    const vec = this.get(v);
    const out = this.make(vec.shape, vec.dtype);
    const o = out.data;
    const vd = vec.data;
    for (let blk = 0; blk < vd.length / s; blk++) {
      const base = blk * s * s;
      for (let i = 0; i < s; i++) {
        let acc = 0;
        for (let k = 0; k < s; k++) acc += x[base + i * s + k]! * vd[blk * s + k]!;
        o[blk * s + i] = acc;
      }
    }
    return out;
  }

  scaleTime(x: Tensor, h: ArrayLike<number>, alpha: number): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    if (h.length !== T) throw new ShapeError('scaleTime', `${T} factors`, `${h.length}`);
    const inner = perStep(src.shape);
    const out = this.make(src.shape, src.dtype);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const f = alpha * h[t]!;
        const base = (b * T + t) * inner;
        for (let i = 0; i < inner; i++) out.data[base + i] = src.data[base + i]! * f;
      }
    }
    return out;
  }

  capTransitions(a: Tensor, s: number, caps: ArrayLike<number>): Tensor {
    const src = this.get(a);
    const [B, T] = src.shape as [number, number];
    if (caps.length !== B) throw new ShapeError('capTransitions', `${B} caps`, `${caps.length}`);
    const out = this.make(src.shape, src.dtype, copyOf(src.data));
    hostCapTransitions(src.data, out.data, B, T, s, caps);
    return out;
  }

  addIdentity(a: Tensor, s: number, alpha: number): Tensor {
    const src = this.get(a);
    const out = this.make(src.shape, src.dtype, copyOf(src.data));
    for (let base = 0; base < src.size; base += s * s)
      for (let i = 0; i < s; i++) out.data[base + i * s + i]! += alpha;
    return out;
  }

  async maxAbs(x: Tensor): Promise<number> {
    return hostMaxAbs(this.data(x));
  }

  destroy(): void {
    this.destroyed = true;
  }

  private checkAlive(): void {
    if (this.destroyed) throw new TensorStateError('cpu: backend used after destroy()');
  }
}
