import { type Cell, defineCell } from '../cell/cell.js';
import { add, matvec, tanh } from '../cell/lang.js';

export interface ElmanOptions {
  readonly inputSize: number;
  readonly hiddenSize: number;
}

/** Elman RNN in ONNX RNN layout: h' = tanh(W x + Wb + R h + Rb), W [n, m], R [n, n]. */
export function elman({ inputSize: m, hiddenSize: n }: ElmanOptions): Cell {
  return defineCell(
    { name: `elman(n=${n})`, state: n, input: m, params: { W: [n, m], R: [n, n], Wb: [n], Rb: [n] } },
    (h, x, p) => tanh(add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!))),
  );
}
