import { type Cell, defineCell } from '../cell/cell.js';
import { add, matvec, mul, sigmoid, slice, sub, tanh } from '../cell/lang.js';
import { CellDefinitionError } from '../errors.js';
import { checkCellOptions, checkSize } from './gate-clip.js';

export interface MultiHeadGruOptions {
  readonly inputSize: number;
  readonly hiddenSize: number;
  /** Number of heads; each head of hiddenSize / heads units only sees its own state. */
  readonly heads: number;
}

/**
 * Multi-head GRU: the input projection W [3n, m] is dense, the recurrent weights are block-diagonal
 * per gate (Rz, Rr, Rh of shape [heads, s, s]), so heads never interact and the Jacobian is exactly
 * block-diagonal with block size s = n / heads. Reset convention as PyTorch (linear before reset).
 */
export function multiHeadGru(options: MultiHeadGruOptions): Cell {
  const { inputSize, hiddenSize, heads } = checkCellOptions('cells.multiHeadGru', options, ['inputSize', 'hiddenSize', 'heads']);
  const m = checkSize('cells.multiHeadGru', 'inputSize', inputSize);
  const n = checkSize('cells.multiHeadGru', 'hiddenSize', hiddenSize);
  if (typeof heads !== 'number' || !Number.isInteger(heads) || heads < 1 || n % heads !== 0) {
    throw new CellDefinitionError(
      'cells.multiHeadGru: heads',
      `a positive integer that divides hiddenSize ${n}`,
      String(heads),
    );
  }
  const s = n / heads;
  const bound = 1 / Math.sqrt(s);
  return defineCell(
    {
      name: `mhgru(n=${n}, heads=${heads})`,
      state: n,
      input: m,
      params: {
        W: [3 * n, m],
        Rz: [heads, s, s],
        Rr: [heads, s, s],
        Rh: [heads, s, s],
        Wb: [3 * n],
        Rb: [3 * n],
      },
      init: {
        W: { uniform: bound },
        Rz: { uniform: bound },
        Rr: { uniform: bound },
        Rh: { uniform: bound },
        Wb: { uniform: bound },
        Rb: { uniform: bound },
      },
    },
    (h, x, p) => {
      const gx = add(matvec(p.W!, x), p.Wb!);
      const z = sigmoid(add(slice(gx, 0, n), add(matvec(p.Rz!, h), slice(p.Rb!, 0, n))));
      const r = sigmoid(add(slice(gx, n, n), add(matvec(p.Rr!, h), slice(p.Rb!, n, n))));
      const cand = tanh(add(slice(gx, 2 * n, n), mul(r, add(matvec(p.Rh!, h), slice(p.Rb!, 2 * n, n)))));
      return add(mul(sub(1, z), cand), mul(z, h));
    },
  );
}
