import { GraphBuilder } from './builder.js';
import { minMaxDerivatives, unaryDerivative } from './derivative.js';
import type { Graph, NodeId } from './graph.js';
import type { MatExpr } from './matexpr.js';
import * as M from './matexpr.js';

/**
 * Tangents are kept as sums Σ diag(d_k)·base_k over *distinct* bases (a select, a matmul, a row
 * slice, …, never a sum or a scaling): scalings are distributed over sums and terms on the same
 * base merged into one coefficient vector. Without it a tangent was a DAG whose tree doubled with
 * every stage that read its input twice (v ← 0.9·v + 0.1·tanh(v + b): 2^d terms after d stages),
 * and backends that expand the expression per entry took seconds to minutes to generate it (an
 * elementwise RK4 step of 3 substeps overflowed the cpu backend's stack); merged, such a chain is
 * one diag(d)·select whatever its depth.
 */
class TangentAlgebra {
  private readonly key = M.matExprKeys();
  private oneNode: NodeId | undefined;

  constructor(private readonly b: GraphBuilder) {}

  /** diag(d)·m (d null: a zero coefficient). */
  scale(d: NodeId | null, m: MatExpr): MatExpr {
    if (d === null) return M.zero(m.rows, m.cols);
    return this.sum([m], d, m.rows, m.cols);
  }

  /** Σ terms, each scaled by `d` where given, in the canonical form above. */
  sum(terms: readonly MatExpr[], d?: NodeId, rows = terms[0]!.rows, cols = terms[0]!.cols): MatExpr {
    const b = this.b;
    const merged = new Map<number, { d: NodeId | undefined; base: MatExpr }>();
    const visit = (t: MatExpr, c: NodeId | undefined): void => {
      if (t.kind === 'zero') return;
      if (c !== undefined && b.uniformConstant(c) === 0) return;
      if (t.kind === 'add') {
        for (const u of t.terms) visit(u, c);
        return;
      }
      if (t.kind === 'rowscale') {
        visit(t.m, c === undefined ? t.d : b.mul(c, t.d));
        return;
      }
      const k = this.key(t);
      const prev = merged.get(k);
      if (!prev) merged.set(k, { d: c, base: t });
      else prev.d = b.add(prev.d ?? this.one(), c ?? this.one());
    };
    for (const t of terms) visit(t, d);
    const out: MatExpr[] = [];
    for (const { d: c, base } of merged.values()) {
      const u = c === undefined ? 1 : b.uniformConstant(c);
      if (u === 0) continue;
      out.push(u === 1 ? base : { kind: 'rowscale', d: c!, m: base, rows: base.rows, cols: base.cols });
    }
    return out.length === 0 ? M.zero(rows, cols) : M.add(out);
  }

  /** Rows start .. start + rows of m, pushed through sums and scalings (the coefficients sliced). */
  slice(m: MatExpr, start: number, rows: number): MatExpr {
    if (start === 0 && rows === m.rows) return m;
    if (m.kind === 'add') return this.sum(m.terms.map((t) => this.slice(t, start, rows)), undefined, rows, m.cols);
    if (m.kind === 'rowscale') {
      const d = this.b.node(m.d).size === 1 ? m.d : this.b.slice(m.d, start, rows);
      return this.scale(d, this.slice(m.m, start, rows));
    }
    return M.sliceRows(m, start, rows);
  }

  private one(): NodeId {
    this.oneNode ??= this.b.scalar(1);
    return this.oneNode;
  }
}

export interface JacobianResult {
  /** The input graph with the coefficient vectors the expression reads appended. */
  readonly graph: Graph;
  /** ∂output/∂state as a matrix expression. */
  readonly expr: MatExpr;
}

/**
 * Forward-mode differentiation of `output` with respect to the state, by propagating a matrix
 * expression through every node. Tangents stay structured (zero, selections of the identity,
 * row-scalings, products with a param), never dense temporaries.
 */
export function jacobianExpr(graph: Graph, output: NodeId): JacobianResult {
  const b = GraphBuilder.extend(graph);
  const alg = new TangentAlgebra(b);
  const n = graph.stateSize;
  const tangent: MatExpr[] = [];
  const count = output + 1;
  for (let id = 0; id < count; id++) {
    const node = b.node(id);
    let t: MatExpr;
    switch (node.op) {
      case 'state':
        t = M.select(node.size, n, 0);
        break;
      case 'input':
      case 'cotangent':
      case 'param':
      case 'const':
        t = M.zero(node.size, n);
        break;
      case 'unary': {
        const ta = tangent[node.a]!;
        t = M.isZero(ta) ? M.zero(node.size, n) : alg.scale(unaryDerivative(b, node.fn, node.a, id), ta);
        break;
      }
      case 'binary': {
        const ta = M.broadcastRows(tangent[node.a]!, node.size);
        const tb = M.broadcastRows(tangent[node.b]!, node.size);
        if (M.isZero(ta) && M.isZero(tb)) {
          t = M.zero(node.size, n);
          break;
        }
        switch (node.fn) {
          case 'add':
            t = alg.sum([ta, tb]);
            break;
          case 'sub':
            t = alg.sum([ta, alg.scale(b.scalar(-1), tb)]);
            break;
          case 'mul':
            t = alg.sum([alg.scale(node.b, ta), alg.scale(node.a, tb)]);
            break;
          case 'div': {
            const inv = b.div(b.scalar(1), node.b);
            t = alg.sum([alg.scale(inv, ta), alg.scale(b.unary('neg', b.mul(id, inv)), tb)]);
            break;
          }
          case 'min':
          case 'max': {
            const { da, db } = minMaxDerivatives(b, node.fn, node.a, node.b);
            const terms: MatExpr[] = [];
            if (!M.isZero(ta)) terms.push(alg.scale(da(), ta));
            if (!M.isZero(tb)) terms.push(alg.scale(db(), tb));
            t = terms.length === 0 ? M.zero(node.size, n) : alg.sum(terms);
            break;
          }
        }
        break;
      }
      case 'matvec':
        t = M.matmul(node.param, node.transpose, node.size, tangent[node.v]!);
        break;
      case 'slice':
        t = alg.slice(tangent[node.a]!, node.start, node.size);
        break;
      case 'concat':
        t = M.concatRows(node.parts.map((p) => tangent[p]!));
        break;
      case 'sum':
        t = M.sumRows(tangent[node.a]!);
        break;
    }
    tangent.push(t);
  }
  return { graph: b.graph(), expr: tangent[output]! };
}
