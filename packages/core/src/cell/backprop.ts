import type { GraphBuilder } from './builder.js';
import { minMaxDerivatives, unaryDerivative } from './derivative.js';
import { liveNodes, type NodeId } from './graph.js';

/** A contribution to a parameter's gradient from one (batch, time) element. */
export type ParamGradTerm =
  /** The param was read as a vector: its gradient gains this node. */
  | { readonly kind: 'vector'; readonly node: NodeId }
  /**
   * The param multiplied a vector: dW[k][i][j] += left[k·rows + i] · right[k·cols + j] for each
   * block k (one block for a dense param).
   */
  | { readonly kind: 'outer'; readonly left: NodeId; readonly right: NodeId };

export interface Cotangents {
  /** Cotangent accumulated at each node id (null: zero). */
  readonly at: ReadonlyMap<NodeId, NodeId>;
  readonly params: ReadonlyMap<string, ParamGradTerm[]>;
}

/**
 * Reverse-mode accumulation from `root` (seeded with the cotangent node `seed`) down to the
 * leaves. Used for VJPs of a step and for `grad` inside the cell language.
 */
export function backprop(b: GraphBuilder, root: NodeId, seed: NodeId): Cotangents {
  const ct = new Map<NodeId, NodeId>();
  const params = new Map<string, ParamGradTerm[]>();
  const accumulate = (id: NodeId, v: NodeId | null) => {
    if (v === null) return;
    const size = b.size(id);
    // An operand of size 1 that was broadcast receives the sum of the cotangent.
    const val = b.size(v) !== size && size === 1 ? b.sum(v) : b.broadcast(v, size);
    const prev = ct.get(id);
    ct.set(id, prev === undefined ? val : b.add(prev, val));
  };
  const addParam = (name: string, term: ParamGradTerm) => {
    const list = params.get(name) ?? [];
    list.push(term);
    params.set(name, list);
  };
  accumulate(root, seed);
  const order = liveNodes({ nodes: b.nodes, stateSize: 0, inputSize: 0, params: [] }, [root]);
  for (let k = order.length - 1; k >= 0; k--) {
    const id = order[k]!;
    const g = ct.get(id);
    if (g === undefined) continue;
    const node = b.node(id);
    switch (node.op) {
      case 'param':
        addParam(node.name, { kind: 'vector', node: g });
        break;
      case 'unary': {
        const d = unaryDerivative(b, node.fn, node.a, id);
        accumulate(node.a, d === null ? null : b.mul(g, d));
        break;
      }
      case 'binary':
        switch (node.fn) {
          case 'add':
            accumulate(node.a, g);
            accumulate(node.b, g);
            break;
          case 'sub':
            accumulate(node.a, g);
            accumulate(node.b, b.unary('neg', g));
            break;
          case 'mul':
            accumulate(node.a, b.mul(g, node.b));
            accumulate(node.b, b.mul(g, node.a));
            break;
          case 'div': {
            const q = b.div(g, node.b);
            accumulate(node.a, q);
            accumulate(node.b, b.unary('neg', b.mul(q, id)));
            break;
          }
          case 'min':
          case 'max': {
            const { da, db } = minMaxDerivatives(b, node.fn, node.a, node.b);
            // Constants need no cotangent; skipping them keeps VJP graphs small.
            if (b.node(node.a).op !== 'const') accumulate(node.a, b.mul(g, da()));
            if (b.node(node.b).op !== 'const') accumulate(node.b, b.mul(g, db()));
            break;
          }
        }
        break;
      case 'matvec':
        accumulate(node.v, b.matvec(node.param, g, !node.transpose));
        addParam(
          node.param,
          node.transpose
            ? { kind: 'outer', left: node.v, right: g }
            : { kind: 'outer', left: g, right: node.v },
        );
        break;
      case 'slice': {
        const total = b.size(node.a);
        const parts: NodeId[] = [];
        if (node.start > 0) parts.push(b.constant(new Array<number>(node.start).fill(0)));
        parts.push(g);
        const after = total - node.start - node.size;
        if (after > 0) parts.push(b.constant(new Array<number>(after).fill(0)));
        accumulate(node.a, b.concat(parts));
        break;
      }
      case 'concat': {
        let at = 0;
        for (const p of node.parts) {
          const s = b.size(p);
          accumulate(p, b.slice(g, at, s));
          at += s;
        }
        break;
      }
      case 'sum':
        accumulate(node.a, b.broadcast(g, b.size(node.a)));
        break;
      default:
        break;
    }
  }
  return { at: ct, params };
}
