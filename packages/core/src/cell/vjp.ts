import { backprop, type ParamGradTerm } from './backprop.js';
import { GraphBuilder } from './builder.js';
import type { Graph, NodeId } from './graph.js';

/**
 * The VJP of one step: given the cotangent ḡ of f(y, x; θ), the graph computes ∂⟨ḡ, f⟩/∂y and
 * ∂⟨ḡ, f⟩/∂x per (batch, time) element, and lists per-element terms whose sum over all elements is
 * ∂⟨ḡ, f⟩/∂θ.
 */
export interface VjpProgram {
  readonly graph: Graph;
  /** The graph's `cotangent` input node (size n). */
  readonly cotangent: NodeId;
  /** null where the gradient is identically zero. */
  readonly dState: NodeId | null;
  readonly dInput: NodeId | null;
  readonly params: Readonly<Record<string, readonly ParamGradTerm[]>>;
}

export function vjpProgram(graph: Graph, output: NodeId): VjpProgram {
  const b = GraphBuilder.extend(graph);
  const seed = b.cotangent(b.size(output));
  const { at, params } = backprop(b, output, seed);
  const find = (op: 'state' | 'input') => {
    const id = b.nodes.findIndex((n) => n.op === op);
    return id < 0 ? null : (at.get(id) ?? null);
  };
  const dState = find('state');
  const dInput = find('input');
  return { graph: b.graph(), cotangent: seed, dState, dInput, params: Object.fromEntries(params) };
}
