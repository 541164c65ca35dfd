import { backprop } from './backprop.js';
import { GraphBuilder } from './builder.js';
import type { Cell } from './cell.js';
import type { Graph, NodeId } from './graph.js';

/**
 * The input derivative of a step's Jacobian, contracted: with the graph's cotangent leaf w,
 * `ju` is u = J(y, x)ᵀw and `dx` is ∂⟨u, f(y, x)⟩/∂x = (∂(Jᵀw)/∂x)ᵀ f + (∂f/∂x)ᵀ u. The caller
 * subtracts the second term (the input VJP with cotangent u) to keep ∂/∂x [wᵀ J(y, x) v] at v = f,
 * the way x moves an ODE scheme that averages Jacobians over an interval. A second backprop
 * through the step's VJP, as the cell language's `grad` does for Hamiltonian fields.
 */
export interface JacobianInputVjp {
  readonly graph: Graph;
  readonly ju: NodeId;
  readonly dx: NodeId;
}

const programs = new WeakMap<Cell, JacobianInputVjp | null>();

/**
 * null where f does not read y or does not read x (the term is then zero). A Jacobian that reads
 * no x still gets a program: its `dx` is the part through f alone, which the caller subtracts to 0.
 */
export function jacobianInputVjp(cell: Cell): JacobianInputVjp | null {
  if (programs.has(cell)) return programs.get(cell)!;
  const v = cell.vjp;
  let out: JacobianInputVjp | null = null;
  if (v.dState !== null && v.dInput !== null) {
    const b = GraphBuilder.extend(v.graph);
    const s = b.sum(b.mul(v.dState, cell.output));
    const { at } = backprop(b, s, b.scalar(1));
    const input = b.nodes.findIndex((node) => node.op === 'input');
    const dx = input < 0 ? undefined : at.get(input);
    if (dx !== undefined) out = { graph: b.graph(), ju: v.dState, dx };
  }
  programs.set(cell, out);
  return out;
}
