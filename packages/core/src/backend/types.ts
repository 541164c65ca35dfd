import type { StepProgram } from './program.js';

export type DType = 'float32' | 'float64';
export type TypedArray = Float32Array | Float64Array;

/**
 * A backend-owned array. Opaque apart from its shape and dtype: data lives where the backend
 * keeps it (a typed array, a GPU buffer, a tf.Tensor) and comes back through `backend.read`.
 */
export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  /** The name of the backend that made it. */
  readonly backendName: string;
}

export interface BackendCapabilities {
  readonly dtypes: readonly DType[];
  readonly defaultDType: DType;
  /** Largest single buffer the backend can allocate, in bytes. */
  readonly maxBufferBytes: number;
  /**
   * Memory one solve may hold at once, in bytes (windows are sized to it); default maxBufferBytes.
   */
  readonly memoryBytes?: number;
  /** Whether reads complete without waiting on a device. */
  readonly syncRead: boolean;
  /** Engine or adapter, for reports (e.g. "llvmpipe", "NVIDIA H100", "tfjs wasm"). */
  readonly device: string;
  /**
   * About how many scalar operations the backend runs at once (threads × SIMD width on a CPU,
   * resident invocations on a GPU). `method: 'auto'` weighs DEER's extra work against it to choose
   * between DEER and sequential evaluation; absent, 'auto' does not make that choice.
   */
  readonly parallelism?: number;
  /**
   * Fixed cost of one Newton iteration beyond its work — launches, submission, the read's round
   * trip — in the cost model's units (one multiply-add of sequential evaluation on one lane);
   * absent, the model's default (ITERATION_OVERHEAD in solver/plan.ts).
   */
  readonly iterationOverhead?: number;
  /**
   * How sequential evaluation prices a step of a state of `fromState` (default 8) or more, where
   * the backend spreads a step's work over several lanes (a GPU's workgroup-per-row kernel):
   * max(work / spread, floor), in the cost model's units (floor: the step's synchronisation).
   * Absent: one lane does a step's whole work.
   */
  readonly sequentialStep?: { readonly spread: number; readonly floor: number; readonly fromState?: number };
  /**
   * How many times less a row-step of sequential evaluation costs when a step carries many rows
   * (a thousand) than when it carries one — SIMD lanes, threads and batching together — per
   * dtype, as measured. 'auto' prices parallel shooting with it (one long row folded into √T
   * rows). Absent: no gain, and 'auto' does not shoot up front.
   */
  readonly sequentialRowGain?: Readonly<Partial<Record<DType, number>>>;
  /**
   * The backend runs on the host's CPU through a layer made for other hardware — a software GPU
   * adapter such as llvmpipe, tfjs's cpu or wasm engine —: `@deerjs/cpu` is faster on the same
   * machine, so `loadBackend()` with no name takes it only where no other backend loads.
   */
  readonly emulated?: boolean;
}

/** Per-(batch, time) inputs of a step program; every tensor is [B, T, size]. */
/** What a whole DEER step reads besides the iterate: the inputs x, the initial state and the params. */
export interface DeerStepInputs {
  readonly input: Tensor;
  readonly y0: Tensor;
  readonly params: Readonly<Record<string, Tensor>>;
}

export interface StepInputs {
  readonly state: Tensor;
  readonly input?: Tensor;
  readonly cotangent?: Tensor;
  /** Flat parameter tensors by name. */
  readonly params: Readonly<Record<string, Tensor>>;
}

export interface StepOutputs {
  /** One [B, T, size] tensor per `program.outputs` entry. */
  readonly outputs: Tensor[];
  /** [B, T, n/s, s, s] when the program has a Jacobian. */
  readonly jacobian?: Tensor;
}

export interface ScanArgs {
  /** [B, T, n/s, s, s] block-diagonal transition matrices. */
  readonly A: Tensor;
  /** [B, T, n] offsets. */
  readonly c: Tensor;
  /** [B, n] boundary state. */
  readonly y0: Tensor;
  readonly blockSize: number;
  /**
   * false: y_t = A_t y_{t−1} + c_t for t = 1..T from y_0.
   * true:  y_t = A_tᵀ y_{t+1} + c_t for t = T..1 from y_{T+1} = y0 (the gradient's scan).
   */
  readonly reverse: boolean;
}

/**
 * How `newtonUpdate` sanitizes and measures an iterate: atol and rtol finite and ≥ 0, clip > 0
 * (Infinity: none). Every Backend method's arguments are checked against core's contracts
 * (`backend/op-contracts.ts`): a bad one is a ShapeError.
 */
export interface NewtonUpdateOptions {
  readonly atol: number;
  readonly rtol: number;
  /** Entries with |v| ≥ clip are set to ±clip and counted as clipped. */
  readonly clip: number;
  /**
   * Batch rows to update (1) or hold (0), length B. A held row keeps yOld unchanged and counts
   * nothing. Default: every row.
   */
  readonly active?: Uint8Array;
  /** yRaw holds the Newton step δ: the raw iterate is yOld + δ (saves the engine an add). */
  readonly delta?: boolean;
}

/** Per batch row measures of a Newton update (zero for rows that were held). */
export interface RowUpdate {
  readonly maxScaledDiff: Float64Array;
  readonly replaced: Uint32Array;
  readonly clipped: Uint32Array;
  /**
   * Leading time steps (axis 1) whose every entry met the tolerance with nothing replaced or
   * clipped: T when the whole row did. Exact Newton settles at least one more step per iteration,
   * so this measures progress where the largest change does not.
   */
  readonly settled: Uint32Array;
}

/**
 * The damped (Levenberg–Marquardt) linear recurrence: the δ that minimises
 * Σ_t ‖δ_t − A_t δ_{t−1} − c_t‖² + λ_b Σ_t ‖δ_t‖² (δ_{−1} = 0) for each batch row b — ELK's
 * trust-region step, the MAP estimate of a Kalman smoother. λ = 0 gives the plain scan. Diagonal
 * transitions (s = 1) are quasi-ELK's step; s × s blocks (s = n: dense) ELK's.
 */
export interface DampedScanArgs {
  /** [B, T, n/s, s, s] transitions A_t in block structure (s = 1: diagonal). */
  readonly A: Tensor;
  /** [B, T, n] offsets c_t. */
  readonly c: Tensor;
  /** λ_b ≥ 0 per batch row. */
  readonly lambda: ArrayLike<number>;
}

export interface NewtonUpdate {
  /** The sanitized new iterate: NaN/±Inf replaced by 0, values clipped to ±clip. */
  readonly y: Tensor;
  /** max |y − yOld| over the active rows. */
  readonly maxAbsDiff: number;
  /** max |y − yOld| / (atol + rtol·|y|) over the active rows: within tolerance when ≤ 1. */
  readonly maxScaledDiff: number;
  /** How many entries of the raw iterate were NaN or ±Inf (replaced by 0). */
  readonly replaced: number;
  /** How many finite entries of the raw iterate had |v| ≥ clip (set to ±clip). */
  readonly clipped: number;
  readonly rows: RowUpdate;
}

/** Combine per-row measures into a NewtonUpdate (backends that reduce per row call this). */
export function newtonUpdateFromRows(y: Tensor, maxAbsDiff: number, rows: RowUpdate): NewtonUpdate {
  let maxScaledDiff = 0;
  let replaced = 0;
  let clipped = 0;
  for (let b = 0; b < rows.maxScaledDiff.length; b++) {
    const s = rows.maxScaledDiff[b]!;
    if (s > maxScaledDiff || Number.isNaN(s)) maxScaledDiff = s;
    replaced += rows.replaced[b]!;
    clipped += rows.clipped[b]!;
  }
  return { y, maxAbsDiff, maxScaledDiff, replaced, clipped, rows };
}

/**
 * Work a backend has sent to its device, counted since it was created (see `Backend.counters`).
 * Solvers report the difference over a solve as `stats.device`.
 */
export interface DeviceCounters {
  /** Kernel launches (compute dispatches). */
  readonly dispatches: number;
  /** Command submissions to the device queue. */
  readonly submits: number;
  /** Reads back to the host (each one waits on the device). */
  readonly reads: number;
  /** Bytes written on the device by kernels, copies and clears (approximate: output buffer sizes). */
  readonly bytesWritten: number;
  /** Bytes copied back to the host. */
  readonly bytesRead: number;
}

/** `b − a`, field by field. */
export function counterDifference(a: DeviceCounters, b: DeviceCounters): DeviceCounters {
  return {
    dispatches: b.dispatches - a.dispatches,
    submits: b.submits - a.submits,
    reads: b.reads - a.reads,
    bytesWritten: b.bytesWritten - a.bytesWritten,
    bytesRead: b.bytesRead - a.bytesRead,
  };
}

/**
 * The contract every backend implements. Small on purpose: core's solvers are written against
 * these methods only. Tensors are batch-major: [B, T, ...].
 */
export interface Backend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;

  /**
   * A tensor of `shape` holding `data`: an array or numeric typed array of numbers (NaN and ±Inf
   * allowed), exactly as many as the shape holds. Anything else is refused before anything is made
   * or counted (`checkTensorData`: an InvalidArgumentError for what is not numbers, a ShapeError
   * for a wrong shape or count).
   */
  tensor(data: ArrayLike<number>, shape: readonly number[], dtype?: DType): Tensor;
  zeros(shape: readonly number[], dtype?: DType): Tensor;
  read(t: Tensor): Promise<TypedArray>;
  /** `read` completed synchronously, for backends whose reads do not wait on a device. */
  readSync?(t: Tensor): TypedArray;
  dispose(t: Tensor): void;
  /** Tensors made and not yet disposed (the leak check). */
  liveTensors(): number;

  /** Evaluate a step program for every (b, t). */
  runStep(program: StepProgram, inputs: StepInputs): StepOutputs;
  /** y_t = f(y_{t−1}, x_t) one step after another; `program.outputs[0]` is f. Returns [B, T, n]. */
  runSequential(
    program: StepProgram,
    inputs: { input?: Tensor; y0: Tensor; params: Readonly<Record<string, Tensor>> },
  ): Tensor;
  /** The linear recurrence, by whatever parallel or sequential order suits the backend. */
  scan(args: ScanArgs): Tensor;

  /**
   * The damped scan (see DampedScanArgs): a symmetric positive definite block-tridiagonal solve
   * along time for every (b, block), by whatever order suits the backend (block Thomas in time
   * order, or parallel cyclic reduction).
   */
  dampedScan(args: DampedScanArgs): Tensor;
  /**
   * The transitions a ([B, T, n/s, s, s]) with every (b, t) one scaled by min(1, caps[b] / ‖a_bt‖∞),
   * ‖·‖∞ the largest absolute row sum over its n rows; rows b with caps[b] < 0 are copied as they
   * are. The damped DEER step's trust region: a linear model that may not carry a correction on
   * with more than caps[b] times its size per step.
   */
  capTransitions(a: Tensor, blockSize: number, caps: ArrayLike<number>): Tensor;
  /** c = F − A·y per (b, t), A in block structure [B, T, n/s, s, s]. */
  affineOffset(F: Tensor, A: Tensor, y: Tensor, blockSize: number): Tensor;
  /**
   * dir = 1: out[:, 0] = fill, out[:, t] = x[:, t − 1]. dir = −1: out[:, t] = x[:, t + 1],
   * out[:, T − 1] = fill. fill is [B, ...rest] or null for zeros.
   */
  shiftTime(x: Tensor, fill: Tensor | null, dir: 1 | -1): Tensor;
  /** [B, ...rest] → [B, T, ...rest]. */
  broadcastTime(x: Tensor, T: number): Tensor;
  sliceTime(x: Tensor, start: number, length: number): Tensor;
  concatTime(parts: readonly Tensor[]): Tensor;
  /** x[:, t] as [B, ...rest]. */
  timeStep(x: Tensor, t: number): Tensor;
  /**
   * x's entries in the same (row-major) order under another shape of the same size, as a new
   * tensor: e.g. [B, K·L, m] ↔ [B·K, L, m], time folded into the batch (`checkReshape`).
   */
  reshape(x: Tensor, shape: readonly number[]): Tensor;
  /** Sanitize a raw Newton iterate and measure its change; the only per-iteration read. */
  newtonUpdate(yRaw: Tensor, yOld: Tensor, opts: NewtonUpdateOptions): Promise<NewtonUpdate>;
  /**
   * `newtonUpdate` completed synchronously, for backends whose reads do not wait on a device
   * (capabilities.syncRead); it lets `deerSync` serve callers that cannot await.
   */
  newtonUpdateSync?(yRaw: Tensor, yOld: Tensor, opts: NewtonUpdateOptions): NewtonUpdate;
  /**
   * Optional fusion of a Newton step's scan and update: the same as
   * `newtonUpdate(scan(args), yOld, { ...opts, delta: true })` (args forward, the scan giving the
   * step δ), without the step δ in memory. Core composes the two where a backend lacks it.
   */
  scanUpdate?(args: ScanArgs, yOld: Tensor, opts: NewtonUpdateOptions): Promise<NewtonUpdate>;
  /**
   * Optional: `scanUpdate`'s new iterate alone, its measures never read (args forward). A backend
   * whose reads cost a round trip (a GPU's submission and map) offers it so that the engine can run
   * Newton steps between its convergence checks without waiting on each (`unreadIterations` in
   * solver/plan.ts); it should start the device on the step at once.
   */
  scanUpdateUnread?(args: ScanArgs, yOld: Tensor, opts: NewtonUpdateOptions): Tensor;
  /**
   * One whole DEER step of y_t = f(y_{t−1}, x_t) at the iterate `previous` ([B, T, n]; the step
   * before t = 0 reads `inputs.y0`): `program` (a cell's residualProgram with a Jacobian) at state
   * `previous` shifted one step and cotangent `previous`, δ by the forward scan, applied as
   * `scanUpdate` applies it — in one fused form, where the backend has one for this case. Returns
   * null where it does not: core then composes shiftTime, runStep and scanUpdate. Asynchronous
   * drivers only. A fused step may skip structurally zero Jacobian entries, so where the iterate
   * or the residual holds NaN/Inf its `replaced` counts can differ from the composition's (which
   * multiplies them by those zeros); finite results agree up to rounding.
   */
  deerStep?(
    program: StepProgram,
    inputs: DeerStepInputs,
    previous: Tensor,
    opts: NewtonUpdateOptions,
  ): Promise<NewtonUpdate> | null;
  /** The first NaN/±Inf entry, or null. */
  findNonFinite(t: Tensor): Promise<{ index: number; value: number } | null>;
  /** a + b, elementwise, same shape. */
  add(a: Tensor, b: Tensor): Tensor;
  /** a − b, elementwise, same shape. */
  sub(a: Tensor, b: Tensor): Tensor;
  /** x ([B, T, ...]) with every entry at a time step t ≥ lengths[b] (an integer ≥ 0) of row b set to 0. */
  maskTime(x: Tensor, lengths: ArrayLike<number>): Tensor;
  /** The batch rows `rows` of x ([B, ...] → [rows.length, ...]), in that order. */
  gatherRows(x: Tensor, rows: readonly number[]): Tensor;
  /** A copy of `into` ([B, ...]) whose rows `rows` (distinct) are replaced by the rows of src ([rows.length, ...]). */
  scatterRows(into: Tensor, rows: readonly number[], src: Tensor): Tensor;
  /** Σ over batch and time: [B, T, size] → [size]. */
  sumBatchTime(x: Tensor): Tensor;
  /** Σ_{b,t} left ⊗ right per block: [B, T, k·r], [B, T, k·c] → [k·r·c] (row-major [k, r, c]). */
  outerSum(left: Tensor, right: Tensor, blocks: number): Tensor;

  // Batched small-matrix ops: the ODE exponential (solveIvp) is built from them.
  /** a·b per (b, t, block): [B, T, n/s, s, s] × [B, T, n/s, s, s]. */
  blockMatmul(a: Tensor, b: Tensor, blockSize: number): Tensor;
  /** a·v per (b, t, block): [B, T, n/s, s, s] × [B, T, n] → [B, T, n]. */
  blockMatvec(a: Tensor, v: Tensor, blockSize: number): Tensor;
  /** x[:, t, …] · alpha · h[t] for x of shape [B, T, …], h of length T and a finite alpha. */
  scaleTime(x: Tensor, h: ArrayLike<number>, alpha: number): Tensor;
  /** a + alpha·I (alpha finite) in every s×s block of [B, T, n/s, s, s]. */
  addIdentity(a: Tensor, blockSize: number, alpha: number): Tensor;
  /** max |x| over all entries (NaN if any entry is NaN). */
  maxAbs(x: Tensor): Promise<number>;

  /** Optional: what the backend has sent to its device so far (a device backend's own counts). */
  counters?(): DeviceCounters;

  /**
   * Release the device and everything on it, so a Node process can exit; the backend is unusable
   * afterwards. (Named apart from `dispose(t)`, which frees one tensor.)
   */
  destroy(): Promise<void> | void;
}

export const DTYPE_BYTES: Readonly<Record<DType, number>> = { float32: 4, float64: 8 };

/** Unit roundoff of each dtype (half the distance from 1 to the next number). */
export const UNIT_ROUNDOFF: Readonly<Record<DType, number>> = { float32: 2 ** -24, float64: 2 ** -53 };
