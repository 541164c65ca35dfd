import { columnSparseOffset, type Graph, type MatExpr, matrixLayout, type NodeId, paramSpec } from '@deerjs/core';
import { bound, uni } from './common.js';

/**
 * The products of `m` evaluated for many rows of one column by whatever reads them — the inner
 * matrix of a product (or of a sum or broadcast of rows) — whose own inner matrix is dense (not
 * column-sparse): a sum over their inner rows per entry. Read through per-entry functions, each
 * entry of the reader recomputes all of them (for the gradient field of an MLP with hidden layers
 * [64, 64], 64× the work of computing each once; each deeper layer another factor of its width).
 */
export function nestedProducts(m: MatExpr): Set<MatExpr> {
  const out = new Set<MatExpr>();
  /** Subexpressions walked, at the top (false) or nested (true): each at most once each way. */
  const seen = new Map<MatExpr, Set<boolean>>();
  const walk = (x: MatExpr, nested: boolean) => {
    const ways = seen.get(x) ?? new Set<boolean>();
    if (ways.has(nested)) return;
    ways.add(nested);
    seen.set(x, ways);
    switch (x.kind) {
      case 'zero':
      case 'select':
        return;
      case 'matmul':
        if (nested && columnSparseOffset(x.m) === undefined) out.add(x);
        walk(x.m, true);
        return;
      case 'sumrows':
      case 'broadcastrows':
        walk(x.m, true);
        return;
      case 'add':
        for (const t of x.terms) walk(t, nested);
        return;
      case 'concatrows':
        for (const t of x.parts) walk(t, nested);
        return;
      default:
        walk(x.m, nested);
    }
  };
  walk(m, false);
  return out;
}

/**
 * A Jacobian expression as WGSL: one function `m<k>(e: u32, r: i32, c: i32) -> f32` per distinct
 * subexpression, returning entry (r, c) for element e (see matexpr.ts for the entry semantics).
 * `coef(d, e, r)` reads entry r of coefficient vector d; `param(name, index)` a packed parameter.
 */
export class MatExprEmitter {
  readonly functions: string[] = [];
  /**
   * Column mode: calls `f(e, c)` that main makes first, in order, for the invocation's element and
   * column: each fills the column of a nested product (see nestedProducts) into a private array.
   */
  readonly fills: string[] = [];
  private readonly names = new Map<MatExpr, string>();
  private readonly nested: ReadonlySet<MatExpr>;

  /**
   * @param columnInvariant every call of the emitted functions within an invocation has the same
   *   (e, c) (an invocation computes one column): the row-independent ones (`sumrows`,
   *   `broadcastrows`) then keep their value in private variables after the first call, and the
   *   nested products of `root` (see nestedProducts) are computed once per invocation, a column
   *   at a time (`fills`), instead of once per entry that reads them.
   */
  constructor(
    private readonly graph: Graph,
    private readonly coef: (d: NodeId, e: string, r: string) => string,
    private readonly param: (name: string, index: string) => string,
    private readonly columnInvariant = false,
    root?: MatExpr,
  ) {
    this.nested = columnInvariant && root ? nestedProducts(root) : new Set();
  }

  /** The function name evaluating `m`. */
  fn(m: MatExpr): string {
    const hit = this.names.get(m);
    if (hit) return hit;
    const name = `m${this.names.size}`;
    this.names.set(m, name);
    if (m.kind === 'matmul' && this.nested.has(m)) {
      // Its inner functions (and their fills) first, then this column's fill.
      this.functions.push(
        `var<private> ${name}_col: array<f32, ${m.rows}>;`,
        `fn ${name}_fill(e: u32, c: i32) {\n${this.columnFill(m, `${name}_col`)}\n}`,
        `fn ${name}(e: u32, r: i32, c: i32) -> f32 {\n  return ${name}_col[r];\n}`,
      );
      this.fills.push(`${name}_fill`);
      return name;
    }
    const body = this.body(m);
    if (this.columnInvariant && (m.kind === 'sumrows' || m.kind === 'broadcastrows')) {
      this.functions.push(
        `var<private> ${name}_v: f32;\nvar<private> ${name}_ok: bool;`,
        `fn ${name}_value(e: u32, r: i32, c: i32) -> f32 {\n${body}\n}`,
        `fn ${name}(e: u32, r: i32, c: i32) -> f32 {\n  if (!${name}_ok) { ${name}_v = ${name}_value(e, r, c); ${name}_ok = true; }\n  return ${name}_v;\n}`,
      );
    } else this.functions.push(`fn ${name}(e: u32, r: i32, c: i32) -> f32 {\n${body}\n}`);
    return name;
  }

  private body(m: MatExpr): string {
    switch (m.kind) {
      case 'zero':
        return '  return 0.0;';
      case 'select':
        return `  return select(0.0, 1.0, c == r + ${m.offset});`;
      case 'rowscale': {
        const dSize = this.graph.nodes[m.d]!.size;
        const row = dSize === 1 ? '0' : 'r';
        return `  return ${this.coef(m.d, 'e', row)} * ${this.fn(m.m)}(e, r, c);`;
      }
      case 'add':
        return `  return ${m.terms.map((t) => `${this.fn(t)}(e, r, c)`).join(' + ')};`;
      case 'slicerows':
        return `  return ${this.fn(m.m)}(e, r + ${m.start}, c);`;
      case 'concatrows': {
        const lines: string[] = [];
        let at = 0;
        for (const p of m.parts) {
          lines.push(`  if (r < ${at + p.rows}) { return ${this.fn(p)}(e, r - ${at}, c); }`);
          at += p.rows;
        }
        lines.push('  return 0.0;');
        return lines.join('\n');
      }
      case 'sumrows':
        return `  var acc = 0.0;\n  for (var i = 0; i < ${bound(m.m.rows, m.m.rows, true)}; i++) { acc += ${this.fn(m.m)}(e, i, c); }\n  return acc;`;
      case 'broadcastrows':
        return `  return ${this.fn(m.m)}(e, 0, c);`;
      case 'matmul':
        return this.matmul(m);
    }
  }

  /** Statements writing column c of a product with a dense inner matrix into `col`, row by row. */
  private columnFill(m: Extract<MatExpr, { kind: 'matmul' }>, col: string): string {
    const { outRows, inRows, p } = this.productParam(m);
    const inner = this.fn(m.m);
    // Opaque bounds (see MAIN_HEAD's z, not in scope here): constant ones get unrolled.
    const opaque = (trips: number) => `${trips} + i32(${uni(7)})`;
    return `  for (var r = 0; r < ${opaque(m.rows)}; r++) {
    let b = r / ${outRows}; let i = r % ${outRows};
    var acc = 0.0;
    for (var k = 0; k < ${opaque(inRows)}; k++) { acc += ${p('k')} * ${inner}(e, b * ${inRows} + k, c); }
    ${col}[r] = acc;
  }`;
  }

  /** A product's parameter: rows out and in of its block, and P[i][k] inside block b as WGSL. */
  private productParam(m: Extract<MatExpr, { kind: 'matmul' }>) {
    const { rows: pr, cols: pc } = matrixLayout(paramSpec(this.graph, m.param));
    const p = (k: string) =>
      this.param(
        m.param,
        m.transpose ? `u32(b * ${pr * pc} + ${k} * ${pc} + i)` : `u32(b * ${pr * pc} + i * ${pc} + ${k})`,
      );
    return { outRows: m.transpose ? pc : pr, inRows: m.transpose ? pr : pc, p };
  }

  private matmul(m: Extract<MatExpr, { kind: 'matmul' }>): string {
    const { outRows, inRows, p } = this.productParam(m);
    const head = `  let b = r / ${outRows}; let i = r % ${outRows};`;
    const inner = this.fn(m.m);
    const offset = columnSparseOffset(m.m);
    if (offset !== undefined) {
      // Column c of the inner matrix has its only nonzero at row c − offset: one product.
      return `${head}
  let kk = c - ${offset};
  if (kk < 0 || kk >= ${m.m.rows} || kk / ${inRows} != b) { return 0.0; }
  let k = kk % ${inRows};
  return ${p('k')} * ${inner}(e, kk, c);`;
    }
    return `${head}
  var acc = 0.0;
  for (var k = 0; k < ${bound(inRows, inRows, true)}; k++) { acc += ${p('k')} * ${inner}(e, b * ${inRows} + k, c); }
  return acc;`;
  }
}


/** Whether `m` has entries that are the same in every row (`sumrows`, `broadcastrows`). */
export function hasRowFreeEntries(m: MatExpr, seen = new Set<MatExpr>()): boolean {
  if (seen.has(m)) return false;
  seen.add(m);
  switch (m.kind) {
    case 'sumrows':
    case 'broadcastrows':
      return true;
    case 'zero':
    case 'select':
      return false;
    case 'add':
      return m.terms.some((t) => hasRowFreeEntries(t, seen));
    case 'concatrows':
      return m.parts.some((t) => hasRowFreeEntries(t, seen));
    default:
      return hasRowFreeEntries(m.m, seen);
  }
}

/** Most product terms the unrolled Jacobian of one element may have (beyond: per-entry functions). */
export const MAX_UNROLLED_TERMS = 2048;

/**
 * Entries of products already written as WGSL `let`s (see unrolledEntry): the statements, each
 * before any that reads it, and the name (or null: structurally zero) of each product entry.
 */
export interface SharedEntries {
  readonly lets: string[];
  readonly names: Map<string, string | null>;
  readonly ids: Map<MatExpr, number>;
}

export const sharedEntries = (): SharedEntries => ({ lets: [], names: new Map(), ids: new Map() });

/**
 * Entry (r, c) of a Jacobian expression as one WGSL expression over constant indices, or null
 * where it is structurally zero: selects and block structure resolve while generating, so a
 * GRU's entry is a few products. `coef(d, r)` reads entry r of coefficient vector d, `param(name,
 * index)` a packed parameter entry; `budget.terms` counts the products emitted. With `shared`,
 * each entry of a product that sums several terms becomes a `let` (shared.lets) the first time and
 * is read by name after: products nested in products (a gradient field's Hessian through hidden
 * layers) are summed once per element, not once for every entry that reads them.
 */
export function unrolledEntry(
  graph: Graph,
  m: MatExpr,
  r: number,
  c: number,
  coef: (d: NodeId, r: number) => string,
  param: (name: string, index: number) => string,
  budget: { terms: number },
  shared?: SharedEntries,
): string | null {
  if (budget.terms > MAX_UNROLLED_TERMS) return null;
  const at = (x: MatExpr, i: number, j: number) => unrolledEntry(graph, x, i, j, coef, param, budget, shared);
  const sum = (parts: (string | null)[]): string | null => {
    const live = parts.filter((p): p is string => p !== null);
    return live.length === 0 ? null : live.length === 1 ? live[0]! : `(${live.join(' + ')})`;
  };
  switch (m.kind) {
    case 'zero':
      return null;
    case 'select':
      return c === r + m.offset ? '1.0' : null;
    case 'rowscale': {
      const inner = at(m.m, r, c);
      if (inner === null) return null;
      budget.terms++;
      const d = coef(m.d, graph.nodes[m.d]!.size === 1 ? 0 : r);
      return inner === '1.0' ? d : `${d} * ${inner}`;
    }
    case 'add':
      return sum(m.terms.map((t) => at(t, r, c)));
    case 'slicerows':
      return at(m.m, r + m.start, c);
    case 'concatrows': {
      let start = 0;
      for (const p of m.parts) {
        if (r < start + p.rows) return at(p, r - start, c);
        start += p.rows;
      }
      return null;
    }
    case 'sumrows':
      return sum(Array.from({ length: m.m.rows }, (_, i) => at(m.m, i, c)));
    case 'broadcastrows':
      return at(m.m, 0, c);
    case 'matmul': {
      let key = '';
      if (shared) {
        let id = shared.ids.get(m);
        if (id === undefined) {
          id = shared.ids.size;
          shared.ids.set(m, id);
        }
        key = `${id}:${r}:${c}`;
        const hit = shared.names.get(key);
        if (hit !== undefined) return hit;
      }
      const { rows: pr, cols: pc } = matrixLayout(paramSpec(graph, m.param));
      const outRows = m.transpose ? pc : pr;
      const inRows = m.transpose ? pr : pc;
      const b = Math.floor(r / outRows);
      const i = r % outRows;
      const terms: string[] = [];
      for (let k = 0; k < inRows; k++) {
        const inner = at(m.m, b * inRows + k, c);
        if (inner === null) continue;
        budget.terms++;
        const p = param(m.param, m.transpose ? b * pr * pc + k * pc + i : b * pr * pc + i * pc + k);
        terms.push(inner === '1.0' ? p : `${p} * ${inner}`);
      }
      let v = sum(terms);
      if (shared) {
        if (v !== null && terms.length > 1) {
          const name = `jt${shared.lets.length}`;
          shared.lets.push(`let ${name} = ${v};`);
          v = name;
        }
        shared.names.set(key, v);
      }
      return v;
    }
  }
}
