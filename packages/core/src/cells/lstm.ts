import { type Cell, defineCell } from '../cell/cell.js';
import { add, concat, matvec, mul, sigmoid, slice, tanh } from '../cell/lang.js';
import { gateClip } from './gate-clip.js';

export interface LstmOptions {
  readonly inputSize: number;
  readonly hiddenSize: number;
  /** ONNX `clip`: gate pre-activations are clipped to ±clip. */
  readonly clip?: number;
}

/**
 * LSTM in ONNX layout: W [4n, m], R [4n, n], biases Wb [4n], Rb [4n], gate blocks i, o, f, c.
 * The state is [h; c] (size 2n): the output sequence's h is its first n entries.
 */
export function lstm({ inputSize: m, hiddenSize: n, clip: c }: LstmOptions): Cell {
  const gate = gateClip(c);
  return defineCell(
    {
      name: `lstm(n=${n}${c === undefined ? '' : `, clip=${c}`})`,
      state: 2 * n,
      input: m,
      params: { W: [4 * n, m], R: [4 * n, n], Wb: [4 * n], Rb: [4 * n] },
      init: {
        W: { uniform: 1 / Math.sqrt(n) },
        R: { uniform: 1 / Math.sqrt(n) },
        Wb: { uniform: 1 / Math.sqrt(n) },
        Rb: { uniform: 1 / Math.sqrt(n) },
      },
    },
    (s, x, p) => {
      const h = slice(s, 0, n);
      const c = slice(s, n, n);
      const g = gate(add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!)));
      const i = sigmoid(slice(g, 0, n));
      const o = sigmoid(slice(g, n, n));
      const f = sigmoid(slice(g, 2 * n, n));
      const cand = tanh(slice(g, 3 * n, n));
      const cNext = add(mul(f, c), mul(i, cand));
      return concat(mul(o, tanh(cNext)), cNext);
    },
  );
}
