import { describeValue, InvalidArgumentError, ShapeError } from '../errors.js';
import type { Tensor } from './types.js';

/**
 * Argument checks of the op contracts (op-contracts.ts) that take more than a shape comparison;
 * exported for backends written outside this repository that do not use `guardOpArgs`.
 */

/** Whether `v` is a Tensor of any backend (by its fields, not its class, so a second copy of core still works). */
export function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && 'backendName' in v && 'shape' in v && 'dtype' in v;
}

/**
 * Where a backend's own check of a tensor argument begins: what is no tensor at all (null, a number,
 * a plain object) is a wrong argument; another backend's tensor is a wrong state, the backend's to say.
 */
export function checkIsTensor(backend: string, t: unknown): asserts t is Tensor {
  if (!isTensor(t)) throw new InvalidArgumentError(`${backend}: tensor`, 'a Tensor made by backend.tensor()', describeValue(t));
}

/** A reshape keeps the number of entries; every extent a non-negative integer. */
export function checkReshape(from: readonly number[], to: readonly number[]): void {
  const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  if (!to.every((d) => Number.isInteger(d) && d >= 0) || size(to) !== size(from)) {
    throw new ShapeError('reshape', `a shape of ${size(from)} entries ([${from.join(', ')}])`, `[${to.join(', ')}]`);
  }
}

/**
 * Shapes and λ of a damped scan, checked the same way by every backend. Returns the block size s
 * of its transitions ([B, T, n/s, s, s]).
 */
export function checkDampedScan(
  args: { readonly lambda: ArrayLike<number> },
  aShape: readonly number[],
  cShape: readonly number[],
): number {
  const [B, T, n] = cShape as [number, number, number];
  const s = aShape[3] ?? 0;
  const want = `[${B}, ${T}, ${n} / s, s, s] (s × s blocks, s dividing ${n})`;
  if (
    aShape.length !== 5 ||
    aShape[0] !== B ||
    aShape[1] !== T ||
    !(s >= 1) ||
    aShape[4] !== s ||
    aShape[2]! * s !== n
  ) {
    throw new ShapeError('dampedScan A', want, `[${aShape.join(', ')}]`);
  }
  if (args.lambda.length !== B) throw new ShapeError('dampedScan lambda', `${B} values`, `${args.lambda.length}`);
  for (let b = 0; b < B; b++) {
    const l = args.lambda[b]!;
    if (!(l >= 0) || !Number.isFinite(l)) throw new ShapeError(`dampedScan lambda[${b}]`, 'a finite λ ≥ 0', String(l));
  }
  return s;
}

/**
 * Batch-row indices for `gatherRows` / `scatterRows`: integers in [0, B). A scatter's rows are also
 * distinct — two source rows written to one destination row would leave it to whichever write lands
 * last, which differs between backends (and between runs on a GPU).
 */
export function checkRows(op: 'gatherRows' | 'scatterRows', rows: readonly number[], B: number): void {
  const seen = op === 'scatterRows' ? new Uint8Array(B) : undefined;
  for (const r of rows) {
    if (!Number.isInteger(r) || r < 0 || r >= B) throw new ShapeError(op, `rows in [0, ${B})`, String(r));
    if (seen) {
      if (seen[r]) throw new ShapeError(op, 'distinct rows', `row ${r} listed twice`);
      seen[r] = 1;
    }
  }
}

/** The typed arrays whose entries read as numbers (BigInt64Array and BigUint64Array hold bigints). */
const NUMERIC_ARRAYS = new Set([
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float16Array',
  'Float32Array',
  'Float64Array',
]);

/** A new tensor's shape: a list of non-negative integer extents (an array or a numeric typed array). Returns them. */
export function checkTensorShape(shape: unknown, op = 'tensor'): number[] {
  const list = Array.isArray(shape) || (ArrayBuffer.isView(shape) && NUMERIC_ARRAYS.has(tagOf(shape)));
  const dims = list ? Array.from(shape as ArrayLike<unknown>) : undefined;
  if (!dims?.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    const got = dims ? `[${dims.map((d) => describeValue(d)).join(', ')}]` : describeValue(shape);
    throw new ShapeError(op, 'non-negative integer dims', got);
  }
  return dims as number[];
}

/**
 * `tensor(data, shape)`'s arguments, checked alike on every backend before anything is allocated or
 * counted: the shape as `checkTensorShape`; data an array or a numeric typed array (or another
 * array-like) of numbers — NaN and ±Infinity included, a tensor may hold them — else an
 * InvalidArgumentError naming what came (a BigInt64Array, a string, null, an object, an entry that
 * is not a number: each had been a TypeError from inside a backend, or NaN entries made in
 * silence); and exactly as many values as the shape holds, else a ShapeError.
 */
export function checkTensorData(data: unknown, shape: unknown, op = 'tensor'): void {
  const dims = checkTensorShape(shape, op);
  const want = 'an array or typed array of numbers';
  if (typeof data !== 'object' || data === null) throw new InvalidArgumentError(`${op} data`, want, describeValue(data));
  const view = ArrayBuffer.isView(data);
  if (view && !NUMERIC_ARRAYS.has(tagOf(data))) {
    const n = (data as { length?: unknown }).length;
    throw new InvalidArgumentError(`${op} data`, want, `a ${tagOf(data) || 'view'}${typeof n === 'number' ? ` of ${n} values` : ''}`);
  }
  const length = (data as { length?: unknown }).length;
  if (!view && !(typeof length === 'number' && Number.isSafeInteger(length) && length >= 0))
    throw new InvalidArgumentError(`${op} data`, want, `${describeValue(data)} (not an array)`);
  const size = dims.reduce((a, b) => a * b, 1);
  if (length !== size) throw new ShapeError(op, `${size} values for [${dims.join(', ')}]`, `${String(length)} values`);
  if (view) return;
  const values = data as ArrayLike<unknown>;
  for (let i = 0; i < size; i++) {
    const v = values[i];
    if (typeof v !== 'number') throw new InvalidArgumentError(`${op} data[${i}]`, `a number (${want})`, describeValue(v));
  }
}

/** A typed array's kind ('Float32Array', 'BigInt64Array'; '' for anything else). */
function tagOf(v: object): string {
  const tag = (v as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag];
  return typeof tag === 'string' ? tag : '';
}
