import {
  type Cell,
  checkCell,
  checkOptionNames,
  checkParamNames,
  type DeerOptions,
  type DeerStats,
  DTypeError,
  describeValue,
  flag,
  InvalidArgumentError,
  NonFiniteError,
  deerSync,
  implicitVjpSync,
  ShapeError,
  type Tensor,
  TensorStateError,
  UnsupportedOptionError,
} from '@deerjs/core';
import * as tfDefault from '@tensorflow/tfjs-core';
import type * as tfc from '@tensorflow/tfjs-core';
import { TfjsBackend } from './backend.js';

/**
 * Solver options of the op: core's `deer` options that need no asynchronous read. With `lengths`
 * (padded rows) y is zero past each row's end and so is the gradient; `window` splits the solve
 * and its gradient into windows of time steps.
 */
export interface DeerRnnOptions
  extends Pick<DeerOptions, 'atol' | 'rtol' | 'maxIter' | 'jacobian' | 'fallback' | 'clip' | 'method' | 'lengths' | 'window'> {
  /** The deerjs backend to run on; default one over the imported @tensorflow/tfjs-core. */
  readonly backend?: TfjsBackend;
  /**
   * Refuse NaN/±Inf in x, h0 and the params with a NonFiniteError (default true): one reduction
   * over the inputs and one scalar read per call; false skips it (a NaN input then gives NaN y).
   */
  readonly checkFinite?: boolean;
  /**
   * Called with each forward solve's stats (iterations, converged, fellBack, stopReason, …): an
   * op returns only y, and with `fallback: 'none'` an unconverged y is otherwise indistinguishable.
   * It must be synchronous: the op cannot wait. An `async` function is refused up front, and a
   * callback that returns a promise (or any thenable) anyway makes the op throw, both with an
   * UnsupportedOptionError; the promise is not awaited, and its rejection is handled (ignored) so
   * that it cannot end the process as an unhandled rejection. A callback that throws makes the op
   * throw that error; no tensor is left behind either way.
   */
  readonly onStats?: (stats: DeerStats) => void;
}

const OPTION_NAMES: readonly (keyof DeerRnnOptions)[] = [
  'atol',
  'rtol',
  'maxIter',
  'jacobian',
  'fallback',
  'clip',
  'method',
  'lengths',
  'window',
  'backend',
  'checkFinite',
  'onStats',
];

/**
 * The op's default backends, one per tfjs engine: a TfjsBackend fixes how data moves (host loops,
 * gathers, sync reads) from the engine active when it is made, so one made on 'cpu' is not reused
 * after tf.setBackend('webgl').
 */
const defaultBackends = new Map<string, TfjsBackend>();

/** The backend `deerRnn` runs on when none is given: the one for the active tfjs engine. */
export function defaultBackend(): TfjsBackend {
  const engine = tfDefault.getBackend();
  let b = defaultBackends.get(engine);
  if (!b) {
    b = new TfjsBackend(tfDefault);
    defaultBackends.set(engine, b);
  }
  return b;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';

/** An `async` function or arrow, or an async generator function (native, not transpiled): its body runs after the op has returned. */
const isAsyncFunction = (f: unknown): boolean =>
  typeof f === 'function' && (Object.prototype.toString.call(f) === '[object AsyncFunction]' || Object.prototype.toString.call(f) === '[object AsyncGeneratorFunction]');

function isTfTensor(v: unknown): v is tfc.Tensor {
  return typeof v === 'object' && v !== null && 'dataId' in v && 'shape' in v && 'dtype' in v;
}

function checkFloat32(what: string, v: unknown, expected: string): tfc.Tensor {
  if (!isTfTensor(v)) throw new ShapeError(what, `${expected} (a tf.Tensor)`, v === null ? 'null' : typeof v);
  if (v.dtype !== 'float32') throw new DTypeError(what, 'float32', v.dtype);
  // Before any tf op reads it: tfjs's own error for a disposed tensor is an untyped TypeError.
  if (v.isDisposed) throw new TensorStateError(`deerRnn: ${what} was disposed`);
  return v;
}

/** Shape and dtype checks with deerjs's typed errors, before any tf op sees the inputs. */
function checkInputs(cell: Cell, params: Readonly<Record<string, tfc.Tensor>>, x: unknown, h0: unknown) {
  const n = cell.stateSize;
  const m = cell.inputSize;
  const xs = checkFloat32('x', x, `[B, T, ${m}]`);
  if (xs.rank !== 3 || xs.shape[2] !== m || xs.shape[0]! < 1 || xs.shape[1]! < 1) {
    throw new ShapeError(
      'x',
      `[B ≥ 1, T ≥ 1, ${m}] (batch, time, input size of ${cell.name})`,
      fmt(xs.shape),
    );
  }
  const B = xs.shape[0]!;
  if (h0 !== undefined) {
    const h = checkFloat32('h0', h0, `[${B}, ${n}] or [${n}]`);
    const ok = (h.rank === 2 && h.shape[0] === B && h.shape[1] === n) || (h.rank === 1 && h.shape[0] === n);
    if (!ok) throw new ShapeError('h0', `[${B}, ${n}] or [${n}]`, fmt(h.shape));
  }
  checkParamNames(cell, params);
  for (const spec of cell.params) {
    const v = params[spec.name];
    if (v === undefined) throw new ShapeError(`params.${spec.name}`, fmt(spec.shape), 'nothing (missing)');
    const p = checkFloat32(`params.${spec.name}`, v, fmt(spec.shape));
    const same = p.rank === spec.shape.length && p.shape.every((d, i) => d === spec.shape[i]);
    if (!same && !(p.rank === 1 && p.size === spec.size)) {
      throw new ShapeError(`params.${spec.name}`, `${fmt(spec.shape)} or [${spec.size}]`, fmt(p.shape));
    }
  }
}

/**
 * The first NaN/±Inf among the named inputs as a NonFiniteError: a flag reduced on the device (one
 * scalar read), and only where it is set the inputs read in turn to name the entry.
 */
function checkFiniteInputs(tf: typeof tfc, named: readonly (readonly [string, tfc.Tensor])[]): void {
  const flag = tf.tidy(() => tf.any(tf.stack(named.map(([, t]) => tf.any(tf.logicalNot(tf.isFinite(t)))))));
  const any = flag.dataSync()[0];
  flag.dispose();
  if (!any) return;
  for (const [what, t] of named) {
    const d = t.dataSync();
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) throw new NonFiniteError(what, i, d[i]!);
  }
}

/**
 * The cell's recurrence over x [B, T, m] from h0 ([B, n] or [n], default zeros), evaluated by DEER;
 * returns y [B, T, n]. Differentiable in x, h0 and every param: the gradient is DEER's reverse
 * scan (implicit differentiation at the solution), so tf.variableGrads and tf.train optimizers work.
 * Params are tf.Tensors (or tf.Variables) of the cell's param shapes (or flat).
 */
export function deerRnn(
  cell: Cell,
  params: Readonly<Record<string, tfc.Tensor>>,
  x: tfc.Tensor3D,
  h0?: tfc.Tensor2D | tfc.Tensor1D,
  options: DeerRnnOptions = {},
): tfc.Tensor3D {
  checkCell('cell', cell);
  // Names outside the op's options would reach the solver and be ignored by the gradient (h0, for
  // one, is the op's fourth argument): refused, as core refuses unknown names.
  checkOptionNames(options, OPTION_NAMES, 'deerRnn');
  checkInputs(cell, params, x, h0);
  if (options.backend !== undefined && !(options.backend instanceof TfjsBackend))
    throw new InvalidArgumentError('backend', 'a TfjsBackend (createTfjsBackend()) or nothing', describeValue(options.backend));
  if (options.onStats !== undefined && typeof options.onStats !== 'function')
    throw new InvalidArgumentError('onStats', 'a function', describeValue(options.onStats));
  // The op is synchronous (tf.customGrad): it cannot wait for a promise, and a rejected one had
  // been an unhandled rejection that ended the process. Refused as deerSync refuses an async onIteration.
  if (isAsyncFunction(options.onStats))
    throw new UnsupportedOptionError('onStats', 'an async function', 'a synchronous function (deerRnn cannot wait for a promise)');
  const backend = options.backend ?? defaultBackend();
  const tf = backend.tf;
  const names = cell.params.map((p) => p.name);
  const B = x.shape[0];
  const n = cell.stateSize;
  const hasH0 = h0 !== undefined;
  const inputs: tfc.Tensor[] = [x, ...(hasH0 ? [h0] : []), ...names.map((k) => params[k]!)];
  const checkFinite = flag('checkFinite', options.checkFinite, true);

  // Borrowed wrappers around the op's inputs: x, y0 and the params, as the solver wants them.
  const wrapAll = (ins: readonly tfc.Tensor[]) => {
    const xw = backend.wrap(ins[0]!);
    const h = hasH0 ? ins[1]! : null;
    const y0t = h === null ? tf.zeros([B, n]) : h.rank === 1 ? tf.broadcastTo(h, [B, n]) : h;
    const y0 = backend.wrap(y0t, y0t !== h);
    const off = hasH0 ? 2 : 1;
    const ps: Record<string, Tensor> = {};
    names.forEach((k, i) => {
      ps[k] = backend.wrap(ins[off + i]!);
    });
    const release = () => {
      backend.dispose(xw);
      backend.dispose(y0);
      for (const p of Object.values(ps)) backend.dispose(p);
    };
    return { x: xw, y0, params: ps, release };
  };

  // As the forward solve saw them: the gradient must not follow later edits of the caller's object.
  const window = options.window;
  // Copied as an array: anything else (a tf.Tensor, say) had been copied as no lengths at all.
  const given: unknown = options.lengths;
  if (given !== undefined && !Array.isArray(given) && !(ArrayBuffer.isView(given) && !(given instanceof DataView)))
    throw new InvalidArgumentError('lengths', `an array of ${B} sequence lengths (numbers, not a tensor)`, describeValue(given));
  const lengths = options.lengths === undefined ? undefined : Array.from(options.lengths);
  const op = tf.customGrad((...args: unknown[]) => {
    const save = args.pop() as tfc.GradSaveFunc;
    const ins = args as tfc.Tensor[];
    // Inside the op's forward function tfjs records no gradient tape: checked outside, under
    // tf.variableGrads or optimizer.minimize, the check's own ops kept their inputs for a backward
    // pass that a NonFiniteError then never ran (5 tensors left per throw for a GRU).
    if (checkFinite) {
      const named = ['x', ...(hasH0 ? ['h0'] : []), ...names.map((k) => `params.${k}`)];
      checkFiniteInputs(tf, ins.map((t, i) => [named[i]!, t] as const));
    }
    const w = wrapAll(ins);
    let y: tfc.Tensor;
    try {
      const { backend: _, checkFinite: __, onStats: ___, ...rest } = options;
      const solverOptions = lengths === undefined ? rest : { ...rest, lengths };
      const solved = deerSync(backend, cell, w.params, w.x, w.y0, solverOptions);
      y = backend.release(solved.y);
      try {
        const reported: unknown = options.onStats?.(solved.stats);
        if (isThenable(reported)) {
          // Handled here, so that its rejection cannot end the process; the op cannot wait for it.
          Promise.resolve(reported).catch(() => {});
          throw new UnsupportedOptionError('onStats', 'a function returning a promise', 'a synchronous function (deerRnn cannot wait for a promise)');
        }
      } catch (err) {
        y.dispose();
        throw err;
      }
    } finally {
      w.release();
    }
    // The inputs are saved too, so the backward pass does not depend on the caller keeping them.
    save([y, ...ins]);
    return {
      value: y,
      gradFunc: (dy: tfc.Tensor | tfc.Tensor[], saved: tfc.Tensor[]) => {
        const kept = saved.slice(1);
        const g = wrapAll(kept);
        const yw = backend.wrap(saved[0]!);
        const dyw = backend.wrap(Array.isArray(dy) ? dy[0]! : dy);
        try {
          const grads = implicitVjpSync(backend, cell, g.params, g.x, g.y0, yw, dyw, window, lengths);
          const out: tfc.Tensor[] = [backend.release(grads.x)];
          if (hasH0) {
            const dh0 = backend.release(grads.h0);
            out.push(kept[1]!.rank === 1 ? tf.tidy(() => tf.sum(dh0, 0)) : dh0);
            if (kept[1]!.rank === 1) dh0.dispose();
          } else backend.dispose(grads.h0);
          names.forEach((k, i) => {
            const flat = backend.release(grads.params[k]!);
            const shaped = tf.reshape(flat, kept[(hasH0 ? 2 : 1) + i]!.shape);
            flat.dispose();
            out.push(shaped);
          });
          return out;
        } finally {
          backend.dispose(yw);
          backend.dispose(dyw);
          g.release();
        }
      },
    };
  });
  return op(...inputs) as tfc.Tensor3D;
}
