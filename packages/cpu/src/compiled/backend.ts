import {
  allocating,
  checkOptionNames,
  type DeerStepInputs,
  flag,
  type DType,
  type Graph,
  type MatExpr,
  matExprNodes,
  matrixLayout,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  type NodeId,
  newtonUpdateFromRows,
  numberOption,
  paramSpec,
  type ScanArgs,
  type StepInputs,
  type StepOutputs,
  type StepProgram,
  splitInputOnly,
  type Tensor,
  type TypedArray,
  UnsupportedOptionError,
} from '@deerjs/core';
import { CPU_OPTION_NAMES, CpuBackend, type CpuBackendOptions, perStep } from '../backend.js';
import { ARRAY, CpuTensor } from '../tensor.js';
import { generateKernel, type Kernel, Unsupported } from './codegen.js';
import { affineOffsetFast, scanFast } from './scan.js';
import { ThreadedScan } from './scan-threads.js';
import { SharedBuffers } from './shared-buffers.js';
import { runRows } from './seq-rows.js';
import {
  availableThreads,
  isShared,
  type Job,
  jobFromSource,
  runTiles,
  type SeqRowsArgs,
  ThreadPool,
} from './threads.js';
import { wasmSeqJob } from './wasm-seq-plan.js';
import { type WasmDeerStep, wasmDeerStep } from './wasm-deer-step.js';
import { type WasmStep, wasmStep } from './wasm-step-plan.js';
import { threadedNewtonUpdate, UPDATE_PARALLEL_MIN } from './update.js';
import { COPY_PARALLEL_MIN, type CopySegment, copySegments } from './copy.js';

/** Doubles of scratch one tile may use (all its nodes together): about 256 KiB. */
const TILE_BUDGET = 32768;
/** Doubles of hoisted (input-only) values held per time chunk of runSequential. */
const CHUNK_BUDGET = 1 << 18;

const tileFor = (k: Kernel, cap = 256) => {
  const per = k.scratch.reduce((a, s) => a + s.size, 0) + 1;
  return Math.max(1, Math.min(cap, Math.floor(TILE_BUDGET / per)));
};

interface StepPlan {
  readonly kernel: Kernel;
  readonly tile: number;
  /** Input-only nodes (absent when none): their frontier values are the last externals of `kernel`. */
  readonly hoist?: Kernel;
  readonly frontier: readonly NodeId[];
  /** Float32 with SIMD: the whole call on WebAssembly SIMD kernels (wasm-step-plan.ts), where it can. */
  readonly wasm?: WasmStep;
}

/** Hoisted values of one input tensor, kept while the same params are used (Newton iterations). */
interface InputCache {
  readonly program: StepProgram;
  readonly params: readonly (Tensor | undefined)[];
  /** The hoisted values (empty for the WebAssembly path, which keeps them in its memory: the entry is its token). */
  readonly values: TypedArray[];
}
/** Largest hoisted buffer kept across calls, in bytes. */
const INPUT_CACHE_BYTES = 256 * 2 ** 20;

interface SeqPlan {
  /** Input-only nodes, evaluated for a whole time chunk before stepping (absent when none). */
  readonly hoist?: Kernel;
  readonly hoistTile: number;
  /** Input-only nodes the state-dependent part reads. */
  readonly frontier: readonly NodeId[];
  readonly step: Kernel;
  /** The state leaf, when the step reads it (external 0 of `step`). */
  readonly stateLeaf?: NodeId;
  /** Work per (b, t) element, hoisted part included: multiply-adds of products, values of the rest. */
  readonly work: number;
  /**
   * Float32 with SIMD: the whole sequential loop on WebAssembly SIMD kernels (wasm/seq-site.ts), a
   * job taking (P, b0, b1, T, x, y0, y, budget); absent where the generator or runtime cannot.
   */
  readonly wasm?: Job;
}

/**
 * Plans by graph, then by what else makes a program: dtype, outputs and the Jacobian (structure and
 * expression object). Keyed on the graph rather than the program object because some callers
 * (stepVjp) build an equal program object on every call.
 */
type Cache<T> = WeakMap<Graph, Map<string, { expr: MatExpr | undefined; plan: T | null }[]>>;
const stepPlans: Cache<StepPlan> = new WeakMap();
const seqPlans: Cache<SeqPlan> = new WeakMap();
const deerPlans: Cache<WasmDeerStep> = new WeakMap();

/** The plan of a program for a dtype, made once; null when the generator does not support it. */
function cached<T>(
  cache: Cache<T>,
  p: StepProgram,
  dtype: DType,
  simd: boolean,
  make: (fast: boolean) => T,
): T | null {
  let byKey = cache.get(p.graph);
  if (!byKey) {
    byKey = new Map();
    cache.set(p.graph, byKey);
  }
  const key = `${dtype}|${simd}|${p.outputs.join(',')}|${p.jacobian?.blockSize ?? ''}`;
  let list = byKey.get(key);
  if (!list) {
    list = [];
    byKey.set(key, list);
  }
  const expr = p.jacobian?.expr;
  const hit = list.find((x) => x.expr === expr);
  if (hit) return hit.plan;
  let plan: T | null;
  try {
    plan = make(dtype === 'float32');
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
    plan = null;
  }
  list.push({ expr, plan });
  return plan;
}

const isLeaf = (g: Graph, id: NodeId) => {
  const op = g.nodes[id]!.op;
  return op === 'state' || op === 'input' || op === 'cotangent';
};

/**
 * A program split in two (core's `splitInputOnly`): the nodes that read only the input (and params,
 * consts) — hoisted: for runSequential evaluated a time chunk at a time before stepping, for
 * runStep once per input tensor and kept across Newton iterations — and the rest, which reads the
 * hoisted `frontier` as externals.
 */
function splitHoisted(g: Graph, roots: readonly NodeId[]) {
  const { live, inputOnly, rest, frontier } = splitInputOnly(g, roots);
  return { live, hoisted: inputOnly, rest, frontier };
}

/** The kernel of a program's input-only part, writing its frontier (none when nothing is hoisted). */
function hoistKernel(
  g: Graph,
  hoisted: readonly NodeId[],
  frontier: readonly NodeId[],
  fast: boolean,
  simd: boolean,
) {
  if (frontier.length === 0) return undefined;
  return generateKernel({
    graph: g,
    nodes: hoisted.filter((id) => !isLeaf(g, id)),
    externals: hoisted.filter((id) => isLeaf(g, id)),
    stores: [...frontier],
    fast,
    simd,
  });
}

export function makeStepPlan(p: StepProgram, fast: boolean, simd = true): StepPlan {
  const g = p.graph;
  const factors = p.jacobian ? [...matExprNodes(p.jacobian.expr)] : [];
  const roots = [...p.outputs, ...factors];
  const { hoisted, rest, frontier } = splitHoisted(g, roots);
  const hoist = hoistKernel(g, hoisted, frontier, fast, simd);
  const kernel = generateKernel({
    graph: g,
    nodes: rest.filter((id) => !isLeaf(g, id)),
    externals: [...rest.filter((id) => isLeaf(g, id)), ...frontier],
    stores: p.outputs,
    jacobian: p.jacobian,
    fast,
    simd,
  });
  const tile = Math.min(tileFor(kernel), hoist ? tileFor(hoist) : 256);
  const wasm = fast && simd ? wasmStep(g, hoisted, frontier, rest, p.outputs, p.jacobian) : undefined;
  return { kernel, tile, hoist, frontier, wasm };
}

/** The fused DEER step of a residual program (wasm-deer-step.ts): float32 with SIMD only. */
export function makeDeerPlan(p: StepProgram, fast: boolean): WasmDeerStep {
  const g = p.graph;
  if (!fast || !p.jacobian) throw new Unsupported('deerStep: float32 with a Jacobian');
  const { hoisted, rest, frontier } = splitHoisted(g, [...p.outputs, ...matExprNodes(p.jacobian.expr)]);
  const w = wasmDeerStep(g, hoisted, frontier, rest, p.outputs, p.jacobian);
  if (!w) throw new Unsupported('deerStep: no WebAssembly SIMD for this program');
  return w;
}

/** Work of a node per element: multiply-adds of a product, else values computed (none for leaves). */
function workOf(g: Graph, id: NodeId): number {
  const node = g.nodes[id]!;
  if (node.op === 'matvec') {
    const { blocks, rows, cols } = matrixLayout(paramSpec(g, node.param));
    return blocks * rows * cols;
  }
  return isLeaf(g, id) || node.op === 'param' || node.op === 'const' ? 0 : node.size;
}

export function makeSeqPlan(p: StepProgram, fast: boolean, simd = true): SeqPlan {
  const g = p.graph;
  const f = p.outputs[0]!;
  const { live, hoisted, rest: stepNodes, frontier } = splitHoisted(g, [f]);
  const stateLeaf = live.find((id) => g.nodes[id]!.op === 'state');
  if (live.some((id) => g.nodes[id]!.op === 'cotangent'))
    throw new Unsupported('cotangent in a sequential program');
  const hoist = hoistKernel(g, hoisted, frontier, fast, simd);
  const step = generateKernel({
    graph: g,
    nodes: stepNodes.filter((id) => id !== stateLeaf),
    externals: stateLeaf === undefined ? frontier : [stateLeaf, ...frontier],
    stores: [f],
    fast,
    simd,
  });
  const work = live.reduce((a, id) => a + workOf(g, id), 0);
  const wasm =
    fast && simd ? wasmSeqJob(g, hoisted, frontier, stepNodes, stateLeaf, f, jobFromSource) : undefined;
  return { hoist, hoistTile: hoist ? tileFor(hoist) : 1, frontier, step, stateLeaf, work, wasm };
}

/** Scratch arrays of a kernel for tiles of up to `tile` elements, kept with the kernel for reuse. */
const scratchPool = new WeakMap<Kernel, { tile: number; arrays: Float64Array[] }>();
const scratchFor = (k: Kernel, tile: number): Float64Array[] => {
  const hit = scratchPool.get(k);
  if (hit && hit.tile >= tile) return hit.arrays;
  const arrays = k.scratch.map((x) => new Float64Array(tile * x.size));
  if (k.accSize) arrays.push(new Float64Array(k.accSize));
  scratchPool.set(k, { tile, arrays });
  return arrays;
};

export interface FastCpuBackendOptions extends CpuBackendOptions {
  /**
   * Calls over fewer (b, t) elements than this (default 256) run on the reference interpreter: for
   * tiny problems, warming up generated code costs more than it saves.
   */
  readonly compileMin?: number;
  /**
   * Threads for runStep, runSequential (by batch rows), scan and newtonUpdate on large enough
   * problems (the calling one included; default: the cores available, 1 outside Node). Workers are
   * started on first use, never keep Node alive, and stop in destroy(). Each keeps the compiled
   * kernels (and WebAssembly memory) of at most 64 recently used ones, a program's dropped once its
   * cell is collected.
   */
  readonly threads?: number;
  /**
   * Matrix products on WebAssembly SIMD (default true; where the runtime lacks it, scalar
   * JavaScript): in float32, f32 lanes with float32 sums; in float64, f64 lanes, the same sums as
   * the scalar kernel.
   */
  readonly simd?: boolean;
}

/** The options createCpuBackend takes. */
export const FAST_CPU_OPTION_NAMES: readonly string[] = [...CPU_OPTION_NAMES, 'compileMin', 'threads', 'simd'];

/** Fewest elements a runStep is split over threads for. */
const PARALLEL_MIN = 4096;
/** Fewest state entries (B·T·n) a WebAssembly runStep is split over threads for, by groups of four elements. */
const WASM_STEP_PARALLEL_MIN = 1 << 16;
/** Fewest state entries (B·T·n) a fused DEER step is split over threads for, by row groups. */
const DEER_PARALLEL_MIN = 1 << 16;
/** Fewest batch rows for which the fused step (row groups of four lanes) beats the composed one. */
const FUSED_MIN_ROWS = 3;
/**
 * Least work (B·T times the plan's work per element) a runSequential is split over threads for,
 * by batch rows: below it, waking the workers and their cold kernels cost more than they save.
 */
export const SEQ_PARALLEL_MIN = 1 << 20;

/**
 * The fast CPU backend: step programs compiled to specialised JavaScript (`compiled/codegen.ts`),
 * evaluated over tiles of elements with batched matrix products; Jacobians written straight into
 * their block structure; input-only work hoisted out of the sequential loop and kept across
 * Newton iterations; runStep, runSequential (by batch rows, `compiled/seq-rows.ts`), scan
 * (`compiled/scan-threads.ts`) and the Newton update (`compiled/update.ts`) split over worker
 * threads (`compiled/threads.ts`). Programs the generator does not know, and calls under
 * `compileMin` elements, use the reference interpreter.
 */
export class FastCpuBackend extends CpuBackend {
  /** Calls with fewer (b, t) elements than this run on the reference interpreter. */
  private readonly compileMin: number;
  private readonly simd: boolean;
  /** Threads this backend uses (the calling one included). */
  readonly threads: number;
  private pool?: ThreadPool;
  private readonly threadedScan = new ThreadedScan(() => this.startPool());
  /** Tensors' arrays (with threads > 1 shared with the workers), reused after dispose. */
  private readonly buffers: SharedBuffers;

  constructor(options: FastCpuBackendOptions = {}) {
    checkOptionNames(options, FAST_CPU_OPTION_NAMES, 'createCpuBackend');
    // More threads than cores are capped to the cores; fewer than one, or a fraction, is an error.
    const threads = Math.min(numberOption('threads', options.threads, availableThreads(), 'integer'), availableThreads());
    const simd = flag('simd', options.simd, true);
    if (options.compileMin !== undefined && !(Number.isSafeInteger(options.compileMin) && options.compileMin >= 0))
      throw new UnsupportedOptionError('compileMin', options.compileMin, 'an integer ≥ 0');
    // Scalar JavaScript: one operation at a time per thread. The row gain was measured on a 2-core
    // VM (GRU nh = 1, 8, 32; one row of T = 1e5–1e6 against √T rows of √T steps): float32 on the
    // SIMD kernels 3.3–6.5× per row-step on one thread, 5.2–6.3× on two; float64 2.2–2.6×.
    // Rounded down.
    super(options, threads, { sequentialRowGain: { float32: simd ? (threads > 1 ? 5 : 3) : 2, float64: 2 } }, FAST_CPU_OPTION_NAMES);
    this.compileMin = options.compileMin ?? 256;
    this.simd = simd;
    this.threads = threads;
    this.buffers = new SharedBuffers(threads > 1);
  }

  /**
   * Arrays from the pool (reused after dispose); with threads, tensors live on SharedArrayBuffers so
   * that the workers see them.
   */
  protected override make(shape: readonly number[], dtype: DType, data?: TypedArray): CpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (!data || (this.threads > 1 && data.length === size && !isShared(data)))
      data = this.buffers.take(ARRAY[dtype], size, data);
    return super.make(shape, dtype, data);
  }

  /** A new tensor whose every element the caller writes (a reused buffer is not zeroed first). */
  private unfilled(shape: readonly number[], dtype: DType): CpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    return super.make(shape, dtype, this.buffers.take(ARRAY[dtype], size, undefined, false));
  }

  /** The pool, when this many elements (or units of work) are worth splitting and every array is shared. */
  private poolFor(E: number, arrays: readonly TypedArray[], min = PARALLEL_MIN): ThreadPool | undefined {
    if (this.threads < 2 || E < min || !arrays.every(isShared)) return undefined;
    return this.startPool();
  }

  private startPool(): ThreadPool {
    this.pool ??= new ThreadPool(this.threads);
    return this.pool;
  }

  override destroy(): void {
    this.pool?.destroy();
    this.pool = undefined;
    this.buffers.clear();
    this.threadedScan.clear();
    super.destroy();
  }

  private paramArrays(
    g: Graph,
    params: Readonly<Record<string, Tensor>>,
    consts: readonly Float64Array[],
  ): TypedArray[] {
    const P: TypedArray[] = g.params.map((spec) => {
      const t = params[spec.name];
      if (!t) return new Float64Array(0);
      const d = this.data(t);
      return d instanceof Float64Array ? d : Float64Array.from(d);
    });
    P.push(...consts);
    return P;
  }

  private readonly inputCache = new WeakMap<Tensor, InputCache>();

  override dispose(t: Tensor): void {
    for (const v of this.inputCache.get(t)?.values ?? []) this.buffers.give(v);
    this.inputCache.delete(t);
    const data = t instanceof CpuTensor && !t.disposed ? t.data : undefined;
    super.dispose(t);
    if (data) this.buffers.give(data);
  }

  override runStep(program: StepProgram, inputs: StepInputs): StepOutputs {
    const state = this.get(inputs.state);
    if (state.size < this.compileMin * program.graph.stateSize) return super.runStep(program, inputs);
    const plan = cached(stepPlans, program, state.dtype, this.simd, (fast) => makeStepPlan(program, fast, this.simd));
    if (!plan) return super.runStep(program, inputs);
    const { kernel, tile, hoist, frontier } = plan;
    const [B, T] = state.shape as [number, number];
    const dtype = state.dtype;
    const g = program.graph;
    const n = g.stateSize;
    const E = B * T;
    const P = this.paramArrays(g, inputs.params, kernel.consts);
    const outs = program.outputs.map((id) => this.unfilled([B, T, g.nodes[id]!.size], dtype));
    const jac = program.jacobian;
    const s = jac?.blockSize ?? 0;
    const J = jac ? (plan.wasm ? this.unfilled : this.make).call(this, [B, T, n / s, s, s], dtype) : undefined;
    const leafData = (id: NodeId) => {
      const op = g.nodes[id]!.op;
      if (op === 'state') return state.data;
      const t = op === 'input' ? inputs.input : inputs.cotangent;
      if (!t) throw new Error(`cpu: the program reads its ${op} but none was given`);
      return this.data(t);
    };
    const leaves = kernel.externals.length - frontier.length;
    const fSizes = frontier.map((id) => g.nodes[id]!.size);
    const X: TypedArray[] = kernel.externals.slice(0, leaves).map(leafData);
    const XS = kernel.externals.map((id) => g.nodes[id]!.size);
    const XB = XS.map(() => 0);
    const O = outs.map((o) => o.data);
    const OS = program.outputs.map((id) => g.nodes[id]!.size);
    const OB = OS.map(() => 0);
    const S = scratchFor(kernel, tile);
    const Jd = J?.data;
    if (plan.wasm) {
      this.wasmStep(plan.wasm, program, inputs, E, leafData, O, Jd);
      return J ? { outputs: outs, jacobian: J } : { outputs: outs };
    }

    // Hoisted values: all elements at once, kept for the next call with the same input and params;
    // or, when too large to keep, one tile at a time.
    let perTile: ((e0: number, Et: number) => void) | undefined;
    if (hoist) {
      const hP = this.paramArrays(g, inputs.params, hoist.consts);
      const hX = hoist.externals.map(leafData);
      const hXS = hoist.externals.map((id) => g.nodes[id]!.size);
      const hXB = hXS.map(() => 0);
      const hOB = fSizes.map(() => 0);
      const hS = scratchFor(hoist, tile);
      const total = fSizes.reduce((a, b) => a + b, 0) * E * (dtype === 'float32' ? 4 : 8);
      const input = inputs.input;
      const params = g.params.map((spec) => inputs.params[spec.name]);
      const hit = input ? this.inputCache.get(input) : undefined;
      if (hit && hit.program === program && hit.params.every((t, k) => t === params[k])) {
        X.push(...hit.values);
      } else if (
        input &&
        total <= INPUT_CACHE_BYTES &&
        hoist.externals.every((id) => g.nodes[id]!.op === 'input')
      ) {
        const Arr = dtype === 'float32' ? Float32Array : Float64Array;
        const pool = this.poolFor(E, hX);
        const values = fSizes.map((sz) =>
          pool ? this.buffers.take(Arr, E * sz, undefined, false) : allocating('cpu', E * sz * Arr.BYTES_PER_ELEMENT, () => new Arr(E * sz)),
        );
        if (pool) pool.run(hoist, hS, E, tile, hP, hX, hXS, values, fSizes, undefined, 0);
        else runTiles(hoist.run, hS, 0, E, tile, hP, hX, hXS, values, fSizes, undefined, 0);
        for (const v of hit?.values ?? []) this.buffers.give(v);
        this.inputCache.set(input, { program, params, values });
        X.push(...values);
      } else {
        const values = fSizes.map((sz) => new Float64Array(Math.min(tile, E) * sz));
        X.push(...values);
        perTile = (e0, Et) => {
          for (let k = 0; k < hXB.length; k++) hXB[k] = e0 * hXS[k]!;
          hoist.run(Et, hP, hX, hXB, hXS, values, hOB, fSizes, undefined, 0, hS);
        };
      }
    }
    const pool = perTile ? undefined : this.poolFor(E, [...X, ...O, ...(Jd ? [Jd] : [])]);
    if (pool) {
      pool.run(kernel, S, E, tile, P, X, XS, O, OS, Jd, n * s);
      return J ? { outputs: outs, jacobian: J } : { outputs: outs };
    }
    for (let e0 = 0; e0 < E; e0 += tile) {
      const Et = Math.min(tile, E - e0);
      for (let k = 0; k < leaves; k++) XB[k] = e0 * XS[k]!;
      if (perTile) perTile(e0, Et);
      else for (let k = leaves; k < XB.length; k++) XB[k] = e0 * XS[k]!;
      for (let k = 0; k < OB.length; k++) OB[k] = e0 * OS[k]!;
      kernel.run(Et, P, X, XB, XS, O, OB, OS, Jd, e0 * n * s, S);
    }
    return J ? { outputs: outs, jacobian: J } : { outputs: outs };
  }

  /**
   * runStep on the WebAssembly module, split by groups of four elements over threads where B·T·n
   * reaches 2¹⁶ and the arrays are shared (each thread its own instance and hoisted values), its hoisted values kept for the input tensor and
   * params as long as they are unchanged (the cache entry is the module's token).
   */
  private wasmStep(
    w: WasmStep,
    program: StepProgram,
    inputs: StepInputs,
    E: number,
    leafData: (id: NodeId) => TypedArray,
    O: readonly TypedArray[],
    J: TypedArray | undefined,
  ): void {
    const P = this.wasmParams(program.graph, inputs.params);
    const input = inputs.input;
    const x = input ? this.data(input) : undefined;
    const token = this.wasmToken(program, inputs.params, input, w.hoistBytes(E));
    const leaves = w.leaves.map(leafData);
    // Whole groups of elements over threads where the step is large enough and every array is shared.
    const n = program.graph.stateSize;
    const pool = this.poolFor(E * n, [...leaves, ...(x ? [x] : []), ...O, ...(J ? [J] : [])], WASM_STEP_PARALLEL_MIN);
    w.run(P, E, leaves, x, token, O, J, pool);
  }

  /** The float32 arrays of a program's params (graph order; empty for a missing one). */
  private wasmParams(g: Graph, params: Readonly<Record<string, Tensor>>): TypedArray[] {
    return g.params.map((spec) => {
      const t = params[spec.name];
      return t ? this.data(t) : new Float32Array(0);
    });
  }

  /**
   * The token naming an input tensor and params for a WebAssembly module's kept hoisted values
   * (`bytes` of them), while they are unchanged; undefined where there is no input or they are too
   * large to keep.
   */
  private wasmToken(
    program: StepProgram,
    params: Readonly<Record<string, Tensor>>,
    input: Tensor | undefined,
    bytes: number,
  ): InputCache | undefined {
    if (!input || bytes > INPUT_CACHE_BYTES) return undefined;
    const ps = program.graph.params.map((spec) => params[spec.name]);
    const hit = this.inputCache.get(input);
    if (hit && hit.program === program && hit.params.every((t, k) => t === ps[k])) return hit;
    const token = { program, params: ps, values: [] };
    for (const v of hit?.values ?? []) this.buffers.give(v);
    this.inputCache.set(input, token);
    return token;
  }

  /**
   * Core's fused DEER step (`Backend.deerStep`), in float32 with WebAssembly SIMD, row groups
   * split over threads on large steps (wasm-deer-step.ts); null (core composes the step) elsewhere: float64, no SIMD, calls
   * under `compileMin` elements, programs or Jacobians the generator does not fuse.
   */
  deerStep(
    program: StepProgram,
    inputs: DeerStepInputs,
    previous: Tensor,
    opts: NewtonUpdateOptions,
  ): Promise<NewtonUpdate> | null {
    const prev = this.get(previous);
    const [x, y0] = [this.data(inputs.input), this.data(inputs.y0)];
    if (!(prev.data instanceof Float32Array && x instanceof Float32Array && y0 instanceof Float32Array)) return null;
    const [B, T] = prev.shape as [number, number];
    if (B * T < this.compileMin || !this.simd || !program.jacobian) return null;
    // The fused step's parallelism is row groups of four; where they cannot fill the threads of a
    // large step, the composed step (its scan and update chunked over time) uses them better.
    // Four batch rows share a group's lanes and the group walks time serially: with fewer than
    // three rows most lanes idle, and the composed step (its lanes over (b, t)) is faster
    // (B = 1, T = 1e6, nh = 1: 27 vs 55 ms an iteration; B = 2: 5.7 vs 6.2; B = 3: 7.2 vs 6.7).
    if (B < FUSED_MIN_ROWS) return null;
    const plan = cached(deerPlans, program, 'float32', this.simd, (fast) => makeDeerPlan(program, fast));
    if (!plan) return null;
    // Made last, after every read that can throw (should a later step throw, the call's guard
    // disposes it: TENSOR_METHODS in ../backend.ts).
    const P = this.wasmParams(program.graph, inputs.params);
    const token = this.wasmToken(program, inputs.params, inputs.input, plan.hoistBytes(B, T));
    const out = this.unfilled(prev.shape, 'float32');
    // Row groups over threads where the step is large enough and every array is shared.
    const pool = this.poolFor(B * T * prev.shape[2]!, [x, y0, prev.data, out.data], DEER_PARALLEL_MIN);
    const r = plan.run(P, B, T, x, y0, prev.data, out.data, token, opts, pool);
    return Promise.resolve(newtonUpdateFromRows(out, r.maxAbsDiff, r.rows));
  }

  override runSequential(
    program: StepProgram,
    inputs: { input?: Tensor; y0: Tensor; params: Readonly<Record<string, Tensor>> },
  ): Tensor {
    const y0 = this.get(inputs.y0);
    const steps = y0.shape[0]! * (inputs.input ? inputs.input.shape[1]! : 1);
    if (steps < this.compileMin) return super.runSequential(program, inputs);
    const plan = cached(seqPlans, program, y0.dtype, this.simd, (fast) => makeSeqPlan(program, fast, this.simd));
    if (!plan) return super.runSequential(program, inputs);
    const g = program.graph;
    const x = inputs.input ? this.get(inputs.input) : undefined;
    const [B, n] = y0.shape as [number, number];
    const T = x ? x.shape[1]! : 1;
    const out = this.unfilled([B, T, n], y0.dtype);
    const { hoist, frontier, step, stateLeaf } = plan;
    if (hoist?.externals.some((id) => g.nodes[id]!.op !== 'input'))
      throw new Error('cpu: hoisted part reads more than the input');
    if (hoist?.externals.length && !x) throw new Error('cpu: the program reads its input but none was given');
    const args: SeqRowsArgs = {
      hTile: plan.hoistTile,
      T,
      n,
      m: g.inputSize,
      P: this.paramArrays(g, inputs.params, step.consts),
      hP: hoist ? this.paramArrays(g, inputs.params, hoist.consts) : undefined,
      hN: hoist ? hoist.externals.length : 0,
      x: x?.data,
      y0: y0.data,
      y: out.data,
      fSizes: frontier.map((id) => g.nodes[id]!.size),
      hasState: stateLeaf !== undefined,
      budget: CHUNK_BUDGET,
    };
    // Rows are independent: on large enough problems, each thread runs the whole time loop for a
    // contiguous range of them (the same arithmetic per row as one thread).
    const parts = Math.min(this.threads, B);
    const pool =
      parts > 1 ? this.poolFor(B * T * plan.work, [out.data, ...(x ? [x.data] : [])], SEQ_PARALLEL_MIN) : undefined;
    const rows = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * B) / parts));
    if (plan.wasm) {
      const job = plan.wasm;
      const P = this.wasmParams(g, inputs.params);
      const call = (b0: number, b1: number) => [P, b0, b1, T, x?.data, y0.data, out.data, 8 * CHUNK_BUDGET] as const;
      if (pool) pool.calls(rows.slice(0, -1).map((b0, i) => (rows[i + 1]! > b0 ? [[job, call(b0, rows[i + 1]!)]] : [])));
      else job.fn(...call(0, B));
      return out;
    }
    const S = scratchFor(step, B);
    const hS = hoist ? scratchFor(hoist, plan.hoistTile) : undefined;
    if (pool) {
      pool.rows(rows, step, S, hoist, hS, args);
      return out;
    }
    const a = args;
    runRows(step.run, S, hoist?.run, hS, a.hTile, 0, B, T, n, a.m, a.P, a.hP, a.hN, a.x, a.y0, a.y, a.fSizes, a.hasState, a.budget);
    return out;
  }

  override scan(args: ScanArgs): Tensor {
    const c = this.get(args.c);
    const [B, T, n] = c.shape as [number, number, number];
    const out = this.unfilled([B, T, n], c.dtype);
    const [A, y0, s, rev] = [this.data(args.A), this.data(args.y0), args.blockSize, args.reverse];
    if (!this.threadedScan.run(A, c.data, y0, out.data, B, T, n, s, rev, this.threads)) {
      scanFast(A, c.data, y0, out.data, B, T, n, s, rev);
    }
    return out;
  }

  override shiftTime(x: Tensor, fill: Tensor | null, dir: 1 | -1): Tensor {
    const src = this.get(x);
    const [B, T] = src.shape as [number, number];
    const inner = perStep(src.shape);
    const out = this.unfilled(src.shape, src.dtype);
    if (out.size === 0) return out;
    const [d, o] = [src.data, out.data];
    const f = fill ? this.data(fill) : null;
    const segments: CopySegment[] = [];
    for (let b = 0; b < B; b++) {
      const base = b * T * inner;
      const edge = dir === 1 ? base : base + (T - 1) * inner;
      segments.push(dir === 1 ? [base, base + inner, (T - 1) * inner] : [base + inner, base, (T - 1) * inner]);
      if (f) o.set(f.subarray(b * inner, (b + 1) * inner), edge);
      else o.fill(0, edge, edge + inner);
    }
    copySegments(this.poolFor(src.size, [d, o], COPY_PARALLEL_MIN), d, o, segments);
    return out;
  }

  override newtonUpdateSync(yRaw: Tensor, yOld: Tensor, opts: NewtonUpdateOptions): NewtonUpdate {
    const raw = this.get(yRaw);
    const old = this.data(yOld);
    const split = raw.size >= UPDATE_PARALLEL_MIN && isShared(raw.data) && isShared(old);
    if (this.threads < 2 || !split || old.length !== raw.size) return super.newtonUpdateSync(yRaw, yOld, opts);
    const out = this.unfilled(raw.shape, raw.dtype);
    const [B, T] = [raw.shape[0] ?? 1, raw.shape[1] ?? 1];
    const r = threadedNewtonUpdate(this.startPool(), raw.data, old, out.data, B, T, opts);
    return newtonUpdateFromRows(out, r.maxAbsDiff, r.rows);
  }

  override affineOffset(F: Tensor, A: Tensor, y: Tensor, s: number): Tensor {
    const f = this.get(F);
    const [B, T, n] = f.shape as [number, number, number];
    const out = this.unfilled([B, T, n], f.dtype);
    affineOffsetFast(f.data, this.data(A), this.data(y), out.data, B * T, n, s);
    return out;
  }
}
