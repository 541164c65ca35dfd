import type * as tfc from '@tensorflow/tfjs-core';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/**
 * How the linear recurrence is ordered on tfjs. Every op costs a dispatch (tens of µs on the cpu and
 * wasm backends) and strided copies are slow there, so the parallel orders work time-major
 * ([T, E, ...]): slices along time are contiguous.
 * - 'oddeven': recursive odd-even reduction (Blelloch-style), ⌈log₂T⌉ levels of ~10 batched ops,
 *   O(T·s³) work in total.
 * - 'chunked': chunks of ~√T steps: a sequential pass inside the chunks (all chunks at once), an
 *   odd-even scan of the chunk summaries, a fix-up pass; ~4√T ops.
 * - 'sequential': T steps of a batched matvec (the reference order).
 * - 'auto': see `autoScan`.
 */
export type ScanMethod = 'auto' | 'oddeven' | 'chunked' | 'sequential';

export const SCAN_METHODS: readonly ScanMethod[] = ['auto', 'oddeven', 'chunked', 'sequential'];

/**
 * The parallel orders cost O(T·E·s³) arithmetic (E = B·n/s blocks per step), the sequential one
 * O(T·E·s²) plus, as ops, T dispatches (~0.2–0.5 ms a step on wasm). Where data lives in host
 * memory (tfjs cpu and wasm) the sequential order is one host loop with no dispatches, and it wins
 * throughout: on tfjs cpu, multi-head GRU n = 32, s = 8, B = 16, T = 784: 30–34 ms vs 0.22 s
 * chunked, 0.37 s odd-even; GRU n = 32, s = 32, B = 4, T = 17 984: 0.74 s vs 7.1 s chunked; on
 * wasm, whole DEER solves 1.8–3.9× faster than with odd-even or dispatched steps. Elsewhere (as
 * measured on wasm before it had the host loop) the dispatched sequential order wins for short
 * sequences and once E·s³ passes ~6·10⁴ (GRU n = 32, B = 4: 0.6 s vs 1.1 s), odd-even below
 * (n = 8, B = 3, T = 10⁴: 0.46 s vs 2.0 s).
 */
export function autoScan(T: number, E: number, s: number, moves: DataMoves): ScanMethod {
  if (moves.hostData) return 'sequential';
  return T <= 64 || E * s * s * s > 65_536 ? 'sequential' : 'oddeven';
}

/** Products of per-element blocks [..., s, s] (s = 1: plain elementwise tensors). */
interface Ops {
  /** The composition "b, then a": a·b per element. */
  mm(a: T, b: T): T;
  /** a·v per element. */
  mv(a: T, v: T): T;
}

/**
 * For the reverse scan every block is used transposed. Products are stored untransposed, as the
 * transpose of what they stand for: (aᵀ bᵀ)ᵀ = b a, so no transpose op is ever needed.
 */
function blockOps(tf: Tf, s: number, transposed: boolean): Ops {
  if (s === 1) return { mm: (a, b) => tf.mul(a, b), mv: (a, v) => tf.mul(a, v) };
  const m3 = (x: T) => tf.reshape(x, [-1, s, s]);
  return {
    mm: (a, b) => tf.reshape(transposed ? tf.matMul(m3(b), m3(a)) : tf.matMul(m3(a), m3(b)), a.shape),
    mv: (a, v) => tf.reshape(tf.matMul(m3(a), tf.reshape(v, [-1, s, 1]), transposed), v.shape),
  };
}

/**
 * How the active tfjs engine moves data. tfjs's cpu kernels return slices along the leading axis
 * as views and concatenate by block copies, but transpose, reverse and gather entry by entry through
 * index arithmetic (0.05–0.5 µs an entry); wasm's Slice copies its whole input before cutting.
 */
export interface DataMoves {
  /** Leading-axis slices are free views (tfjs cpu): reorder by slices and one concat. */
  readonly viewSlices: boolean;
  /** Take per-step rows with one-row gathers (wasm: T slices of a [T, …] tensor cost O(T²)). */
  readonly gatherSteps: boolean;
  /**
   * Tensor data is a JavaScript typed array read without a copy (tfjs cpu): elementwise work of
   * step programs runs as loops over it with the tfjs kernels' own arithmetic.
   */
  readonly hostLoops?: boolean;
  /**
   * Data lives in host memory (tfjs cpu, and wasm, whose reads copy): sequential evaluation runs on
   * the host, step by step through core's `hostSequential` over one read of the inputs, instead
   * of T steps of a dozen or more dispatched ops each (~120 µs a step at n = 2 on tfjs cpu); the
   * scan is one loop over one read of A and c (`hostSequentialScan`), the damped scan and the
   * transition caps core's host loops; and step programs run on a host backend where one is given
   * (`hostKernels`).
   */
  readonly hostData?: boolean;
}

const prod = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** [d0, d1, ...rest] → [d1, d0, ...rest]. */
function swapLeading(tf: Tf, x: T, moves: DataMoves): T {
  const [d0, d1, ...rest] = x.shape as number[];
  if (d0 === 1 || d1 === 1) return tf.reshape(x, [d1!, d0!, ...rest]);
  const K = prod(rest);
  if (moves.viewSlices) {
    // The d0 rows [d1, K] side by side: views, then one copy.
    const rows = tf.reshape(x, [d0!, d1! * K]);
    const cols = Array.from({ length: d0! }, (_, i) => tf.reshape(tf.slice(rows, i, 1), [d1!, K]));
    return tf.reshape(tf.concat(cols, 1), [d1!, d0!, ...rest]);
  }
  return tf.reshape(tf.transpose(tf.reshape(x, [d0!, d1!, K]), [1, 0, 2]), [d1!, d0!, ...rest]);
}

/** x reversed along axis 0. */
function reverseLeading(tf: Tf, x: T, moves: DataMoves): T {
  const T = x.shape[0]!;
  if (!moves.viewSlices || T === 1) return tf.reverse(x, 0);
  return tf.concat(
    Array.from({ length: T }, (_, t) => tf.slice(x, T - 1 - t, 1)),
    0,
  );
}

/** The entries of x [T, ...rest] along axis 0, each [1, ...rest]. */
function leadingRows(tf: Tf, x: T, moves: DataMoves): T[] {
  const [T, ...rest] = x.shape as number[];
  if (!moves.gatherSteps) return Array.from({ length: T! }, (_, t) => tf.slice(x, t, 1));
  const rows = tf.reshape(x, [T!, -1]);
  return Array.from({ length: T! }, (_, t) =>
    tf.reshape(tf.gather(rows, tf.tensor1d([t], 'int32')), [1, ...rest]),
  );
}

/** The time steps of x [B, T, ...rest]: T tensors [B, ...rest]. */
export function timeSteps(tf: Tf, x: T, moves: DataMoves): T[] {
  return steps(tf, swapLeading(tf, x, moves), moves.gatherSteps);
}

/**
 * y_t = A_t y_{t−1} + c_t from y_0 (or, reversed, y_t = A_tᵀ y_{t+1} + c_t). A [B, T, n/s, s, s],
 * c [B, T, n], y0 [B, n]; returns [B, T, n]. Call inside tf.tidy.
 */
export function linearScan(
  tf: Tf,
  method: ScanMethod,
  A: T,
  c: T,
  y0: T,
  s: number,
  reverse: boolean,
  moves: DataMoves,
): T {
  const [B, T, n] = c.shape as [number, number, number];
  const E = (B * n) / s;
  const vec = s === 1 ? [E] : [E, s];
  const ops = blockOps(tf, s, reverse);
  if (method === 'auto') method = autoScan(T, E, s, moves);
  if (method === 'sequential' && moves.hostData) return hostSequentialScan(tf, A, c, y0, s, reverse);
  if (method === 'sequential') {
    // Step by step in the recurrence's own order (backwards when reversed), so nothing is reversed;
    // per step two leading-axis rows, one batched matvec and an add, all already in the shapes the
    // products want; the outputs are joined batch-major directly.
    const bs = s === 1 ? [T, E] : [T, E, s, s];
    const vs = s === 1 ? [T, E] : [T, E, s, 1];
    const as = leadingRows(tf, tf.reshape(swapLeading(tf, tf.reshape(A, [B, T, n * s]), moves), bs), moves);
    const cs = leadingRows(tf, tf.reshape(swapLeading(tf, c, moves), vs), moves);
    // A_t y + c_t; on tfjs cpu one fused op (wasm's takes only a rank-1 bias).
    const step =
      s === 1
        ? (a: T, v: T, bias: T) => tf.add(tf.mul(a, v), bias)
        : moves.viewSlices
          ? (a: T, v: T, bias: T) => tf.fused.matMul({ a, b: v, transposeA: reverse, bias })
          : (a: T, v: T, bias: T) => tf.add(tf.matMul(a, v, reverse), bias);
    const ys: T[] = new Array(T);
    let prev = tf.reshape(y0, [1, ...vs.slice(1)]);
    for (let k = 0; k < T; k++) {
      const t = reverse ? T - 1 - k : k;
      prev = step(as[t]!, prev, cs[t]!);
      ys[t] = tf.reshape(prev, [B, 1, n]);
    }
    return T === 1 ? ys[0]! : tf.concat(ys, 1);
  }
  const bt = s === 1 ? [T, E] : [T, E, s, s];
  const vt = s === 1 ? [T, E] : [T, E, s];
  let a = tf.reshape(swapLeading(tf, tf.reshape(A, [B, T, n * s]), moves), bt);
  let cc = tf.reshape(swapLeading(tf, c, moves), vt);
  if (reverse) {
    a = reverseLeading(tf, a, moves);
    cc = reverseLeading(tf, cc, moves);
  }
  // Fold the boundary state into the first offset: c_1 ← A_1 y_0 + c_1.
  const first = tf.add(ops.mv(tf.slice(a, 0, 1), tf.reshape(y0, [1, ...vec])), tf.slice(cc, 0, 1));
  cc = T === 1 ? first : tf.concat([first, tf.slice(cc, 1)], 0);
  let y = method === 'oddeven' ? oddEven(tf, ops, a, cc) : chunked(tf, ops, a, cc, moves.gatherSteps);
  if (reverse) y = reverseLeading(tf, y, moves);
  return swapLeading(tf, tf.reshape(y, [T, B, n]), moves);
}

/**
 * The sequential order as one loop over the tensors' data, for engines that hold it in host memory
 * (tfjs cpu; wasm after one copy out): per step and block the same arithmetic as tfjs cpu's op path
 * (its MatMul sums the s products in double and stores float32, then the offset is added in
 * float32), so on cpu the same values without T × 4 dispatches and intermediate tensors; on wasm
 * they differ from XNNPACK's float32 sums by rounding only.
 */
export function hostSequentialScan(tf: Tf, A: T, c: T, y0: T, s: number, reverse: boolean): T {
  const [B, T, n] = c.shape as [number, number, number];
  const a = A.dataSync() as Float32Array;
  const cc = c.dataSync() as Float32Array;
  const y0d = y0.dataSync() as Float32Array;
  const out = new Float32Array(B * T * n);
  const f32 = Math.fround;
  // Block entry (i, j) of A_t (of A_tᵀ when reversed) at i·si + j·sj.
  const si = reverse ? 1 : s;
  const sj = reverse ? s : 1;
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < T; k++) {
      const t = reverse ? T - 1 - k : k;
      const row = (b * T + t) * n;
      // The previous state: y0, or the neighbouring step's output.
      const prev = k === 0 ? y0d : out;
      const p0 = k === 0 ? b * n : (b * T + (reverse ? t + 1 : t - 1)) * n;
      const a0 = row * s;
      for (let e = 0; e < n; e += s) {
        const blk = a0 + e * s;
        const pe = p0 + e;
        const o = row + e;
        let i = 0;
        // Four outputs at a time share each state load (each sum in order j = 0, 1, …).
        for (; i + 4 <= s; i += 4) {
          const b0 = blk + i * si;
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          for (let j = 0; j < s; j++) {
            const v = prev[pe + j]!;
            const q = b0 + j * sj;
            s0 += a[q]! * v;
            s1 += a[q + si]! * v;
            s2 += a[q + 2 * si]! * v;
            s3 += a[q + 3 * si]! * v;
          }
          out[o + i] = f32(s0) + cc[o + i]!;
          out[o + i + 1] = f32(s1) + cc[o + i + 1]!;
          out[o + i + 2] = f32(s2) + cc[o + i + 2]!;
          out[o + i + 3] = f32(s3) + cc[o + i + 3]!;
        }
        for (; i < s; i++) {
          let sum = 0;
          for (let j = 0; j < s; j++) sum += a[blk + i * si + j * sj]! * prev[pe + j]!;
          out[o + i] = f32(sum) + cc[o + i]!;
        }
      }
    }
  }
  return tf.tensor3d(out, [B, T, n], 'float32');
}

/**
 * The entries of axis 0 as separate tensors. tf.split/unstack are pathologically slow on cpu and
 * wasm, and wasm's Slice copies its whole input first (O(T²) for T slices), so there each step is a
 * one-row gather.
 */
function steps(tf: Tf, x: T, gather: boolean): T[] {
  const rest = x.shape.slice(1);
  const T = x.shape[0]!;
  if (!gather) return Array.from({ length: T }, (_, t) => tf.reshape(tf.slice(x, t, 1), rest));
  const rows = tf.reshape(x, [T, -1]);
  return Array.from({ length: T }, (_, t) => tf.reshape(tf.gather(rows, tf.tensor1d([t], 'int32')), rest));
}

/** Appends `extra` zero entries along axis 0. */
function padTime(tf: Tf, x: T, extra: number): T {
  if (extra === 0) return x;
  return tf.concat([x, tf.zeros([extra, ...x.shape.slice(1)])], 0);
}

/** x[t] ← x[t − 1] along axis 0, zero at t = 0. */
function shiftRight(tf: Tf, x: T): T {
  const T = x.shape[0]!;
  if (T === 1) return tf.zerosLike(x);
  return tf.concat([tf.zeros([1, ...x.shape.slice(1)]), tf.slice(x, 0, T - 1)], 0);
}

/**
 * The even and odd entries of axis 0 (even length): x viewed as [T/2, 2, K] and sliced on the middle
 * axis (on wasm 4–6× faster than a gather of the rows, which indexes entry by entry).
 */
function evenOdd(tf: Tf, x: T): [T, T] {
  const [T, ...rest] = x.shape as number[];
  const half = T! / 2;
  const K = prod(rest);
  const pairs = tf.reshape(x, [half, 2, K]);
  const pick = (k: number) => tf.reshape(tf.slice(pairs, [0, k, 0], [half, 1, K]), [half, ...rest]);
  return [pick(0), pick(1)];
}

/** Inclusive scan from a zero state over axis 0, by recursive odd-even reduction. */
function oddEven(tf: Tf, ops: Ops, A: T, c: T): T {
  const T = c.shape[0]!;
  if (T === 1) return c;
  const [ae, ao] = evenOdd(tf, padTime(tf, A, T % 2));
  const [ce, co] = evenOdd(tf, padTime(tf, c, T % 2));
  // Pairs (2k, 2k+1) composed: the odd outputs are the scan of the pairs.
  const yo = oddEven(tf, ops, ops.mm(ao, ae), tf.add(ops.mv(ao, ce), co));
  const ye = tf.add(ops.mv(ae, shiftRight(tf, yo)), ce);
  const half = ye.shape[0]!;
  const rest = ye.shape.slice(1);
  const y = tf.reshape(tf.concat([tf.reshape(ye, [half, 1, -1]), tf.reshape(yo, [half, 1, -1])], 1), [
    2 * half,
    ...rest,
  ]);
  return T % 2 === 0 ? y : tf.slice(y, 0, T);
}

/** y_t = a_t y_{t−1} + c_t over a list of steps, from y_{−1} = start (null: zero). */
function sequential(tf: Tf, ops: Ops, as: readonly T[], cs: readonly T[], start: T | null): T[] {
  const ys: T[] = [];
  let prev = start;
  for (let t = 0; t < cs.length; t++) {
    prev = prev === null ? cs[t]! : tf.add(ops.mv(as[t]!, prev), cs[t]!);
    ys.push(prev);
  }
  return ys;
}

/** Sequential pass within chunks of ~√T steps, odd-even scan of the chunk ends, fix-up pass. */
function chunked(tf: Tf, ops: Ops, A: T, c: T, gather: boolean): T {
  const [T, ...vrest] = c.shape as number[];
  const brest = A.shape.slice(1);
  const L = Math.max(1, Math.round(Math.sqrt(T!)));
  const C = Math.ceil(T! / L);
  if (C === 1) return tf.stack(sequential(tf, ops, steps(tf, A, gather), steps(tf, c, gather), null), 0);
  // Time t = k·L + l goes to [l, k]: steps l of all chunks k are one contiguous slice.
  const byStep = (x: T, rest: number[]) => {
    const K = rest.reduce((p, q) => p * q, 1);
    const t = tf.transpose(tf.reshape(padTime(tf, x, C * L - T!), [C, L, K]), [1, 0, 2]);
    return steps(tf, tf.reshape(t, [L, C, ...rest]), gather);
  };
  const as = byStep(A, brest);
  const cs = byStep(c, vrest);
  const P: T[] = [as[0]!];
  for (let l = 1; l < L; l++) P.push(ops.mm(as[l]!, P[l - 1]!));
  const q = sequential(tf, ops, as, cs, null);
  // State at the end of each chunk; the carry into chunk k is the end of chunk k − 1.
  const carry = shiftRight(tf, oddEven(tf, ops, P[L - 1]!, q[L - 1]!));
  const ys = q.map((ql, l) => tf.reshape(tf.add(ops.mv(P[l]!, carry), ql), [1, C, -1]));
  const y = tf.reshape(tf.transpose(tf.concat(ys, 0), [1, 0, 2]), [C * L, ...vrest]);
  return tf.slice(y, 0, T);
}

/**
 * The damped scan with diagonal transitions (a: [B, T, n]) by parallel cyclic reduction: the
 * symmetric tridiagonal system of min Σ_t (δ_t − a_t δ_{t−1} − c_t)² + λ_b δ_t², reduced in
 * ⌈log2 T⌉ rounds of elementwise ops, each round eliminating the neighbours at distance 2^k.
 */
export function dampedScanPcr(tf: Tf, a: tfc.Tensor, c: tfc.Tensor, lambda: ArrayLike<number>): tfc.Tensor {
  const [B, T, n] = c.shape as [number, number, number];
  /** x shifted along time by k (k > 0: from t − k; k < 0: from t + |k|), filled with v. */
  const shift = (x: tfc.Tensor, k: number, v: number) => {
    const m = Math.min(Math.abs(k), T);
    if (m === 0) return x;
    const fill = tf.fill([B, m, n], v);
    if (m === T) return fill;
    return k > 0
      ? tf.concat([fill, tf.slice(x, [0, 0, 0], [B, T - m, n])], 1)
      : tf.concat([tf.slice(x, [0, m, 0], [B, T - m, n]), fill], 1);
  };
  const lam = tf.reshape(tf.tensor1d(Float32Array.from(lambda)), [B, 1, 1]);
  const aNext = shift(a, -1, 0);
  // l_t = −a_t couples δ_t to δ_{t−1}; at t = 0 that is δ_0 = 0, so l_0 = 0.
  let l = shift(shift(tf.neg(a), -1, 0), 1, 0);
  let d = tf.add(tf.add(tf.scalar(1), lam), tf.square(aNext));
  let u = tf.neg(aNext);
  let g = tf.sub(c, tf.mul(aNext, shift(c, -1, 0)));
  for (let k = 1; k < T; k *= 2) {
    const alpha = tf.neg(tf.div(l, shift(d, k, 1)));
    const gamma = tf.neg(tf.div(u, shift(d, -k, 1)));
    const l2 = tf.mul(alpha, shift(l, k, 0));
    const u2 = tf.mul(gamma, shift(u, -k, 0));
    const d2 = tf.add(d, tf.add(tf.mul(alpha, shift(u, k, 0)), tf.mul(gamma, shift(l, -k, 0))));
    const g2 = tf.add(g, tf.add(tf.mul(alpha, shift(g, k, 0)), tf.mul(gamma, shift(g, -k, 0))));
    [l, u, d, g] = [l2, u2, d2, g2];
  }
  return tf.div(g, d);
}
