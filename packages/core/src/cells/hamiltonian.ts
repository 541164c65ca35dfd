import { type Cell, defineCell } from '../cell/cell.js';
import { concat, grad, neg, slice, softplus, sum, tanh } from '../cell/lang.js';
import { CellDefinitionError } from '../errors.js';
import { checkCellOptions, checkSize } from './gate-clip.js';
import { applyMlp, mlpParams } from './mlp.js';

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
export function hamiltonian(options: HamiltonianOptions): Cell {
  const { dof, hidden = [64, 64], activation = 'softplus' } = checkCellOptions('cells.hamiltonian', options, ['dof', 'hidden', 'activation']);
  const d = checkSize('cells.hamiltonian', 'dof', dof);
  if (!Array.isArray(hidden)) throw new CellDefinitionError('cells.hamiltonian: hidden', 'an array of layer widths', String(hidden));
  for (const [i, w] of hidden.entries()) checkSize('cells.hamiltonian', `hidden[${i}]`, w);
  if (activation !== 'tanh' && activation !== 'softplus') {
    throw new CellDefinitionError(
      'cells.hamiltonian: activation',
      "'tanh' or 'softplus'",
      String(activation),
    );
  }
  const widths = [2 * d, ...hidden, 1];
  const { params, init } = mlpParams(widths);
  const act = activation === 'tanh' ? tanh : softplus;
  return defineCell(
    { name: `hnn(dof=${d}, hidden=[${hidden.join(',')}])`, state: 2 * d, input: 0, params, init },
    (y, _x, p) => {
      const g = grad(sum(applyMlp(y, p, widths.length - 1, act)), y);
      return concat(slice(g, d, d), neg(slice(g, 0, d)));
    },
  );
}
