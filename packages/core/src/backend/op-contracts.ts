import { DTypeError, ShapeError } from '../errors.js';
import { checkDampedScan, checkReshape, checkRows, checkTensorData, checkTensorShape } from './arg-checks.js';
import type { StepProgram } from './program.js';
import type { DampedScanArgs, DeerStepInputs, NewtonUpdateOptions, ScanArgs, StepInputs, Tensor } from './types.js';

/**
 * The Backend interface's argument contracts (backend/types.ts), checked the same way for every
 * backend before it does anything: a bad argument is a ShapeError (or, for `tensor`'s data, an
 * InvalidArgumentError), never a hang (a block size of 0 looped for ever), an untyped error from
 * inside an engine, a half-written device command, a tensor counted but never made, or an answer
 * made of whatever the buffers held. `guardOpArgs` wraps a backend's methods with them.
 */

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

function rank(op: string, what: string, t: Tensor, r: number, form: string): void {
  if (t.shape.length !== r) throw new ShapeError(`${op} ${what}`, form, fmt(t.shape));
}

function same(op: string, what: string, t: Tensor, want: readonly number[]): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
    throw new ShapeError(`${op} ${what}`, fmt(want), fmt(t.shape));
}

/** Tensors combined entry by entry share one dtype (cpu had added float32 to float64). */
function sameDType(op: string, ...ts: Tensor[]): void {
  const [first, ...rest] = ts as [Tensor, ...Tensor[]];
  for (const t of rest) if (t.dtype !== first.dtype) throw new DTypeError(op, `${first.dtype} (as the first operand)`, t.dtype);
}

/** s: an integer ≥ 1 dividing n. */
function blockSize(op: string, s: unknown, n: number): asserts s is number {
  if (typeof s !== 'number' || !Number.isInteger(s) || s < 1 || n % s !== 0)
    throw new ShapeError(`${op} blockSize`, `an integer ≥ 1 dividing the state size ${n}`, String(s));
}

/** a: [B, T, n/s, s, s]. */
function blocks(op: string, what: string, a: Tensor, B: number, T: number, n: number, s: number): void {
  same(op, what, a, [B, T, n / s, s, s]);
}

/** [B, T, n] of a [B, T, n/s, s, s] transition tensor, with its block size checked. */
function blockDims(op: string, a: Tensor, s: unknown): [number, number, number] {
  rank(op, 'transitions', a, 5, '[B, T, n/s, s, s]');
  const [B, T, k, s1, s2] = a.shape as [number, number, number, number, number];
  blockSize(op, s, s1 * k);
  if (s1 !== s || s2 !== s) throw new ShapeError(`${op} transitions`, `[${B}, ${T}, n/${s}, ${s}, ${s}]`, fmt(a.shape));
  return [B, T, k * s];
}

function scanArgs(op: string, args: ScanArgs): void {
  rank(op, 'c', args.c, 3, '[B, T, n]');
  const [B, T, n] = args.c.shape as [number, number, number];
  blockSize(op, args.blockSize, n);
  blocks(op, 'A', args.A, B, T, n, args.blockSize);
  same(op, 'y0', args.y0, [B, n]);
}

function updateArgs(op: string, yRaw: Tensor, yOld: Tensor, opts: NewtonUpdateOptions): void {
  same(op, 'yOld', yOld, yRaw.shape);
  const B = yRaw.shape[0] ?? 1;
  for (const k of ['atol', 'rtol'] as const)
    if (!(opts[k] >= 0) || opts[k] === Number.POSITIVE_INFINITY) throw new ShapeError(`${op} ${k}`, 'a finite number ≥ 0', String(opts[k]));
  if (!(opts.clip > 0)) throw new ShapeError(`${op} clip`, 'a number > 0 (Infinity: no clipping)', String(opts.clip));
  if (opts.active !== undefined && opts.active.length !== B)
    throw new ShapeError(`${op} active`, `${B} entries (one per batch row)`, String(opts.active.length));
}

/** [B, T, ...rest] of a tensor with a time axis. */
function timed(op: string, what: string, x: Tensor): [number, number] {
  if (x.shape.length < 2) throw new ShapeError(`${op} ${what}`, '[B, T, ...]', fmt(x.shape));
  return [x.shape[0]!, x.shape[1]!];
}

function index(op: string, what: string, v: unknown, below: number): void {
  if (!isCount(v) || v >= below) throw new ShapeError(`${op} ${what}`, `an integer in [0, ${below})`, String(v));
}

/** The inputs a step program reads, each present with its shape, and every parameter with its size. */
function stepArgs(op: string, program: StepProgram, B: number, T: number | undefined, inputs: Partial<StepInputs>): void {
  const g = program.graph;
  const reads = (kind: 'input' | 'cotangent') => g.nodes.find((nd) => nd.op === kind)?.size;
  const m = reads('input');
  if (m !== undefined) {
    if (!inputs.input) throw new ShapeError(`${op} input`, `a [B, T, ${m}] tensor (the program reads its input)`, 'none');
    if (T === undefined) rank(op, 'input', inputs.input, 3, `[${B}, T, ${m}]`);
    same(op, 'input', inputs.input, [B, T ?? inputs.input.shape[1]!, m]);
  }
  const k = reads('cotangent');
  if (k !== undefined) {
    if (!inputs.cotangent) throw new ShapeError(`${op} cotangent`, `a [B, T, ${k}] tensor (the program reads it)`, 'none');
    same(op, 'cotangent', inputs.cotangent, [B, T ?? 0, k]);
  }
  const params = inputs.params ?? {};
  for (const spec of g.params) {
    const t = params[spec.name];
    if (!t) throw new ShapeError(`${op} params.${spec.name}`, `a tensor of ${spec.size} values`, 'none');
    if (t.size !== spec.size) throw new ShapeError(`${op} params.${spec.name}`, `${spec.size} values`, `${t.size} (${fmt(t.shape)})`);
  }
}

type Check = (op: string, args: readonly unknown[]) => void;

const newtonUpdateArgs: Check = (op, [yRaw, yOld, opts]) =>
  updateArgs(op, yRaw as Tensor, yOld as Tensor, opts as NewtonUpdateOptions);

const scanUpdateArgs: Check = (op, [args, yOld, opts]) => {
  scanArgs(op, args as ScanArgs);
  updateArgs(op, (args as ScanArgs).c, yOld as Tensor, opts as NewtonUpdateOptions);
};
const T = (v: unknown) => v as Tensor;

/** Per Backend method, its argument checks (methods not listed have their own, or take none). */
const CHECKS: Readonly<Record<string, Check>> = {
  // What a new tensor is made of, before anything is allocated or counted.
  tensor: (op, [data, shape]) => checkTensorData(data, shape, op),
  zeros: (op, [shape]) => void checkTensorShape(shape, op),
  runStep: (op, [program, inputs]) => {
    const p = program as StepProgram;
    const i = inputs as StepInputs;
    const n = p.graph.stateSize;
    rank(op, 'state', i.state, 3, `[B, T, ${n}]`);
    const [B, Tn] = i.state.shape as [number, number];
    same(op, 'state', i.state, [B, Tn, n]);
    stepArgs(op, p, B, Tn, i);
  },
  runSequential: (op, [program, inputs]) => {
    const p = program as StepProgram;
    const i = inputs as { input?: Tensor; y0: Tensor; params: Readonly<Record<string, Tensor>> };
    const n = p.graph.stateSize;
    rank(op, 'y0', i.y0, 2, `[B, ${n}]`);
    same(op, 'y0', i.y0, [i.y0.shape[0]!, n]);
    stepArgs(op, p, i.y0.shape[0]!, undefined, i);
  },
  // The fused step copied what it was given: a short input or y0 left the previous call's values
  // in the missing rows and steps, an `active` of one entry held every other row.
  deerStep: (op, [program, inputs, previous, opts]) => {
    const p = program as StepProgram;
    const i = inputs as DeerStepInputs;
    const prev = previous as Tensor;
    const n = p.graph.stateSize;
    rank(op, 'previous', prev, 3, `[B, T, ${n}]`);
    const [B, Tn] = prev.shape as [number, number];
    same(op, 'previous', prev, [B, Tn, n]);
    same(op, 'y0', i.y0, [B, n]);
    stepArgs(op, p, B, Tn, { input: i.input, params: i.params, cotangent: prev });
    updateArgs(op, prev, prev, opts as NewtonUpdateOptions);
  },
  scan: (op, [args]) => scanArgs(op, args as ScanArgs),
  scanUpdate: scanUpdateArgs,
  scanUpdateUnread: scanUpdateArgs,
  newtonUpdate: newtonUpdateArgs,
  newtonUpdateSync: newtonUpdateArgs,
  dampedScan: (_op, [args]) => {
    const a = args as DampedScanArgs;
    checkDampedScan(a, a.A.shape, a.c.shape);
  },
  reshape: (_op, [x, shape]) => checkReshape(T(x).shape, shape as readonly number[]),
  gatherRows: (op, [x, rows]) => checkRows(op as 'gatherRows', rows as readonly number[], T(x).shape[0] ?? 0),
  affineOffset: (op, [F, A, y, s]) => {
    rank(op, 'F', T(F), 3, '[B, T, n]');
    const [B, Tn, n] = T(F).shape as [number, number, number];
    blockSize(op, s, n);
    blocks(op, 'A', T(A), B, Tn, n, s);
    same(op, 'y', T(y), [B, Tn, n]);
  },
  capTransitions: (op, [a, s, caps]) => {
    const [B] = blockDims(op, T(a), s);
    const c = caps as ArrayLike<number>;
    if (c?.length !== B) throw new ShapeError(`${op} caps`, `${B} values (one per batch row)`, String(c?.length));
    for (let b = 0; b < B; b++) if (Number.isNaN(c[b])) throw new ShapeError(`${op} caps[${b}]`, 'a number (< 0: leave the row as it is)', 'NaN');
  },
  blockMatmul: (op, [a, b, s]) => {
    blockDims(op, T(a), s);
    same(op, 'b', T(b), T(a).shape);
  },
  blockMatvec: (op, [a, v, s]) => {
    const [B, Tn, n] = blockDims(op, T(a), s);
    same(op, 'v', T(v), [B, Tn, n]);
  },
  addIdentity: (op, [a, s, alpha]) => {
    blockDims(op, T(a), s);
    if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new ShapeError(`${op} alpha`, 'a finite number', String(alpha));
  },
  add: (op, [a, b]) => {
    same(op, 'b', T(b), T(a).shape);
    sameDType(op, T(a), T(b));
  },
  sub: (op, [a, b]) => {
    same(op, 'b', T(b), T(a).shape);
    sameDType(op, T(a), T(b));
  },
  scatterRows: (op, [into, rows, src]) => {
    const rs = rows as readonly number[];
    same(op, 'src', T(src), [rs.length, ...T(into).shape.slice(1)]);
    sameDType(op, T(into), T(src));
    checkRows(op as 'scatterRows', rs, T(into).shape[0] ?? 0);
  },
  shiftTime: (op, [x, fill, dir]) => {
    timed(op, 'x', T(x));
    if (dir !== 1 && dir !== -1) throw new ShapeError(`${op} dir`, '1 or -1', String(dir));
    if (fill !== null && fill !== undefined) same(op, 'fill', T(fill), [T(x).shape[0]!, ...T(x).shape.slice(2)]);
  },
  broadcastTime: (op, [x, steps]) => {
    if (T(x).shape.length < 1) throw new ShapeError(`${op} x`, '[B, ...]', fmt(T(x).shape));
    if (!isCount(steps)) throw new ShapeError(`${op} T`, 'an integer ≥ 0', String(steps));
  },
  sliceTime: (op, [x, start, length]) => {
    const [, Tn] = timed(op, 'x', T(x));
    if (!isCount(start) || !isCount(length) || length < 1 || start + length > Tn)
      throw new ShapeError(`${op} range`, `integers start ≥ 0, length ≥ 1 with start + length ≤ ${Tn}`, `${String(start)}, ${String(length)}`);
  },
  concatTime: (op, [parts]) => {
    const ps = parts as readonly Tensor[];
    if (!Array.isArray(ps) || ps.length === 0) throw new ShapeError(op, 'at least one tensor', 'none');
    const [first] = ps as [Tensor];
    timed(op, 'parts[0]', first);
    ps.forEach((p, k) => {
      timed(op, `parts[${k}]`, p);
      same(op, `parts[${k}]`, p, [first.shape[0]!, p.shape[1]!, ...first.shape.slice(2)]);
    });
  },
  timeStep: (op, [x, t]) => index(op, 't', t, timed(op, 'x', T(x))[1]),
  maskTime: (op, [x, lengths]) => {
    const [B] = timed(op, 'x', T(x));
    const ls = lengths as ArrayLike<number>;
    if (ls?.length !== B) throw new ShapeError(`${op} lengths`, `${B} values (one per batch row)`, String(ls?.length));
    for (let b = 0; b < B; b++) if (!isCount(ls[b])) throw new ShapeError(`${op} lengths[${b}]`, 'an integer ≥ 0', String(ls[b]));
  },
  sumBatchTime: (op, [x]) => void timed(op, 'x', T(x)),
  outerSum: (op, [left, right, k]) => {
    const [B, Tn] = timed(op, 'left', T(left));
    rank(op, 'left', T(left), 3, '[B, T, k·r]');
    rank(op, 'right', T(right), 3, '[B, T, k·c]');
    if (T(right).shape[0] !== B || T(right).shape[1] !== Tn) throw new ShapeError(`${op} right`, `[${B}, ${Tn}, k·c]`, fmt(T(right).shape));
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || T(left).shape[2]! % k !== 0 || T(right).shape[2]! % k !== 0)
      throw new ShapeError(`${op} blocks`, `an integer ≥ 1 dividing ${T(left).shape[2]} and ${T(right).shape[2]}`, String(k));
  },
  scaleTime: (op, [x, h, alpha]) => {
    const [, Tn] = timed(op, 'x', T(x));
    const hs = h as ArrayLike<number>;
    if (hs?.length !== Tn) throw new ShapeError(`${op} h`, `${Tn} values (one per time step)`, String(hs?.length));
    if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new ShapeError(`${op} alpha`, 'a finite number', String(alpha));
  },
};

/** The Backend methods whose arguments `checkOpArgs` checks. */
export const CHECKED_OPS: readonly string[] = Object.keys(CHECKS);

/** Check the arguments of a call of Backend method `op` (a ShapeError for a bad one; `tensor`'s data, an InvalidArgumentError). */
export function checkOpArgs(op: string, args: readonly unknown[]): void {
  try {
    CHECKS[op]?.(op, args);
  } catch (err) {
    // Reading the shape of something that is not a tensor: the backend's own check names it
    // (a TensorStateError), as it does for a disposed or foreign tensor.
    if (err instanceof TypeError) return;
    throw err;
  }
}

/**
 * Call `fn` on every tensor among `args`, looking `depth` levels into arrays and plain objects (a
 * ScanArgs, a step's inputs and params): how a backend checks that they are alive and its own
 * before the contracts read their shapes.
 */
export function forEachTensor(v: unknown, depth: number, fn: (t: Tensor) => void): void {
  if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return;
  const maybe = v as Partial<Tensor>;
  if (Array.isArray(maybe.shape) && typeof maybe.backendName === 'string') {
    fn(v as Tensor);
    return;
  }
  if (depth === 0) return;
  if (Array.isArray(v)) {
    for (const x of v) forEachTensor(x, depth - 1, fn);
    return;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) for (const x of Object.values(v)) forEachTensor(x, depth - 1, fn);
}

/**
 * Wrap `backend`'s own methods in CHECKED_OPS (on the instance, so a subclass's overrides are
 * wrapped too) so that each checks its arguments first, after `before` (a backend's own state
 * checks, e.g. `forEachTensor(args, 3, t => own(t))`: a destroyed backend, or a disposed or foreign
 * tensor, is a TensorStateError whatever the shapes, as on every backend). Asynchronous methods reject instead
 * of throwing. Backend constructors call it.
 */
export function guardOpArgs(backend: object, before?: (args: readonly unknown[]) => void): void {
  const self = backend as Record<string, unknown>;
  for (const op of CHECKED_OPS) {
    const method = self[op];
    if (typeof method !== 'function') continue;
    const async = op === 'newtonUpdate' || op === 'scanUpdate';
    const checked = (...args: unknown[]) => {
      if (async) {
        try {
          before?.(args);
          checkOpArgs(op, args);
        } catch (err) {
          return Promise.reject(err);
        }
      } else {
        before?.(args);
        checkOpArgs(op, args);
      }
      return (method as (...a: unknown[]) => unknown).apply(backend, args);
    };
    Object.defineProperty(backend, op, { value: checked, writable: true, configurable: true });
  }
}
