import { type Cell, defineCell } from '../cell/cell.js';
import { add, concat, grad, matvec, neg, slice, softplus, sum, tanh, type Vec } from '../cell/lang.js';

export interface HamiltonianOptions {
  /** Degrees of freedom d: the state is [q; p] of size 2d. */
  readonly dof: number;
  /** Hidden widths of the MLP H(q, p) (default [64, 64]). */
  readonly hidden?: readonly number[];
  readonly activation?: 'tanh' | 'softplus';
}

/**
 * Hamiltonian neural network: a scalar H = MLP(q, p) and the vector field f = (∂H/∂p, −∂H/∂q),
 * written with `grad` so its Jacobian (the symplectic Hessian) is derived like any other cell's.
 */
export function hamiltonian({ dof: d, hidden = [64, 64], activation = 'softplus' }: HamiltonianOptions): Cell {
  const widths = [2 * d, ...hidden, 1];
  const params: Record<string, number[]> = {};
  const init: Record<string, { uniform: number }> = {};
  for (let l = 0; l + 1 < widths.length; l++) {
    params[`W${l}`] = [widths[l + 1]!, widths[l]!];
    params[`b${l}`] = [widths[l + 1]!];
    init[`W${l}`] = { uniform: 1 / Math.sqrt(widths[l]!) };
    init[`b${l}`] = { uniform: 1 / Math.sqrt(widths[l]!) };
  }
  const act = activation === 'tanh' ? tanh : softplus;
  return defineCell(
    { name: `hnn(dof=${d}, hidden=[${hidden.join(',')}])`, state: 2 * d, input: 0, params, init },
    (y, _x, p) => {
      let v: Vec = y;
      const layers = widths.length - 1;
      for (let l = 0; l < layers; l++) {
        v = add(matvec(p[`W${l}`]!, v), p[`b${l}`]!);
        if (l + 1 < layers) v = act(v);
      }
      const g = grad(sum(v), y);
      return concat(slice(g, d, d), neg(slice(g, 0, d)));
    },
  );
}
