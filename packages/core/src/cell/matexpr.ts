import type { NodeId } from './graph.js';

/**
 * Matrix expressions: the Jacobian ∂v/∂y of a graph node v (rows = size of v) with respect to the
 * state y (cols = n), written over the graph's vector nodes and its matrix params. Entry semantics,
 * which every backend implements:
 *
 *   zero                 M[i][j] = 0
 *   select(offset)       M[i][j] = 1 if j = i + offset, else 0        (identity, slices of it)
 *   rowscale(d, m)       M[i][j] = d[i] · m[i][j]                     (d of size 1 broadcasts)
 *   add(terms)           M[i][j] = Σ terms[i][j]
 *   matmul(P, m)         M[i][j] = Σ_k P[i][k] · m[k][j]              (P dense or block-diagonal, or Pᵀ)
 *   slicerows(m, start)  M[i][j] = m[start + i][j]
 *   concatrows(parts)    rows of the parts stacked
 *   sumrows(m)           M[0][j] = Σ_i m[i][j]
 *   broadcastrows(m)     M[i][j] = m[0][j]
 *
 * The constructors below simplify as they build, so a GRU's Jacobian comes out as a sum of
 * rowscale(d, matmul(P, select)) terms: O(1) work per entry once the vectors d exist.
 */
export type MatExpr =
  | { readonly kind: 'zero'; readonly rows: number; readonly cols: number }
  | { readonly kind: 'select'; readonly rows: number; readonly cols: number; readonly offset: number }
  | { readonly kind: 'rowscale'; readonly d: NodeId; readonly m: MatExpr; readonly rows: number; readonly cols: number }
  | { readonly kind: 'add'; readonly terms: readonly MatExpr[]; readonly rows: number; readonly cols: number }
  | {
      readonly kind: 'matmul';
      readonly param: string;
      readonly transpose: boolean;
      readonly m: MatExpr;
      readonly rows: number;
      readonly cols: number;
    }
  | { readonly kind: 'slicerows'; readonly m: MatExpr; readonly start: number; readonly rows: number; readonly cols: number }
  | { readonly kind: 'concatrows'; readonly parts: readonly MatExpr[]; readonly rows: number; readonly cols: number }
  | { readonly kind: 'sumrows'; readonly m: MatExpr; readonly rows: 1; readonly cols: number }
  | { readonly kind: 'broadcastrows'; readonly m: MatExpr; readonly rows: number; readonly cols: number };

export function isZero(m: MatExpr): boolean {
  return m.kind === 'zero';
}

/**
 * For a column-sparse expression (each column j has at most one nonzero, at row j − offset), the
 * offset; otherwise undefined. Backends use it to turn matmul(P, m) into a gather instead of a sum.
 */
export function columnSparseOffset(m: MatExpr): number | undefined {
  switch (m.kind) {
    case 'select':
      return m.offset;
    case 'rowscale':
      return columnSparseOffset(m.m);
    case 'slicerows': {
      const o = columnSparseOffset(m.m);
      return o === undefined ? undefined : o + m.start;
    }
    case 'concatrows': {
      // Stacked with zero blocks (e.g. the tangent of concat(h, x)): one part holds every nonzero.
      const live = m.parts.filter((p) => p.kind !== 'zero');
      const only = live[0];
      if (live.length !== 1 || !only) return undefined;
      const o = columnSparseOffset(only);
      if (o === undefined) return undefined;
      let at = 0;
      for (const p of m.parts) {
        if (p === only) break;
        at += p.rows;
      }
      return o - at;
    }
    default:
      return undefined;
  }
}

/** Every vector node an expression reads (the coefficient vectors of rowscale). */
export function matExprNodes(m: MatExpr, out = new Set<NodeId>()): Set<NodeId> {
  switch (m.kind) {
    case 'rowscale':
      out.add(m.d);
      matExprNodes(m.m, out);
      break;
    case 'add':
      for (const t of m.terms) matExprNodes(t, out);
      break;
    case 'concatrows':
      for (const t of m.parts) matExprNodes(t, out);
      break;
    case 'matmul':
    case 'slicerows':
    case 'sumrows':
    case 'broadcastrows':
      matExprNodes(m.m, out);
      break;
    default:
      break;
  }
  return out;
}

export const zero = (rows: number, cols: number): MatExpr => ({ kind: 'zero', rows, cols });

export const select = (rows: number, cols: number, offset: number): MatExpr =>
  // A select whose diagonal misses the matrix entirely is zero.
  offset >= cols || offset + rows <= 0 ? zero(rows, cols) : { kind: 'select', rows, cols, offset };

export function add(terms: readonly MatExpr[]): MatExpr {
  const first = terms[0];
  if (!first) throw new Error('add of no matrices');
  const flat: MatExpr[] = [];
  for (const t of terms) {
    if (t.rows !== first.rows || t.cols !== first.cols) {
      throw new Error(`matrix add: ${t.rows}×${t.cols} vs ${first.rows}×${first.cols}`);
    }
    if (t.kind === 'zero') continue;
    if (t.kind === 'add') flat.push(...t.terms);
    else flat.push(t);
  }
  if (flat.length === 0) return zero(first.rows, first.cols);
  if (flat.length === 1) return flat[0]!;
  return { kind: 'add', terms: flat, rows: first.rows, cols: first.cols };
}

export function matmul(param: string, transpose: boolean, rows: number, m: MatExpr): MatExpr {
  if (m.kind === 'zero') return zero(rows, m.cols);
  return { kind: 'matmul', param, transpose, m, rows, cols: m.cols };
}

export function sliceRows(m: MatExpr, start: number, rows: number): MatExpr {
  if (start === 0 && rows === m.rows) return m;
  switch (m.kind) {
    case 'zero':
      return zero(rows, m.cols);
    case 'select':
      return select(rows, m.cols, m.offset + start);
    case 'broadcastrows':
      return { ...m, rows };
    case 'add':
      return add(m.terms.map((t) => sliceRows(t, start, rows)));
    case 'concatrows': {
      // Keep only the parts the slice touches.
      const picked: MatExpr[] = [];
      let at = 0;
      for (const p of m.parts) {
        const lo = Math.max(start, at);
        const hi = Math.min(start + rows, at + p.rows);
        if (lo < hi) picked.push(sliceRows(p, lo - at, hi - lo));
        at += p.rows;
      }
      return concatRows(picked);
    }
    default:
      return { kind: 'slicerows', m, start, rows, cols: m.cols };
  }
}

export function concatRows(parts: readonly MatExpr[]): MatExpr {
  const first = parts[0];
  if (!first) throw new Error('concat of no matrices');
  if (parts.length === 1) return first;
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  if (parts.every((p) => p.kind === 'zero')) return zero(rows, first.cols);
  // Stacked slices of one identity are that identity's slice.
  let at = 0;
  let shift: number | undefined;
  let contiguous = true;
  for (const p of parts) {
    if (p.kind !== 'select' || (shift !== undefined && p.offset - at !== shift)) {
      contiguous = false;
      break;
    }
    shift = p.offset - at;
    at += p.rows;
  }
  if (contiguous && shift !== undefined) return select(rows, first.cols, shift);
  return { kind: 'concatrows', parts: [...parts], rows, cols: first.cols };
}

export function sumRows(m: MatExpr): MatExpr {
  if (m.rows === 1) return m;
  if (m.kind === 'zero') return zero(1, m.cols);
  return { kind: 'sumrows', m, rows: 1, cols: m.cols };
}

export function broadcastRows(m: MatExpr, rows: number): MatExpr {
  if (m.rows === rows) return m;
  if (m.rows !== 1) throw new Error(`broadcast of a ${m.rows}-row matrix`);
  if (m.kind === 'zero') return zero(rows, m.cols);
  return { kind: 'broadcastrows', m, rows, cols: m.cols };
}

/**
 * Structural keys of matrix expressions: structurally equal expressions (built twice, e.g. once per
 * part of a concat, or once per path through a cell) get the same small integer, interned so keys
 * stay short however deep the expression. One keyer per expression family: keys of different
 * keyers are unrelated.
 */
export function matExprKeys(): (m: MatExpr) => number {
  const ids = new Map<string, number>();
  const memo = new WeakMap<MatExpr, number>();
  const keyOf = (m: MatExpr): number => {
    const hit = memo.get(m);
    if (hit !== undefined) return hit;
    let k: string;
    switch (m.kind) {
      case 'zero':
        k = 'z';
        break;
      case 'select':
        k = `s${m.offset}`;
        break;
      case 'rowscale':
        k = `d${m.d}(${keyOf(m.m)})`;
        break;
      case 'add':
        k = `a(${m.terms.map(keyOf).join(',')})`;
        break;
      case 'matmul':
        k = `m${m.transpose ? 'T' : ''}:${m.param}(${keyOf(m.m)})`;
        break;
      case 'slicerows':
        k = `r${m.start}(${keyOf(m.m)})`;
        break;
      case 'concatrows':
        k = `c(${m.parts.map(keyOf).join(',')})`;
        break;
      case 'sumrows':
        k = `u(${keyOf(m.m)})`;
        break;
      case 'broadcastrows':
        k = `b(${keyOf(m.m)})`;
        break;
    }
    k = `${k}${m.rows}x${m.cols}`;
    let id = ids.get(k);
    if (id === undefined) {
      id = ids.size;
      ids.set(k, id);
    }
    memo.set(m, id);
    return id;
  };
  return keyOf;
}
