import type { BinaryFn, UnaryFn } from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/**
 * Elementwise step-vector ops as plain loops over the tensors' data, for engines that hold it in
 * JavaScript typed arrays read without a copy (tfjs cpu). tfjs cpu's binary kernels take every
 * operand index modulo its length and call the op through a closure shared by all of them (~10 ns
 * an entry); these loops do the same arithmetic (each op in double on float32 values, stored as
 * float32, with the kernels' own formulas), so the values are the same bit for bit, several times
 * faster. Ops without a loop here return null (the caller uses the tfjs op).
 */

/** A step vector's layout: [rows, size] per element, [size], or size 1 ([rows, 1] or a scalar). */
export interface HostOperand {
  readonly t: T;
  readonly perElement: boolean;
  readonly size: number;
}

const data = (t: T) => t.dataSync() as Float32Array;

/** a ∘ b over [rows, size] (or [size] when neither varies per element); size-1 operands broadcast. */
export function hostBinary(tf: Tf, fn: BinaryFn, a: HostOperand, b: HostOperand, rows: number): T {
  const size = Math.max(a.size, b.size);
  const per = a.perElement || b.perElement;
  const R = per ? rows : 1;
  const out = new Float32Array(R * size);
  const x = data(a.t);
  const y = data(b.t);
  if (x.length === out.length && y.length === out.length) flat(fn, x, y, out);
  else {
    // Entry (r, j) of an operand: r·rowStride + j·colStride.
    const ar = a.perElement ? a.size : 0;
    const ac = a.size === size ? 1 : 0;
    const br = b.perElement ? b.size : 0;
    const bc = b.size === size ? 1 : 0;
    for (let r = 0; r < R; r++) strided(fn, x, r * ar, ac, y, r * br, bc, out, r * size, size);
  }
  return tf.tensor(out, per ? [rows, size] : [size], 'float32');
}

function flat(fn: BinaryFn, x: Float32Array, y: Float32Array, out: Float32Array): void {
  const n = out.length;
  switch (fn) {
    case 'add':
      for (let i = 0; i < n; i++) out[i] = x[i]! + y[i]!;
      return;
    case 'sub':
      for (let i = 0; i < n; i++) out[i] = x[i]! - y[i]!;
      return;
    case 'mul':
      for (let i = 0; i < n; i++) out[i] = x[i]! * y[i]!;
      return;
    case 'div':
      for (let i = 0; i < n; i++) out[i] = x[i]! / y[i]!;
      return;
    case 'min':
      for (let i = 0; i < n; i++) out[i] = Math.min(x[i]!, y[i]!);
      return;
    case 'max':
      for (let i = 0; i < n; i++) out[i] = Math.max(x[i]!, y[i]!);
      return;
  }
}

function strided(
  fn: BinaryFn,
  x: Float32Array,
  x0: number,
  xs: number,
  y: Float32Array,
  y0: number,
  ys: number,
  out: Float32Array,
  o0: number,
  n: number,
): void {
  switch (fn) {
    case 'add':
      for (let j = 0; j < n; j++) out[o0 + j] = x[x0 + j * xs]! + y[y0 + j * ys]!;
      return;
    case 'sub':
      for (let j = 0; j < n; j++) out[o0 + j] = x[x0 + j * xs]! - y[y0 + j * ys]!;
      return;
    case 'mul':
      for (let j = 0; j < n; j++) out[o0 + j] = x[x0 + j * xs]! * y[y0 + j * ys]!;
      return;
    case 'div':
      for (let j = 0; j < n; j++) out[o0 + j] = x[x0 + j * xs]! / y[y0 + j * ys]!;
      return;
    case 'min':
      for (let j = 0; j < n; j++) out[o0 + j] = Math.min(x[x0 + j * xs]!, y[y0 + j * ys]!);
      return;
    case 'max':
      for (let j = 0; j < n; j++) out[o0 + j] = Math.max(x[x0 + j * xs]!, y[y0 + j * ys]!);
      return;
  }
}

/** The unary ops with a loop here, each with tfjs cpu's formula. */
const HOST_UNARY = new Set<UnaryFn>(['neg', 'sigmoid', 'tanh', 'exp', 'log', 'sqrt', 'square', 'abs']);

/** fn(x) entry by entry, or null when fn has no loop here. */
export function hostUnary(tf: Tf, fn: UnaryFn, t: T): T | null {
  if (!HOST_UNARY.has(fn)) return null;
  const x = data(t);
  const n = x.length;
  const out = new Float32Array(n);
  switch (fn) {
    case 'neg':
      // tfjs: a multiply by −1.
      for (let i = 0; i < n; i++) out[i] = x[i]! * -1;
      break;
    case 'sigmoid':
      for (let i = 0; i < n; i++) out[i] = 1 / (1 + Math.exp(-x[i]!));
      break;
    case 'tanh':
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]!);
      break;
    case 'exp':
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]!);
      break;
    case 'log':
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i]!);
      break;
    case 'sqrt':
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]!);
      break;
    case 'square':
      for (let i = 0; i < n; i++) out[i] = x[i]! * x[i]!;
      break;
    case 'abs':
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]!);
      break;
  }
  return tf.tensor(out, [...t.shape], 'float32');
}

/** tfjs cpu's MatMul sums the inner dimension in blocks of this many products (its blockSize). */
const MATMUL_BLOCK = 48;

/**
 * y[r, b, :] = P_b · x[r, b, :] for x [R, blocks·inner], P_b = W[b] ([blocks, rows, cols]) or its
 * transpose; returns [R, blocks·out]. The sums of tfjs cpu's BatchMatMul for
 * matMul(x [R, blocks, 1, inner], W, false, !transpose): products summed in double per block of
 * the inner dimension, accumulated in float32.
 */
export function hostMatvec(
  tf: Tf,
  x: T,
  R: number,
  W: T,
  blocks: number,
  rows: number,
  cols: number,
  transpose: boolean,
): T {
  const out = transpose ? cols : rows;
  const inner = transpose ? rows : cols;
  const xd = data(x);
  const wd = data(W);
  const y = new Float32Array(R * blocks * out);
  // P_b[i, k] lies at b·rows·cols + i·si + k·sk in W.
  const si = transpose ? 1 : cols;
  const sk = transpose ? cols : 1;
  for (let r = 0; r < R; r++) {
    for (let b = 0; b < blocks; b++) {
      const xo = (r * blocks + b) * inner;
      const yo = (r * blocks + b) * out;
      const wb = b * rows * cols;
      let i = 0;
      // Four outputs at a time share each x load (each output's sum in its own order, as above).
      for (; i + 4 <= out; i += 4) {
        const w0 = wb + i * si;
        const w1 = w0 + si;
        const w2 = w1 + si;
        const w3 = w2 + si;
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        for (let k0 = 0; k0 < inner; k0 += MATMUL_BLOCK) {
          const k1 = Math.min(k0 + MATMUL_BLOCK, inner);
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          for (let k = k0; k < k1; k++) {
            const xv = xd[xo + k]!;
            const o = k * sk;
            s0 += xv * wd[w0 + o]!;
            s1 += xv * wd[w1 + o]!;
            s2 += xv * wd[w2 + o]!;
            s3 += xv * wd[w3 + o]!;
          }
          a0 = Math.fround(a0 + s0);
          a1 = Math.fround(a1 + s1);
          a2 = Math.fround(a2 + s2);
          a3 = Math.fround(a3 + s3);
        }
        y[yo + i] = a0;
        y[yo + i + 1] = a1;
        y[yo + i + 2] = a2;
        y[yo + i + 3] = a3;
      }
      for (; i < out; i++) {
        const wo = wb + i * si;
        let acc = 0;
        for (let k0 = 0; k0 < inner; k0 += MATMUL_BLOCK) {
          const k1 = Math.min(k0 + MATMUL_BLOCK, inner);
          let sum = 0;
          for (let k = k0; k < k1; k++) sum += xd[xo + k]! * wd[wo + k * sk]!;
          acc = Math.fround(acc + sum);
        }
        y[yo + i] = acc;
      }
    }
  }
  return tf.tensor2d(y, [R, blocks * out], 'float32');
}

/**
 * Σ_e l[e, :]ᵀ r[e, :] restricted to its `blocks` diagonal blocks, block after block: l [E, L],
 * r [E, R]; returns [L·R / blocks]. Only the blocks' products are formed (the op path forms all of
 * lᵀr and gathers them), with tfjs cpu's MatMul sums: in double per block of E, accumulated in
 * float32.
 */
export function hostOuterSum(tf: Tf, l: T, r: T, E: number, L: number, R: number, blocks: number): T {
  const ld = data(l);
  const rd = data(r);
  const lb = L / blocks;
  const rb = R / blocks;
  const size = lb * rb;
  const acc = new Float32Array(blocks * size);
  for (let e0 = 0; e0 < E; e0 += MATMUL_BLOCK) {
    const e1 = Math.min(e0 + MATMUL_BLOCK, E);
    for (let b = 0; b < blocks; b++) {
      for (let a = 0; a < lb; a++) {
        const la = b * lb + a;
        const o = b * size + a * rb;
        let c = 0;
        // Four outputs at a time share each l load; each sums e = e0, e0 + 1, … in double.
        for (; c + 4 <= rb; c += 4) {
          const rc = b * rb + c;
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          for (let e = e0; e < e1; e++) {
            const x = ld[e * L + la]!;
            const ro = e * R + rc;
            s0 += x * rd[ro]!;
            s1 += x * rd[ro + 1]!;
            s2 += x * rd[ro + 2]!;
            s3 += x * rd[ro + 3]!;
          }
          acc[o + c] = acc[o + c]! + s0;
          acc[o + c + 1] = acc[o + c + 1]! + s1;
          acc[o + c + 2] = acc[o + c + 2]! + s2;
          acc[o + c + 3] = acc[o + c + 3]! + s3;
        }
        for (; c < rb; c++) {
          const rc = b * rb + c;
          let sum = 0;
          for (let e = e0; e < e1; e++) sum += ld[e * L + la]! * rd[e * R + rc]!;
          acc[o + c] = acc[o + c]! + sum;
        }
      }
    }
  }
  return tf.tensor1d(acc, 'float32');
}
