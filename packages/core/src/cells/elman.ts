import { type Cell, defineCell } from '../cell/cell.js';
import { add, matvec } from '../cell/lang.js';
import { type ActivationSpec, activationsLabel, resolveActivations } from './activations.js';
import { checkCellOptions, checkSize, gateClip } from './gate-clip.js';

export interface ElmanOptions {
  readonly inputSize: number;
  readonly hiddenSize: number;
  /** ONNX `clip`: the pre-activation is clipped to ±clip. */
  readonly clip?: number;
  /** ONNX `activations`: [f] (default ['Tanh']). */
  readonly activations?: readonly ActivationSpec[];
}

/** Elman RNN in ONNX RNN layout: h' = f(W x + Wb + R h + Rb), W [n, m], R [n, n]. */
export function elman(options: ElmanOptions): Cell {
  const { inputSize, hiddenSize, clip: c, activations } = checkCellOptions('cells.elman', options, ['inputSize', 'hiddenSize', 'clip', 'activations']);
  const m = checkSize('cells.elman', 'inputSize', inputSize);
  const n = checkSize('cells.elman', 'hiddenSize', hiddenSize);
  const gate = gateClip(c, 'cells.elman');
  const f = resolveActivations('cells.elman', activations, ['Tanh'], 'f')[0]!;
  const label = activationsLabel(activations, ['Tanh']);
  return defineCell(
    {
      name: `elman(n=${n}${c === undefined ? '' : `, clip=${c}`}${label ? `, act=${label}` : ''})`,
      state: n,
      input: m,
      params: { W: [n, m], R: [n, n], Wb: [n], Rb: [n] },
    },
    (h, x, p) => f(gate(add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!)))),
  );
}
