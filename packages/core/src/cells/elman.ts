import { type Cell, defineCell } from '../cell/cell.js';
import { add, matvec, tanh } from '../cell/lang.js';
import { gateClip } from './gate-clip.js';

export interface ElmanOptions {
  readonly inputSize: number;
  readonly hiddenSize: number;
  /** ONNX `clip`: the pre-activation is clipped to ±clip. */
  readonly clip?: number;
}

/** Elman RNN in ONNX RNN layout: h' = tanh(W x + Wb + R h + Rb), W [n, m], R [n, n]. */
export function elman({ inputSize: m, hiddenSize: n, clip: c }: ElmanOptions): Cell {
  const gate = gateClip(c);
  return defineCell(
    { name: `elman(n=${n}${c === undefined ? '' : `, clip=${c}`})`, state: n, input: m, params: { W: [n, m], R: [n, n], Wb: [n], Rb: [n] } },
    (h, x, p) => tanh(gate(add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!)))),
  );
}
