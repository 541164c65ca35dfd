import type { Backend, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { TensorStateError } from '../errors.js';
import { AbortCheck, type AbortSignalLike, signalOption } from './abort.js';
import { type DeerResult, deer } from './deer.js';
import { asDeviceActivity, asDeviceActivitySync, nonFiniteEntries } from './engine.js';
import { driveAsync, driveSync, readTensor, type Solve } from './solve.js';
import { checkOptionNames, DEER_OPTION_NAMES, type DeerOptions, resolveDeerOptions } from './options.js';
import {
  checkCotangent,
  checkInitialGuess,
  checkInputFinite,
  checkLengths,
  checkParamTensors,
  checkSequenceInput,
  Owned,
  type ParamsInput,
  prepareInitialState,
  prepareParams,
  windowLengths,
} from './validate.js';
import { chooseWindow } from './window.js';

export interface DeerGradients {
  /** ∂L/∂θ, one flat tensor per parameter (same layout as the parameter). */
  readonly params: Record<string, Tensor>;
  /** ∂L/∂x, [B, T, m]. */
  readonly x: Tensor;
  /** ∂L/∂h0, [B, n]. */
  readonly h0: Tensor;
  readonly stats: GradStats;
}

export interface GradStats {
  /** Windows of time steps the backward pass ran in. */
  readonly windows: number;
  /**
   * Windows whose adjoint λ the parallel reverse scan returned with NaN/Inf, recomputed by a
   * sequential reverse scan on the host (float64).
   */
  readonly sequentialWindows: number;
  /**
   * NaN/Inf entries left in λ after that, plus those of the returned ∂L/∂θ, ∂L/∂x and ∂L/∂h0:
   * 0 exactly when every gradient returned is finite. (A finite λ can still give a NaN gradient:
   * a zero adjoint times a state or a cell value that overflowed, 0·∞.)
   */
  readonly nonFinite: number;
}

/** Options of a backward pass (`vjp`). */
export interface VjpOptions {
  /**
   * Cancels the backward pass: checked before it starts and at every read, as a solve's `signal`
   * (default: the signal the forward solve was given, so one AbortSignal cancels a training step).
   */
  readonly signal?: AbortSignalLike;
}

export interface DeerGradResult extends DeerResult {
  /**
   * Gradients of a loss L given dy = ∂L/∂y ([B, T, n]), by implicit differentiation: one reverse
   * scan with transposed Jacobians at the solution, then per-step VJPs summed over (b, t). The
   * caller owns and disposes the returned tensors.
   */
  vjp(dy: Tensor, options?: VjpOptions): Promise<DeerGradients>;
  /** Release y and what was kept for `vjp`. */
  dispose(): void;
}

/**
 * `deer` that can also give gradients. The gradient always uses the cell's exact Jacobian
 * structure, so it is exact even when the forward pass used quasi-DEER.
 */
export async function deerWithGrad(
  backend: Backend,
  cell: Cell,
  params: ParamsInput,
  x: Tensor,
  options: DeerOptions = {},
): Promise<DeerGradResult> {
  const { B, T, dtype } = checkSequenceInput(backend, cell, x);
  const opts = resolveDeerOptions(cell, dtype, options, DEER_OPTION_NAMES, 'deerWithGrad');
  const owned = new Owned(backend);
  let released = false;
  try {
    if (opts.checkFinite) await checkInputFinite(backend, x);
    const p = await prepareParams(backend, cell, params, dtype, owned, opts.checkFinite);
    const y0 = await prepareInitialState(backend, cell, options.h0, B, dtype, owned, opts.checkFinite);
    await checkInitialGuess(backend, opts.initialGuess, { B, T, n: cell.stateSize, dtype }, opts.checkFinite);
    // A copy: the gradient must see the lengths the forward pass saw, whatever the caller's array
    // holds by the time vjp is called.
    const lengths = checkLengths(options.lengths, B, T);
    // Everything is checked above (deer repeats only the cheap shape checks).
    const forward = await deer(backend, cell, p, x, { ...options, h0: y0, lengths, checkFinite: false });
    const y = forward.y;
    const vjp = async (dy: Tensor, vjpOptions: VjpOptions = {}): Promise<DeerGradients> => {
      if (released) throw new TensorStateError('deerWithGrad: vjp called after dispose()');
      const signal = vjpSignal(vjpOptions, opts.signal, 'deerWithGrad(...).vjp');
      signal?.throwIfAborted();
      checkCotangent(backend, dy, B, T, cell.stateSize, dtype);
      // The check of dy reads the device too: inside the pass's span, as the pass is.
      return asDeviceActivity(backend, async () => {
        if (opts.checkFinite) await checkInputFinite(backend, dy, 'dy');
        return implicitVjp(backend, cell, p, x, y0, y, dy, opts.window, lengths, signal);
      });
    };
    return {
      y,
      stats: forward.stats,
      vjp,
      dispose: () => {
        if (released) return;
        released = true;
        backend.dispose(y);
        owned.dispose();
      },
    };
  } catch (err) {
    owned.dispose();
    throw err;
  }
}

/** The signal of a backward pass: its own, else the forward solve's. */
export function vjpSignal(
  options: VjpOptions,
  forward: AbortSignalLike | undefined,
  fn: string,
): AbortSignalLike | undefined {
  checkOptionNames(options, ['signal'], fn);
  return options.signal === undefined ? forward : signalOption(options.signal);
}

/** ∂(cotangent · f)/∂x alone at every (b, t): the input part of `stepVjp` (the cell must take inputs). */
export function inputVjp(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  state: Tensor,
  x: Tensor,
  cotangent: Tensor,
): Tensor {
  const id = cell.vjp.dInput;
  if (id === null) throw new Error(`inputVjp: ${cell.name} has no input gradient`);
  return backend.runStep({ graph: cell.vjp.graph, outputs: [id] }, { state, input: x, cotangent, params }).outputs[0]!;
}

/**
 * Per-step VJPs at states `state` with cotangent `cotangent` (both [B, T, ·]): ∂⟨ḡ, f⟩/∂y and /∂x
 * per element (null where identically zero) and ∂/∂θ summed over all elements. With `lengths`,
 * elements past a row's length count for nothing: their per-element values are set to 0 before
 * the sums (a zero cotangent alone leaves 0·NaN = NaN where the cell is not finite at the padding).
 * The caller owns every returned tensor.
 */
export function stepVjp(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  state: Tensor,
  x: Tensor | undefined,
  cotangent: Tensor,
  lengths?: ArrayLike<number>,
): { dState: Tensor | null; dInput: Tensor | null; params: Record<string, Tensor> } {
  const v = cell.vjp;
  const outIds = [v.dState, v.dInput].filter((id): id is number => id !== null);
  const termNodes: number[] = [];
  for (const spec of cell.params) {
    for (const t of v.params[spec.name] ?? []) {
      if (t.kind === 'vector') termNodes.push(t.node);
      else termNodes.push(t.left, t.right);
    }
  }
  const res = backend.runStep(
    { graph: v.graph, outputs: [...outIds, ...termNodes] },
    x ? { state, input: x, cotangent, params } : { state, cotangent, params },
  );
  let outputs = res.outputs;
  if (lengths) {
    const masked: Tensor[] = [];
    try {
      for (const t of res.outputs) masked.push(backend.maskTime(t, lengths));
    } catch (err) {
      for (const t of masked) backend.dispose(t);
      throw err;
    } finally {
      for (const t of res.outputs) backend.dispose(t);
    }
    outputs = masked;
  }
  let k = 0;
  const dState = v.dState !== null ? outputs[k++]! : null;
  const dInput = v.dInput !== null ? outputs[k++]! : null;
  const terms = outputs.slice(k);
  const gradParams: Record<string, Tensor> = {};
  let q = 0;
  let acc: Tensor | null = null;
  try {
    for (const spec of cell.params) {
      acc = null;
      for (const t of v.params[spec.name] ?? []) {
        const term =
          t.kind === 'vector'
            ? backend.sumBatchTime(terms[q++]!)
            : backend.outerSum(terms[q++]!, terms[q++]!, spec.shape.length === 3 ? spec.shape[0]! : 1);
        if (acc === null) acc = term;
        else {
          const prev: Tensor = acc;
          acc = null;
          try {
            acc = backend.add(prev, term);
          } finally {
            backend.dispose(prev);
            backend.dispose(term);
          }
        }
      }
      gradParams[spec.name] = acc ?? backend.zeros([spec.size], cotangent.dtype);
      acc = null;
    }
  } catch (err) {
    // Nothing half-built outlives a failed reduction (an out-of-memory sum, say).
    for (const t of [dState, dInput, acc, ...Object.values(gradParams)]) if (t) backend.dispose(t);
    throw err;
  } finally {
    for (const t of terms) backend.dispose(t);
  }
  return { dState, dInput, params: gradParams };
}

/**
 * λ_t = dy_t + J_{t+1}ᵀ λ_{t+1} by the reverse scan, then the per-step VJPs at the solution. When the
 * Jacobians of all T steps would not fit, windows of time steps are processed from the last to the
 * first, each seeded with λ at the start of the window after it. A λ with NaN/Inf from the
 * parallel scan (whose partial products can overflow where the recurrence itself does not) is
 * recomputed by a sequential reverse scan on the host; the stats count it.
 */
export async function implicitVjp(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  y: Tensor,
  dy: Tensor,
  window?: number,
  lengths?: ArrayLike<number>,
  signal?: AbortSignalLike,
): Promise<DeerGradients> {
  checkParamTensors(backend, cell, params, checkSequenceInput(backend, cell, x).dtype, 'implicitVjp');
  const abort = new AbortCheck(signalOption(signal));
  abort.checkSync();
  return asDeviceActivity(backend, () => driveAsync(backend, implicitVjpSolve(backend, cell, params, x, y0, y, dy, window, lengths), abort));
}

/** `implicitVjp` for backends with synchronous reads (`newtonUpdateSync`, `readSync`). */
export function implicitVjpSync(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  y: Tensor,
  dy: Tensor,
  window?: number,
  lengths?: ArrayLike<number>,
  signal?: AbortSignalLike,
): DeerGradients {
  checkParamTensors(backend, cell, params, checkSequenceInput(backend, cell, x).dtype, 'implicitVjpSync');
  const abort = new AbortCheck(signalOption(signal));
  abort.checkSync();
  return asDeviceActivitySync(backend, () => driveSync(backend, implicitVjpSolve(backend, cell, params, x, y0, y, dy, window, lengths), abort));
}

function* implicitVjpSolve(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  y: Tensor,
  dy: Tensor,
  window?: number,
  lengthsIn?: ArrayLike<number>,
): Solve<DeerGradients> {
  const s = cell.exactBlockSize;
  const n = cell.stateSize;
  const [B, T] = [y.shape[0]!, y.shape[1]!];
  // Padding neither feeds λ (its Jacobians are masked to 0) nor takes any of dy.
  const lengths = checkLengths(lengthsIn, B, T);
  const masked = (t: Tensor, t0: number, len: number, win: Owned) => {
    const rel = windowLengths(lengths, t0, len);
    return rel ? win.add(backend.maskTime(t, rel)) : t;
  };
  // A window also evaluates the Jacobian one step past its end (the next window's first).
  const W =
    window ??
    chooseWindow(backend, { B, T, n, s, dtype: y.dtype, extra: 1, jacobians: 1, lastHasExtra: false });
  const temps = new Owned(backend);
  const gradParams: Record<string, Tensor> = {};
  const dxPieces: Tensor[] = [];
  let dh0: Tensor | undefined;
  let windows = 0;
  let sequentialWindows = 0;
  let nonFinite = 0;
  try {
    const yPrev = temps.add(backend.shiftTime(y, y0, 1));
    let lambdaNext = temps.add(backend.zeros([B, n], y.dtype));
    for (let t0 = Math.floor((T - 1) / W) * W; t0 >= 0; t0 -= W) {
      windows++;
      const len = Math.min(W, T - t0);
      const last = t0 + len === T;
      const win = new Owned(backend);
      try {
        const slice = (t: Tensor, length: number) =>
          t0 === 0 && length === T ? t : win.add(backend.sliceTime(t, t0, length));
        const ext = last ? len : len + 1;
        const lin = backend.runStep(cell.linearizeProgram(s), {
          state: slice(yPrev, ext),
          input: slice(x, ext),
          params,
        });
        win.add(lin.outputs[0]!);
        const J = masked(win.add(lin.jacobian!), t0, ext, win);
        // A_t = J_{t+1}: the last window's final step has none (zeros).
        const Jnext = win.add(last ? backend.shiftTime(J, null, -1) : backend.sliceTime(J, 1, len));
        const dyw = masked(slice(dy, len), t0, len, win);
        let lambda = win.add(backend.scan({ A: Jnext, c: dyw, y0: lambdaNext, blockSize: s, reverse: true }));
        const bad = yield* countNonFinite(backend, lambda);
        if (bad > 0) {
          sequentialWindows++;
          lambda = win.add(yield* hostReverseScan(backend, Jnext, dyw, lambdaNext, s));
          nonFinite += yield* countNonFinite(backend, lambda);
        }
        const g = stepVjp(backend, cell, params, slice(yPrev, len), slice(x, len), lambda, windowLengths(lengths, t0, len));
        for (const [name, t] of Object.entries(g.params)) {
          const prev = gradParams[name];
          gradParams[name] = prev ? backend.add(prev, t) : t;
          if (prev) {
            backend.dispose(prev);
            backend.dispose(t);
          }
        }
        dxPieces.unshift(g.dInput ?? backend.zeros([B, len, cell.inputSize], y.dtype));
        if (g.dState) {
          if (t0 === 0) dh0 = backend.timeStep(g.dState, 0);
          backend.dispose(g.dState);
        }
        lambdaNext = temps.add(backend.timeStep(lambda, 0));
      } finally {
        win.dispose();
      }
    }
    const dx = dxPieces.length === 1 ? dxPieces[0]! : backend.concatTime(dxPieces);
    if (dxPieces.length > 1) for (const t of dxPieces) backend.dispose(t);
    dxPieces.length = 0;
    // Held there until the return, so that an abort at the counts' reads disposes it too.
    dxPieces.push(dx);
    dh0 ??= backend.zeros([B, n], y.dtype);
    // dx is counted where it is ([B, T, m], as large as the input: a flattened copy could pass
    // the backend's largest buffer); the small ones together.
    nonFinite += yield* countNonFinite(backend, dx);
    nonFinite += yield* countNonFiniteIn(backend, [...Object.values(gradParams), dh0]);
    return {
      params: gradParams,
      x: dx,
      h0: dh0,
      stats: { windows, sequentialWindows, nonFinite },
    };
  } catch (err) {
    for (const t of [...Object.values(gradParams), ...dxPieces]) backend.dispose(t);
    if (dh0) backend.dispose(dh0);
    throw err;
  } finally {
    temps.dispose();
  }
}

/** NaN/±Inf entries of all of `tensors` together (small ones: flattened into one copy, one read). */
function* countNonFiniteIn(backend: Backend, tensors: readonly Tensor[]): Solve<number> {
  const flat = new Owned(backend);
  try {
    const parts = tensors
      .filter((t) => t.size > 0)
      .map((t) => flat.add(backend.reshape(t, [1, t.size, 1])));
    if (parts.length === 0) return 0;
    const all = parts.length === 1 ? parts[0]! : flat.add(backend.concatTime(parts));
    return yield* countNonFinite(backend, all);
  } finally {
    flat.dispose();
  }
}

/** NaN/±Inf entries of t (engine's `nonFiniteEntries`). */
function* countNonFinite(backend: Backend, t: Tensor): Solve<number> {
  return (yield* nonFiniteEntries(backend, t)).count;
}

/**
 * λ_t = c_t + A_tᵀ λ_{t+1} (t = T..1, λ_{T+1} = next) one step after another on the host, in
 * float64: the recurrence in its own order, with no partial products to overflow.
 */
function* hostReverseScan(backend: Backend, A: Tensor, c: Tensor, next: Tensor, s: number): Solve<Tensor> {
  const [B, T, n] = [c.shape[0]!, c.shape[1]!, c.shape[2]!];
  const a = yield* readTensor(A);
  const cv = yield* readTensor(c);
  const nx = yield* readTensor(next);
  const out = new Float64Array(B * T * n);
  const lam = new Float64Array(n);
  const tmp = new Float64Array(n);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) lam[i] = nx[b * n + i]!;
    for (let t = T - 1; t >= 0; t--) {
      const e = b * T + t;
      for (let k = 0; k < n / s; k++) {
        for (let j = 0; j < s; j++) {
          let acc = cv[e * n + k * s + j]!;
          for (let i = 0; i < s; i++) acc += a[((e * (n / s) + k) * s + i) * s + j]! * lam[k * s + i]!;
          tmp[k * s + j] = acc;
        }
      }
      lam.set(tmp);
      out.set(lam, e * n);
    }
  }
  return backend.tensor(out, [B, T, n], c.dtype);
}
