import {
  columnSparseOffset,
  type Graph,
  liveNodes,
  type MatExpr,
  matExprNodes,
  matrixLayout,
  type Node,
  paramSpec,
  type StepProgram,
  type UnaryFn,
} from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/** Values of one evaluation: every vector is [R, size] with R the element count, or 1 when constant. */
export interface StepEnv {
  readonly rows: number;
  readonly state: T;
  readonly input?: T;
  readonly cotangent?: T;
  /** Flat parameter tensors by name. */
  readonly params: Readonly<Record<string, T>>;
}

export interface StepValues {
  /** One [rows, size] tensor per program output. */
  readonly outputs: T[];
  /** [rows, n/s, s, s] when the program has a Jacobian. */
  readonly jacobian?: T;
}

export type CompiledStep = (env: StepEnv) => StepValues;

const UNARY: Record<UnaryFn, (tf: Tf, a: T) => T> = {
  neg: (tf, a) => tf.neg(a),
  sigmoid: (tf, a) => tf.sigmoid(a),
  tanh: (tf, a) => tf.tanh(a),
  exp: (tf, a) => tf.exp(a),
  log: (tf, a) => tf.log(a),
  softplus: (tf, a) => tf.softplus(a),
  relu: (tf, a) => tf.relu(a),
  step: (tf, a) => tf.step(a, 0),
  sin: (tf, a) => tf.sin(a),
  cos: (tf, a) => tf.cos(a),
  square: (tf, a) => tf.square(a),
  sqrt: (tf, a) => tf.sqrt(a),
  abs: (tf, a) => tf.abs(a),
  sign: (tf, a) => tf.sign(a),
};

/** Pads the row dimension (axis 0) of each tensor to the largest, so they can be concatenated. */
function sameRows(tf: Tf, parts: readonly T[]): T[] {
  const R = Math.max(...parts.map((p) => p.shape[0]!));
  return parts.map((p) => (p.shape[0] === R ? p : tf.broadcastTo(p, [R, ...p.shape.slice(1)])));
}

/**
 * Compile a step program to batched tf ops over all (b, t) elements at once. Must be called inside
 * tf.tidy. Jacobians are built transposed, as [R, cols, rows] tensors (Mt[r, j, i] = M[r][i][j]), so
 * that a parameter matmul is one 2-D matMul on [R·cols, k] without transposes.
 */
export function compileStep(tf: Tf, program: StepProgram): CompiledStep {
  const g = program.graph;
  const roots = [...program.outputs];
  if (program.jacobian) roots.push(...matExprNodes(program.jacobian.expr));
  const live = liveNodes(g, roots);
  const gathers = new Map<MatExpr, Int32Array>();
  const blockIndex = program.jacobian ? blockGatherIndex(g.stateSize, program.jacobian.blockSize) : undefined;

  return (env) => {
    const values: T[] = [];
    for (const id of live) values[id] = evalNode(tf, g, g.nodes[id]!, values, env);
    const full = (t: T, size: number) => (t.shape[0] === env.rows ? t : tf.broadcastTo(t, [env.rows, size]));
    const outputs = program.outputs.map((id) => full(values[id]!, g.nodes[id]!.size));
    if (!program.jacobian) return { outputs };
    const n = g.stateSize;
    const s = program.jacobian.blockSize;
    const memo = new Map<MatExpr, T | null>();
    const Mt = evalMat(tf, g, program.jacobian.expr, values, env, memo, gathers) ?? tf.zeros([1, n, n]);
    let J: T;
    if (s === n) J = tf.reshape(tf.transpose(Mt, [0, 2, 1]), [Mt.shape[0]!, 1, n, n]);
    else
      J = tf.reshape(tf.gather(tf.reshape(Mt, [Mt.shape[0]!, n * n]), tf.tensor1d(blockIndex!, 'int32'), 1), [
        Mt.shape[0]!,
        n / s,
        s,
        s,
      ]);
    if (J.shape[0] !== env.rows) J = tf.broadcastTo(J, [env.rows, n / s, s, s]);
    return { outputs, jacobian: J };
  };
}

/** Flat indices into Mt [n, n] of the diagonal blocks J[k][i][j] = Mt[k·s + j][k·s + i]. */
function blockGatherIndex(n: number, s: number): Int32Array {
  const idx = new Int32Array(n * s);
  let o = 0;
  for (let k = 0; k < n / s; k++)
    for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) idx[o++] = (k * s + j) * n + k * s + i;
  return idx;
}

function evalNode(tf: Tf, g: Graph, node: Node, v: T[], env: StepEnv): T {
  switch (node.op) {
    case 'state':
      return env.state;
    case 'input':
      if (!env.input) throw new Error('tfjs: the program reads an input and none was given');
      return env.input;
    case 'cotangent':
      if (!env.cotangent) throw new Error('tfjs: the program reads a cotangent and none was given');
      return env.cotangent;
    case 'param':
      return tf.reshape(env.params[node.name]!, [1, node.size]);
    case 'const':
      return tf.tensor2d(node.values as number[], [1, node.size], 'float32');
    case 'unary':
      return UNARY[node.fn](tf, v[node.a]!);
    case 'binary': {
      const a = v[node.a]!;
      const b = v[node.b]!;
      switch (node.fn) {
        case 'add':
          return tf.add(a, b);
        case 'sub':
          return tf.sub(a, b);
        case 'mul':
          return tf.mul(a, b);
        case 'div':
          return tf.div(a, b);
        case 'min':
          return tf.minimum(a, b);
        case 'max':
          return tf.maximum(a, b);
      }
      break;
    }
    case 'matvec': {
      const { blocks, rows, cols } = matrixLayout(paramSpec(g, node.param));
      const x = v[node.v]!;
      const W = env.params[node.param]!;
      if (blocks === 1) return tf.matMul(x, tf.reshape(W, [rows, cols]), false, !node.transpose);
      const R = x.shape[0]!;
      const inner = node.transpose ? rows : cols;
      const xb = tf.transpose(tf.reshape(x, [R, blocks, inner]), [1, 0, 2]);
      const y = tf.matMul(xb, tf.reshape(W, [blocks, rows, cols]), false, !node.transpose);
      return tf.reshape(tf.transpose(y, [1, 0, 2]), [R, node.size]);
    }
    case 'slice':
      return tf.slice(v[node.a]!, [0, node.start], [-1, node.size]);
    case 'concat':
      return tf.concat(
        sameRows(
          tf,
          node.parts.map((p) => v[p]!),
        ),
        1,
      );
    case 'sum':
      return tf.sum(v[node.a]!, 1, true);
  }
  throw new Error(`tfjs: unknown node ${(node as Node).op}`);
}

/** A matrix expression as Mt [R, cols, rows], or null for zero. */
function evalMat(
  tf: Tf,
  g: Graph,
  m: MatExpr,
  v: readonly T[],
  env: StepEnv,
  memo: Map<MatExpr, T | null>,
  gathers: Map<MatExpr, Int32Array>,
): T | null {
  if (memo.has(m)) return memo.get(m)!;
  const sub = (e: MatExpr) => evalMat(tf, g, e, v, env, memo, gathers);
  let out: T | null;
  switch (m.kind) {
    case 'zero':
      out = null;
      break;
    case 'select':
      out = tf.tensor3d(selectT(m.rows, m.cols, m.offset), [1, m.cols, m.rows]);
      break;
    case 'rowscale': {
      const inner = sub(m.m);
      const d = v[m.d]!;
      out = inner && tf.mul(inner, tf.reshape(d, [d.shape[0]!, 1, d.shape[1]!]));
      break;
    }
    case 'add': {
      out = null;
      for (const t of m.terms) {
        const x = sub(t);
        if (x) out = out ? tf.add(out, x) : x;
      }
      break;
    }
    case 'matmul':
      out = evalMatmul(tf, g, m, v, env, sub, gathers);
      break;
    case 'slicerows': {
      const inner = sub(m.m);
      out = inner && tf.slice(inner, [0, 0, m.start], [-1, -1, m.rows]);
      break;
    }
    case 'concatrows': {
      const parts = m.parts.map((p) => sub(p) ?? tf.zeros([1, m.cols, p.rows]));
      out = tf.concat(sameRows(tf, parts), 2);
      break;
    }
    case 'sumrows': {
      const inner = sub(m.m);
      out = inner && tf.sum(inner, 2, true);
      break;
    }
    case 'broadcastrows': {
      const inner = sub(m.m);
      out = inner && tf.broadcastTo(inner, [inner.shape[0]!, m.cols, m.rows]);
      break;
    }
  }
  memo.set(m, out);
  return out;
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

type MatmulExpr = Extract<MatExpr, { kind: 'matmul' }>;

function evalMatmul(
  tf: Tf,
  g: Graph,
  m: MatmulExpr,
  v: readonly T[],
  env: StepEnv,
  sub: (e: MatExpr) => T | null,
  gathers: Map<MatExpr, Int32Array>,
): T | null {
  const W = env.params[m.param]!;
  const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(g, m.param));
  const outRows = m.transpose ? pc : pr; // per block
  const inRows = m.transpose ? pr : pc;
  const offset = columnSparseOffset(m.m);
  if (offset !== undefined) {
    // Inner column j holds one value, at row j − offset: the product is that column vector times
    // the matching column of P, gathered once per program into Pshift [cols, rows].
    const col = columnValues(tf, m.m, offset, v);
    if (!col) return null;
    let idx = gathers.get(m);
    if (!idx) {
      idx = shiftedColumnIndex(blocks, pr, pc, m.transpose, m.cols, offset, W.size);
      gathers.set(m, idx);
    }
    const padded = tf.concat([tf.reshape(W, [W.size]), tf.zeros([1])], 0);
    const Pshift = tf.reshape(tf.gather(padded, tf.tensor1d(idx, 'int32')), [1, m.cols, m.rows]);
    return tf.mul(tf.reshape(col, [col.shape[0]!, m.cols, 1]), Pshift);
  }
  const inner = sub(m.m);
  if (!inner) return null;
  const R = inner.shape[0]!;
  const X = tf.reshape(inner, [R * m.cols, blocks * inRows]);
  if (blocks === 1) {
    return tf.reshape(tf.matMul(X, tf.reshape(W, [pr, pc]), false, !m.transpose), [R, m.cols, outRows]);
  }
  const Xb = tf.transpose(tf.reshape(X, [R * m.cols, blocks, inRows]), [1, 0, 2]);
  const Y = tf.matMul(Xb, tf.reshape(W, [blocks, pr, pc]), false, !m.transpose);
  return tf.reshape(tf.transpose(Y, [1, 0, 2]), [R, m.cols, blocks * outRows]);
}

/**
 * For a column-sparse expression with `offset`, the [R, cols] vector of its only nonzero per column
 * (the entry at row j − offset), or null when it is zero.
 */
function columnValues(tf: Tf, m: MatExpr, offset: number, v: readonly T[]): T | null {
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
      const inner = columnValues(tf, m.m, offset - m.start, v);
      return inner && tf.mul(inner, inRows());
    }
    case 'concatrows': {
      // One part holds every nonzero (columnSparseOffset checked that).
      let at = 0;
      for (const p of m.parts) {
        if (p.kind !== 'zero') return columnValues(tf, p, offset + at, v);
        at += p.rows;
      }
      return null;
    }
    case 'rowscale': {
      const inner = columnValues(tf, m.m, offset, v);
      if (!inner) return null;
      const d = v[m.d]!;
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
