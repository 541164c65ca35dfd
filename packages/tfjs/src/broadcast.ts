import type { BinaryFn } from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import { hostBinary } from './host.js';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/**
 * A step vector: [rows, size] when it varies per (batch, time) element, [size] when it does not.
 *
 * The layout follows what tfjs's cpu kernels do fast: an elementwise op whose operands have the same
 * shape, or whose smaller operand is a suffix of the other's shape with no size-1 axis ([size]
 * against [rows, size]), runs a flat loop; any other broadcast ([1, size], [rows, 1]) goes through
 * per-element index arithmetic, about ten times slower.
 */
export interface Vec {
  readonly t: T;
  readonly perElement: boolean;
  readonly size: number;
  /** Set when every entry is this number (a constant such as the zeros a VJP pads with). */
  readonly uniform?: number;
}

const sameShape = (a: T, b: T) => a.rank === b.rank && a.shape.every((d, i) => d === b.shape[i]);

/**
 * a + b. Operands of one shape go through AddN: tfjs cpu's Add (like every binary kernel) takes
 * each operand's index modulo its length per entry, several times slower than AddN's plain loop.
 * The sum is the same value (0 + a + b: only the sign of a zero sum can differ).
 */
export function add2(tf: Tf, a: T, b: T): T {
  return sameShape(a, b) ? tf.addN([a, b]) : tf.add(a, b);
}

const BINARY: Record<BinaryFn, (tf: Tf, a: T, b: T) => T> = {
  add: add2,
  sub: (tf, a, b) => tf.sub(a, b),
  mul: (tf, a, b) => tf.mul(a, b),
  div: (tf, a, b) => tf.div(a, b),
  min: (tf, a, b) => keepNaN(tf, tf.minimum(a, b), a, b),
  max: (tf, a, b) => keepNaN(tf, tf.maximum(a, b), a, b),
};

/**
 * `out` with NaN wherever an operand is NaN, as in every evaluator: tfjs's sign(NaN) is 0, and so
 * are the wasm engine's relu(NaN) and min(0, NaN).
 */
export function keepNaN(tf: Tf, out: T, a: T, b?: T): T {
  const nan = b ? tf.logicalOr(tf.isNaN(a), tf.isNaN(b)) : tf.isNaN(a);
  return tf.where(nan, b ? tf.add(a, b) : a, out);
}

/** A size-1 vector brought to `size` entries per element: a scalar when constant, else a copy. */
function widen(tf: Tf, v: Vec, size: number, rows: number): T {
  if (v.size === size) return v.t;
  if (!v.perElement) return tf.reshape(v.t, []);
  return tf.broadcastTo(v.t, [rows, size]);
}

/**
 * The operand an op with a uniform constant leaves as it is: x + 0, 0 + x, x − 0, x·1, 1·x, x/1
 * (x + 0 turns −0 into +0; skipping it keeps −0, an equal value).
 */
function identityOperand(fn: BinaryFn, a: Vec, b: Vec): Vec | undefined {
  const size = Math.max(a.size, b.size);
  const keeps = (x: Vec) => x.size === size;
  if ((fn === 'add' || fn === 'sub') && b.uniform === 0 && keeps(a)) return a;
  if (fn === 'add' && a.uniform === 0 && keeps(b)) return b;
  if ((fn === 'mul' || fn === 'div') && b.uniform === 1 && keeps(a)) return a;
  if (fn === 'mul' && a.uniform === 1 && keeps(b)) return b;
  return undefined;
}

/**
 * An elementwise binary op of two step vectors (a size-1 operand broadcasts); with `host`, as a
 * loop over the data (see `hostBinary`).
 */
export function binaryVec(tf: Tf, fn: BinaryFn, a: Vec, b: Vec, rows: number, host = false): Vec {
  const same = identityOperand(fn, a, b);
  if (same) return same;
  const size = Math.max(a.size, b.size);
  if (host) return { t: hostBinary(tf, fn, a, b, rows), perElement: a.perElement || b.perElement, size };
  const t = BINARY[fn](tf, widen(tf, a, size, rows), widen(tf, b, size, rows));
  return { t, perElement: a.perElement || b.perElement, size };
}

/**
 * The sum of several step vectors: the per-element ones of full size in one AddN, then the others
 * (constants, [size] vectors, size-1 ones) added one by one as `binaryVec` adds them.
 */
export function sumVecs(tf: Tf, terms: readonly Vec[], rows: number, host = false): Vec {
  const size = Math.max(...terms.map((v) => v.size));
  const full = terms.filter((v) => v.perElement && v.size === size);
  let acc: Vec | null = full.length > 1 ? { t: tf.addN(full.map((v) => v.t)), perElement: true, size } : null;
  for (const v of terms) {
    if (acc && full.length > 1 && full.includes(v)) continue;
    acc = acc ? binaryVec(tf, 'add', acc, v, rows, host) : v;
  }
  return acc!;
}

/** A constant [size] vector as [rows, size] (a multiply by ones keeps every value, −0 included). */
export function expandRows(tf: Tf, t: T, rows: number): T {
  return tf.mul(tf.ones([rows, t.size]), tf.reshape(t, [t.size]));
}

/** The vector as a [rows, size] or [1, size] matrix. */
export function asRows(tf: Tf, v: Vec): T {
  return v.perElement ? v.t : tf.reshape(v.t, [1, v.size]);
}

/**
 * Columns [start, start + size) of a [rows, k] tensor: by gather where Slice copies strided ranges
 * entry by entry through index objects (tfjs cpu, ~0.4 µs an entry; its Gather is ~4× faster).
 */
export function cutColumns(tf: Tf, t: T, start: number, size: number, byGather: boolean): T {
  if (byGather) return tf.gather(t, tf.range(start, start + size, 1, 'int32'), 1);
  return tf.slice(t, [0, start], [-1, size]);
}
