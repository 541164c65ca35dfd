import { columnSparseOffset, type Graph, type MatExpr, matrixLayout, type NodeId, paramSpec, ShapeError } from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import { asRows, type Vec } from './broadcast.js';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/** What a dense evaluation reads: the step's vectors and flat params. */
export interface DenseEnv {
  readonly vec: (id: NodeId) => Vec;
  readonly params: Readonly<Record<string, T>>;
  /** Tensor data is a typed array read without a copy (tfjs cpu): row scaling as a plain loop. */
  readonly hostLoops?: boolean;
}

/**
 * Evaluates matrix expressions densely, as Mt [R, cols, rows] (transposed: Mt[r, j, i] = M[r][i][j],
 * so a param matmul is one 2-D matMul on [R·cols, k]), R the element count or 1 for expressions
 * that do not vary per element. Sub-expressions are computed once per evaluator; call inside
 * tf.tidy.
 */
export class DenseEvaluator {
  private readonly memo = new Map<MatExpr, T | null>();

  constructor(
    private readonly tf: Tf,
    private readonly g: Graph,
    private readonly env: DenseEnv,
    /**
     * Gather indices of column-sparse matmuls, kept across evaluations of one program: they depend
     * on the expression and the graph's param layouts only.
     */
    private readonly gathers: Map<MatExpr, Int32Array>,
  ) {}

  /** Mt [R or 1, cols, rows], or null for zero. */
  eval(m: MatExpr): T | null {
    if (this.memo.has(m)) return this.memo.get(m)!;
    const tf = this.tf;
    let out: T | null;
    switch (m.kind) {
      case 'zero':
        out = null;
        break;
      case 'select':
        out = tf.tensor3d(selectT(m.rows, m.cols, m.offset), [1, m.cols, m.rows]);
        break;
      case 'rowscale': {
        const inner = this.eval(m.m);
        const d = asRows(tf, this.env.vec(m.d));
        out =
          inner &&
          (this.env.hostLoops
            ? scaleRowsOnHost(tf, inner, d)
            : tf.mul(inner, tf.reshape(d, [d.shape[0]!, 1, d.shape[1]!])));
        break;
      }
      case 'add': {
        out = null;
        for (const t of m.terms) {
          const x = this.eval(t);
          if (x) out = out ? tf.add(out, x) : x;
        }
        break;
      }
      case 'matmul':
        out = this.matmul(m);
        break;
      case 'slicerows': {
        // Rows of a dense single-block product: the product of those rows of the param only (a
        // strided slice of the whole product costs more than the product on tfjs cpu).
        const mm = m.m;
        if (mm.kind === 'matmul' && !this.memo.has(mm) && this.singleBlockDense(mm)) {
          out = this.matmul(mm, m.start, m.rows);
          break;
        }
        const inner = this.eval(mm);
        out = inner && tf.slice(inner, [0, 0, m.start], [-1, -1, m.rows]);
        break;
      }
      case 'concatrows': {
        const parts = m.parts.map((p) => this.eval(p) ?? tf.zeros([1, m.cols, p.rows]));
        const R = Math.max(...parts.map((p) => p.shape[0]!));
        out = tf.concat(
          parts.map((p) => (p.shape[0] === R ? p : tf.broadcastTo(p, [R, ...p.shape.slice(1)]))),
          2,
        );
        break;
      }
      case 'sumrows': {
        const inner = this.eval(m.m);
        out = inner && tf.sum(inner, 2, true);
        break;
      }
      case 'broadcastrows': {
        const inner = this.eval(m.m);
        out = inner && tf.broadcastTo(inner, [inner.shape[0]!, m.cols, m.rows]);
        break;
      }
    }
    this.memo.set(m, out);
    return out;
  }

  private singleBlockDense(m: Extract<MatExpr, { kind: 'matmul' }>): boolean {
    return matrixLayout(paramSpec(this.g, m.param)).blocks === 1 && columnSparseOffset(m.m) === undefined;
  }

  /** Mt of rows [start, start + rows) of the product (all rows by default; a part only for one block). */
  private matmul(m: Extract<MatExpr, { kind: 'matmul' }>, start = 0, rows = m.rows): T | null {
    const tf = this.tf;
    const W = this.env.params[m.param]!;
    const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(this.g, m.param));
    const outRows = m.transpose ? pc : pr; // per block
    const inRows = m.transpose ? pr : pc;
    const offset = columnSparseOffset(m.m);
    if (offset !== undefined) {
      // Inner column j holds one value, at row j − offset: the product is that column vector times
      // the matching column of P, gathered once per program into Pshift [cols, rows].
      const col = this.columnValues(m.m, offset);
      if (!col) return null;
      // The indices are kept per expression, so they depend on it and the param's declared
      // layout only (the appended 0 at the declared size), never on the tensor given.
      const size = blocks * pr * pc;
      if (W.size !== size) throw new ShapeError(`params.${m.param}`, `${size} values`, `${W.size} values`);
      let idx = this.gathers.get(m);
      if (!idx) {
        idx = shiftedColumnIndex(blocks, pr, pc, m.transpose, m.cols, offset, size);
        this.gathers.set(m, idx);
      }
      const padded = tf.concat([tf.reshape(W, [size]), tf.zeros([1])], 0);
      const Pshift = tf.reshape(tf.gather(padded, tf.tensor1d(idx, 'int32')), [1, m.cols, m.rows]);
      return tf.mul(tf.reshape(col, [col.shape[0]!, m.cols, 1]), Pshift);
    }
    const inner = this.eval(m.m);
    if (!inner) return null;
    const R = inner.shape[0]!;
    const X = tf.reshape(inner, [R * m.cols, blocks * inRows]);
    if (blocks === 1) {
      let P = tf.reshape(W, [pr, pc]);
      if (rows < outRows) P = m.transpose ? tf.slice(P, [0, start], [pr, rows]) : tf.slice(P, [start, 0], [rows, pc]);
      return tf.reshape(tf.matMul(X, P, false, !m.transpose), [R, m.cols, rows]);
    }
    const Xb = tf.transpose(tf.reshape(X, [R * m.cols, blocks, inRows]), [1, 0, 2]);
    const Y = tf.matMul(Xb, tf.reshape(W, [blocks, pr, pc]), false, !m.transpose);
    return tf.reshape(tf.transpose(Y, [1, 0, 2]), [R, m.cols, blocks * outRows]);
  }

  /**
   * For a column-sparse expression with `offset`, the [R, cols] vector of its only nonzero per
   * column (the entry at row j − offset), or null when it is zero.
   */
  private columnValues(m: MatExpr, offset: number): T | null {
    const tf = this.tf;
    /** 1 where row j − offset lies inside this matrix. */
    const inRows = () => {
      const a = new Float32Array(m.cols);
      for (let j = 0; j < m.cols; j++) if (j - offset >= 0 && j - offset < m.rows) a[j] = 1;
      return tf.tensor2d(a, [1, m.cols]);
    };
    switch (m.kind) {
      case 'select':
        return inRows();
      case 'slicerows': {
        const inner = this.columnValues(m.m, offset - m.start);
        return inner && tf.mul(inner, inRows());
      }
      case 'concatrows': {
        // One part holds every nonzero (columnSparseOffset checked that).
        let at = 0;
        for (const p of m.parts) {
          if (p.kind !== 'zero') return this.columnValues(p, offset + at);
          at += p.rows;
        }
        return null;
      }
      case 'rowscale': {
        const inner = this.columnValues(m.m, offset);
        if (!inner) return null;
        const d = asRows(tf, this.env.vec(m.d));
        if (d.shape[1] === 1) return tf.mul(inner, d);
        // d[r, j − offset] placed at column j; out-of-range columns are zero in `inner` already.
        const kLo = Math.max(0, -offset);
        const kHi = Math.min(m.rows, m.cols - offset);
        if (kHi <= kLo) return null;
        const piece = tf.slice(d, [0, kLo], [-1, kHi - kLo]);
        const shifted = tf.pad(piece, [
          [0, 0],
          [kLo + offset, m.cols - (kHi + offset)],
        ]);
        return tf.mul(inner, shifted);
      }
      default:
        throw new Error(`tfjs: ${m.kind} is not column-sparse`);
    }
  }
}

/**
 * inner [Ri, cols, rows] times d [Rd, rows or 1] broadcast over cols, as tfjs cpu's Mul computes
 * it (each product in double of float32 values, stored as float32) without its per-entry index
 * arithmetic for broadcasting (~10× slower there).
 */
function scaleRowsOnHost(tf: Tf, inner: T, d: T): T {
  const [Ri, cols, rows] = inner.shape as [number, number, number];
  const [Rd, dw] = d.shape as [number, number];
  const R = Math.max(Ri, Rd);
  const x = inner.dataSync() as Float32Array;
  const v = d.dataSync() as Float32Array;
  const out = new Float32Array(R * cols * rows);
  for (let r = 0; r < R; r++) {
    const xo = Ri === 1 ? 0 : r * cols * rows;
    const vo = Rd === 1 ? 0 : r * dw;
    const oo = r * cols * rows;
    for (let j = 0; j < cols; j++) {
      const xr = xo + j * rows;
      const or = oo + j * rows;
      if (dw === 1) for (let i = 0; i < rows; i++) out[or + i] = x[xr + i]! * v[vo]!;
      else for (let i = 0; i < rows; i++) out[or + i] = x[xr + i]! * v[vo + i]!;
    }
  }
  return tf.tensor3d(out, [R, cols, rows], 'float32');
}

/** Mt of select(offset): Mt[j][i] = 1 where j = i + offset. */
function selectT(rows: number, cols: number, offset: number): Float32Array {
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const j = i + offset;
    if (j >= 0 && j < cols) a[j * rows + i] = 1;
  }
  return a;
}

/**
 * Indices into [P flat, 0] giving Pshift[j][i] = P̃[i][j − offset], P̃ the param as the
 * (block-diagonal, possibly transposed) matrix it acts as; index `zeroAt` reads the appended 0.
 */
function shiftedColumnIndex(
  blocks: number,
  pr: number,
  pc: number,
  transpose: boolean,
  cols: number,
  offset: number,
  zeroAt: number,
): Int32Array {
  const outRows = transpose ? pc : pr;
  const inRows = transpose ? pr : pc;
  const rows = blocks * outRows;
  const idx = new Int32Array(cols * rows).fill(zeroAt);
  for (let j = 0; j < cols; j++) {
    const kk = j - offset;
    if (kk < 0 || kk >= blocks * inRows) continue;
    const b = Math.floor(kk / inRows);
    const k = kk - b * inRows;
    for (let i = 0; i < outRows; i++) {
      idx[j * rows + b * outRows + i] = transpose ? b * pr * pc + k * pc + i : b * pr * pc + i * pc + k;
    }
  }
  return idx;
}
