import { GraphBuilder } from './builder.js';
import { minMaxDerivatives, unaryDerivative } from './derivative.js';
import type { Graph, NodeId } from './graph.js';
import type { MatExpr } from './matexpr.js';
import * as M from './matexpr.js';

/** diag(d)·m, merging nested scalings into one coefficient vector. */
function rowscale(b: GraphBuilder, d: NodeId | null, m: MatExpr): MatExpr {
  if (d === null || m.kind === 'zero') return M.zero(m.rows, m.cols);
  const c = b.uniformConstant(d);
  if (c === 1) return m;
  if (c === 0) return M.zero(m.rows, m.cols);
  if (m.kind === 'rowscale') return rowscale(b, b.mul(d, m.d), m.m);
  return { kind: 'rowscale', d, m, rows: m.rows, cols: m.cols };
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
        t = M.isZero(ta) ? M.zero(node.size, n) : rowscale(b, unaryDerivative(b, node.fn, node.a, id), ta);
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
            t = M.add([ta, tb]);
            break;
          case 'sub':
            t = M.add([ta, rowscale(b, b.scalar(-1), tb)]);
            break;
          case 'mul':
            t = M.add([rowscale(b, node.b, ta), rowscale(b, node.a, tb)]);
            break;
          case 'div': {
            const inv = b.div(b.scalar(1), node.b);
            t = M.add([rowscale(b, inv, ta), rowscale(b, b.unary('neg', b.mul(id, inv)), tb)]);
            break;
          }
          case 'min':
          case 'max': {
            const { da, db } = minMaxDerivatives(b, node.fn, node.a, node.b);
            const terms: MatExpr[] = [];
            if (!M.isZero(ta)) terms.push(rowscale(b, da(), ta));
            if (!M.isZero(tb)) terms.push(rowscale(b, db(), tb));
            t = M.add(terms);
            break;
          }
        }
        break;
      }
      case 'matvec':
        t = M.matmul(node.param, node.transpose, node.size, tangent[node.v]!);
        break;
      case 'slice':
        t = M.sliceRows(tangent[node.a]!, node.start, node.size);
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
