import { type Cell, defineCell } from '../cell/cell.js';
import { add, matvec, mul, slice, sub } from '../cell/lang.js';
import { CellDefinitionError } from '../errors.js';
import { type ActivationSpec, activationsLabel, resolveActivations } from './activations.js';
import { checkCellOptions, checkSize, gateClip } from './gate-clip.js';
import { multiHeadGru } from './multihead-gru.js';

export interface GruOptions {
  readonly inputSize: number;
  readonly hiddenSize: number;
  /**
   * ONNX's reset convention. 1 (default; PyTorch and cuDNN): h̃ = g(W_h x + Wb_h + r ⊙ (R_h h + Rb_h)).
   * 0 (the ONNX default): h̃ = g(W_h x + Wb_h + R_h (r ⊙ h) + Rb_h).
   */
  readonly linearBeforeReset?: 0 | 1;
  /** Independent heads: gives the multi-head GRU (see `multiHeadGru`). */
  readonly heads?: number;
  /** ONNX `clip`: gate pre-activations are clipped to ±clip. */
  readonly clip?: number;
  /** ONNX `activations`: [f, g] for the gates z, r and the candidate h̃ (default ['Sigmoid', 'Tanh']). */
  readonly activations?: readonly ActivationSpec[];
}

/**
 * GRU in ONNX layout: W [3n, m] and R [3n, n] with gate blocks z, r, h; biases Wb [3n], Rb [3n];
 * H_t = (1 − z) ⊙ h̃ + z ⊙ H_{t−1}.
 */
export function gru(options: GruOptions): Cell {
  const {
    inputSize,
    hiddenSize,
    linearBeforeReset = 1,
    heads,
    clip: c,
    activations,
  } = checkCellOptions('cells.gru', options, ['inputSize', 'hiddenSize', 'linearBeforeReset', 'heads', 'clip', 'activations']);
  const m = checkSize('cells.gru', 'inputSize', inputSize);
  const n = checkSize('cells.gru', 'hiddenSize', hiddenSize);
  if (linearBeforeReset !== 0 && linearBeforeReset !== 1) {
    throw new CellDefinitionError('cells.gru: linearBeforeReset', '0 or 1', String(linearBeforeReset));
  }
  const gate = gateClip(c, 'cells.gru');
  const acts = resolveActivations('cells.gru', activations, ['Sigmoid', 'Tanh'], 'f for z and r, g for h̃');
  const f = acts[0]!;
  const g = acts[1]!;
  const label = activationsLabel(activations, ['Sigmoid', 'Tanh']);
  if (heads !== undefined) {
    if (linearBeforeReset !== 1 || c !== undefined || label !== undefined) {
      throw new CellDefinitionError(
        'cells.gru: heads',
        'no heads option together with linearBeforeReset 0, clip or non-default activations',
        `heads ${heads} with linearBeforeReset ${linearBeforeReset}, clip ${c}, activations ${label ?? 'default'}`,
      );
    }
    return multiHeadGru({ inputSize: m, hiddenSize: n, heads });
  }
  return defineCell(
    {
      name: `gru(n=${n}, lbr=${linearBeforeReset}${c === undefined ? '' : `, clip=${c}`}${label ? `, act=${label}` : ''})`,
      state: n,
      input: m,
      params: { W: [3 * n, m], R: [3 * n, n], Wb: [3 * n], Rb: [3 * n] },
    },
    (h, x, p) => {
      const gx = add(matvec(p.W!, x), p.Wb!);
      const gh = add(matvec(p.R!, h), p.Rb!);
      const z = f(gate(add(slice(gx, 0, n), slice(gh, 0, n))));
      const r = f(gate(add(slice(gx, n, n), slice(gh, n, n))));
      // For lbr = 0 the whole R multiplies r ⊙ h and its h-block is kept: the IR has no row views.
      const hh =
        linearBeforeReset === 1
          ? mul(r, slice(gh, 2 * n, n))
          : add(slice(matvec(p.R!, mul(r, h)), 2 * n, n), slice(p.Rb!, 2 * n, n));
      const cand = g(gate(add(slice(gx, 2 * n, n), hh)));
      return add(mul(sub(1, z), cand), mul(z, h));
    },
  );
}
