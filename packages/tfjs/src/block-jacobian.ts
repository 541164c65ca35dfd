import { type Graph, type MatExpr, matExprNodes, type NodeId } from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import { binaryVec, expandRows, type Vec } from './broadcast.js';
import { DenseEvaluator } from './dense-matexpr.js';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/** Rows [start, start + rows) of a per-element vector node (size-1 nodes broadcast). */
interface Coef {
  readonly id: NodeId;
  readonly start: number;
}

/** diag(Π coefs) · C, with C an expression that is the same for every element. */
interface SepTerm {
  readonly coefs: readonly Coef[];
  readonly C: MatExpr;
}

/** Rows [start, start + rows) of the Jacobian: separable terms plus terms evaluated densely. */
interface Part {
  readonly start: number;
  readonly rows: number;
  /** Terms grouped by their constant factor (structurally equal C), coefficients summed. */
  readonly groups: { readonly C: MatExpr; readonly terms: (readonly Coef[])[] }[];
  readonly dense: MatExpr[];
}

export interface BlockJacobianPlan {
  readonly n: number;
  readonly s: number;
  readonly parts: readonly Part[];
  /** Floats held per element while the Jacobian is assembled (for sizing slabs). */
  readonly floatsPerElement: number;
}

/**
 * Plans the Jacobian's diagonal blocks J [R, n/s, s, s] without forming dense n×n matrices per
 * element. A cell's Jacobian is a sum of terms diag(d₁ ⊙ d₂ ⊙ …) · C where the d are per-element
 * vectors and C is the same for every element (a param's columns, an identity; e.g. a GRU's
 * rowscale(d, matmul(R, select))). Each block row i then only needs the s entries of C's row i in
 * its block, a constant [n, s] window; the per-element work is J[r, i, :] = Σ_t coef_t[r, i] ·
 * Cw_t[i, :], one batched matMul. Terms of any other form (a per-element factor inside a matmul)
 * are evaluated densely as before and their blocks gathered: same entries either way. `dense`
 * evaluates the whole expression that way (the reference the blocks are tested against).
 */
export function planBlockJacobian(
  g: Graph,
  expr: MatExpr,
  s: number,
  perElement: Uint8Array,
  dense: boolean,
): BlockJacobianPlan {
  const n = g.stateSize;
  if (dense) {
    const parts = [{ start: 0, rows: n, groups: [], dense: [expr] }];
    return { n, s, parts, floatsPerElement: 2 * n * s + denseFloats(expr) };
  }
  const varies = (m: MatExpr) => [...matExprNodes(m)].some((id) => perElement[id] === 1);
  const separate = (m: MatExpr): SepTerm[] | null => {
    if (!varies(m)) return [{ coefs: [], C: m }];
    switch (m.kind) {
      case 'rowscale': {
        const inner = separate(m.m);
        if (!inner) return null;
        // Diagonal factors commute: a constant d joins C, a per-element one the coefficients.
        if (!perElement[m.d]) return inner.map((t) => ({ coefs: t.coefs, C: { ...m, m: t.C } }));
        return inner.map((t) => ({ coefs: [...t.coefs, { id: m.d, start: 0 }], C: t.C }));
      }
      case 'add': {
        const out: SepTerm[] = [];
        for (const t of m.terms) {
          const sep = separate(t);
          if (!sep) return null;
          out.push(...sep);
        }
        return out;
      }
      case 'slicerows': {
        const inner = separate(m.m);
        if (!inner) return null;
        return inner.map((t) => ({
          coefs: t.coefs.map((c) => ({ id: c.id, start: c.start + m.start })),
          C: { kind: 'slicerows', m: t.C, start: m.start, rows: m.rows, cols: m.cols },
        }));
      }
      default:
        return null;
    }
  };
  const keys = new Map<MatExpr, string>();
  const parts: Part[] = [];
  const split = (m: MatExpr, start: number) => {
    if (m.kind === 'concatrows') {
      let at = start;
      for (const p of m.parts) {
        split(p, at);
        at += p.rows;
      }
      return;
    }
    const part: Part = { start, rows: m.rows, groups: [], dense: [] };
    const byKey = new Map<string, Part['groups'][number]>();
    for (const t of m.kind === 'add' ? m.terms : m.kind === 'zero' ? [] : [m]) {
      const sep = separate(t);
      if (!sep) {
        part.dense.push(t);
        continue;
      }
      for (const { coefs, C } of sep) {
        const key = exprKey(C, keys);
        let group = byKey.get(key);
        if (!group) {
          group = { C, terms: [] };
          byKey.set(key, group);
          part.groups.push(group);
        }
        group.terms.push(coefs);
      }
    }
    parts.push(part);
  };
  split(expr, 0);
  let floats = 2 * n * s;
  for (const p of parts) {
    floats += 2 * p.rows * p.groups.length;
    for (const d of p.dense) floats += denseFloats(d) + p.rows * s;
  }
  return { n, s, parts, floatsPerElement: floats };
}

/** Numbers per element a dense evaluation of `m` holds: every sub-expression as rows × cols. */
function denseFloats(m: MatExpr): number {
  let out = m.rows * m.cols;
  if ('m' in m) out += denseFloats(m.m);
  if ('terms' in m) for (const t of m.terms) out += denseFloats(t);
  if ('parts' in m) for (const t of m.parts) out += denseFloats(t);
  return out;
}

/** A structural key: equal keys, equal matrices. */
function exprKey(m: MatExpr, memo: Map<MatExpr, string>): string {
  let k = memo.get(m);
  if (k !== undefined) return k;
  const sub = (e: MatExpr) => exprKey(e, memo);
  switch (m.kind) {
    case 'zero':
      k = `0(${m.rows},${m.cols})`;
      break;
    case 'select':
      k = `I(${m.rows},${m.cols},${m.offset})`;
      break;
    case 'rowscale':
      k = `D(${m.d},${sub(m.m)})`;
      break;
    case 'add':
      k = `+(${m.terms.map(sub).join(',')})`;
      break;
    case 'matmul':
      k = `P(${m.param},${m.transpose},${m.rows},${sub(m.m)})`;
      break;
    case 'slicerows':
      k = `S(${m.start},${m.rows},${sub(m.m)})`;
      break;
    case 'concatrows':
      k = `C(${m.parts.map(sub).join(',')})`;
      break;
    case 'sumrows':
      k = `Σ(${sub(m.m)})`;
      break;
    case 'broadcastrows':
      k = `B(${m.rows},${sub(m.m)})`;
      break;
  }
  memo.set(m, k);
  return k;
}

/**
 * Flat indices into Mt [cols = n, rows] (a part's dense transposed form) of its block windows:
 * entry (i, c) reads M[i][base + c], base the first column of row start + i's block.
 */
function windowIndex(s: number, start: number, rows: number): Int32Array {
  const idx = new Int32Array(rows * s);
  for (let i = 0; i < rows; i++) {
    const base = Math.floor((start + i) / s) * s;
    for (let c = 0; c < s; c++) idx[i * s + c] = (base + c) * rows + i;
  }
  return idx;
}

export interface BlockJacobianEnv {
  readonly rows: number;
  readonly vec: (id: NodeId) => Vec;
  readonly params: Readonly<Record<string, T>>;
  /** Columns [start, start + size) of a per-element [rows, n] tensor. */
  readonly cut: (t: T, start: number, size: number) => T;
  /** Assemble the blocks by a host loop over the data (see `assembleOnHost`). */
  readonly hostLoops?: boolean;
}

/** J [R, n/s, s, s] for one evaluation; call inside tf.tidy. */
export function evalBlockJacobian(
  tf: Tf,
  g: Graph,
  plan: BlockJacobianPlan,
  env: BlockJacobianEnv,
  gathers: Map<MatExpr, Int32Array>,
): T {
  const { n, s } = plan;
  const R = env.rows;
  const dense = new DenseEvaluator(tf, g, env, gathers);
  const pieces: T[] = [];
  let any = false;
  for (const part of plan.parts) {
    const idx = tf.tensor1d(windowIndex(s, part.start, part.rows), 'int32');
    /** The block windows of a dense Mt [R', n, rows], as [R', rows·s]. */
    const windows = (Mt: T) => tf.gather(tf.reshape(Mt, [Mt.shape[0]!, n * part.rows]), idx, 1);
    const coefs: T[] = [];
    const mats: T[] = [];
    let constant: T | null = null;
    for (const { C, terms } of part.groups) {
      const Mt = dense.eval(C);
      if (!Mt) continue;
      const Cw = tf.reshape(windows(Mt), [part.rows, s]);
      // Terms with no per-element factor are constant (a cell with a state-independent term).
      const constantTerms = terms.filter((t) => t.length === 0).length;
      for (let k = 0; k < constantTerms; k++) constant = constant ? tf.add(constant, Cw) : Cw;
      if (constantTerms === terms.length) continue;
      let sum: Vec | null = null;
      for (const t of terms) {
        if (t.length === 0) continue;
        let prod: Vec | null = null;
        for (const c of t) {
          const v = coefficient(env, c, part.rows);
          prod = prod ? binaryVec(tf, 'mul', prod, v, R, env.hostLoops) : v;
        }
        sum = sum ? binaryVec(tf, 'add', sum, prod!, R, env.hostLoops) : prod;
      }
      const coef = sum!.size === part.rows ? sum!.t : tf.broadcastTo(sum!.t, [R, part.rows]);
      coefs.push(coef);
      mats.push(Cw);
    }
    let Jp: T | null = null;
    if (coefs.length > 0) {
      if (s === 1) {
        for (let k = 0; k < coefs.length; k++) {
          const term = tf.mul(coefs[k]!, tf.reshape(mats[k]!, [part.rows]));
          Jp = Jp ? tf.add(Jp, term) : term;
        }
      } else {
        // J[r, i, :] = Σ_k coef_k[r, i] · Cw_k[i, :]: a batched [1, K]·[K, s] per (r, i), the
        // [rows] batch of the windows broadcast over r.
        Jp = env.hostLoops
          ? assembleOnHost(tf, coefs, mats, R, part.rows, s)
          : tf.reshape(
              tf.matMul(tf.reshape(tf.stack(coefs, 2), [R, part.rows, 1, coefs.length]), tf.stack(mats, 1)),
              [R, part.rows * s],
            );
      }
    }
    if (constant) {
      const c = tf.reshape(constant, [part.rows * s]);
      Jp = Jp ? tf.add(Jp, c) : c;
    }
    for (const m of part.dense) {
      const Mt = dense.eval(m);
      if (!Mt) continue;
      const w = windows(Mt);
      const wt = w.shape[0] === 1 ? tf.reshape(w, [part.rows * s]) : w;
      Jp = Jp ? tf.add(Jp, wt) : wt;
    }
    if (Jp) any = true;
    pieces.push(Jp ?? tf.zeros([part.rows * s]));
  }
  if (!any) return tf.zeros([R, n / s, s, s]);
  const rows = pieces.map((p) => (p.rank === 2 ? p : expandRows(tf, p, R)));
  const J = rows.length === 1 ? rows[0]! : tf.concat(rows, 1);
  return tf.reshape(J, [R, n / s, s, s]);
}

/**
 * The batched matMul above as one loop over the tensors' data (engines that hold it in JavaScript,
 * tfjs cpu): the same sums in the same order (in double from k = 0, stored as float32), without
 * stacking the coefficients first; four outputs at a time share the coefficient loads.
 */
function assembleOnHost(tf: Tf, coefs: readonly T[], mats: readonly T[], R: number, rows: number, s: number): T {
  const cs = coefs.map((c) => c.dataSync() as Float32Array);
  const K = cs.length;
  const width = rows * s;
  // The windows interleaved: entry (i, j) of window k at ((i·s + j)·K + k).
  const mm = new Float64Array(width * K);
  mats.forEach((m, k) => {
    const d = m.dataSync() as Float32Array;
    for (let e = 0; e < width; e++) mm[e * K + k] = d[e]!;
  });
  const out = new Float32Array(R * width);
  const w = new Float64Array(K);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < rows; i++) {
      const e = r * rows + i;
      for (let k = 0; k < K; k++) w[k] = cs[k]![e]!;
      const o = e * s;
      let j = 0;
      for (; j + 4 <= s; j += 4) {
        const m0 = (i * s + j) * K;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let k = 0; k < K; k++) {
          const wk = w[k]!;
          s0 += wk * mm[m0 + k]!;
          s1 += wk * mm[m0 + K + k]!;
          s2 += wk * mm[m0 + 2 * K + k]!;
          s3 += wk * mm[m0 + 3 * K + k]!;
        }
        out[o + j] = s0;
        out[o + j + 1] = s1;
        out[o + j + 2] = s2;
        out[o + j + 3] = s3;
      }
      for (; j < s; j++) {
        const m0 = (i * s + j) * K;
        let sum = 0;
        for (let k = 0; k < K; k++) sum += w[k]! * mm[m0 + k]!;
        out[o + j] = sum;
      }
    }
  }
  return tf.tensor2d(out, [R, width], 'float32');
}

/** A coefficient's rows as [R, rows], or [R, 1] for a size-1 node (it broadcasts). */
function coefficient(env: BlockJacobianEnv, c: Coef, rows: number): Vec {
  const v = env.vec(c.id);
  if (v.size === 1 || (c.start === 0 && v.size === rows)) return v;
  return { t: env.cut(v.t, c.start, rows), perElement: true, size: rows };
}
