import { type Cell, defineCell } from '../cell/cell.js';
import { add, concat, matvec, mul, slice, sub } from '../cell/lang.js';
import { CellDefinitionError } from '../errors.js';
import { type ActivationSpec, activationsLabel, resolveActivations } from './activations.js';
import { checkCellOptions, checkSize, gateClip } from './gate-clip.js';

export interface LstmOptions {
  readonly inputSize: number;
  readonly hiddenSize: number;
  /** ONNX `clip`: gate pre-activations are clipped to ±clip. */
  readonly clip?: number;
  /** ONNX `activations`: [f, g, h] for the gates, the cell candidate and the output (default Sigmoid, Tanh, Tanh). */
  readonly activations?: readonly ActivationSpec[];
  /**
   * ONNX peephole weights: adds a param P [3n] (blocks i, o, f) so that
   * i = f(… + P_i ⊙ c_{t−1}), f = f(… + P_f ⊙ c_{t−1}), o = f(… + P_o ⊙ c_t).
   */
  readonly peephole?: boolean;
  /** ONNX `input_forget = 1`: coupled gates, the forget gate is 1 − i (its weights are unused). */
  readonly inputForget?: boolean;
}

/**
 * LSTM in ONNX layout: W [4n, m], R [4n, n], biases Wb [4n], Rb [4n], gate blocks i, o, f, c
 * (and P [3n], blocks i, o, f, with `peephole`). The state is [h; c] (size 2n): the output
 * sequence's h is its first n entries.
 */
export function lstm(options: LstmOptions): Cell {
  const {
    inputSize,
    hiddenSize,
    clip: c,
    activations,
    peephole = false,
    inputForget = false,
  } = checkCellOptions('cells.lstm', options, ['inputSize', 'hiddenSize', 'clip', 'activations', 'peephole', 'inputForget']);
  const m = checkSize('cells.lstm', 'inputSize', inputSize);
  const n = checkSize('cells.lstm', 'hiddenSize', hiddenSize);
  for (const [k, v] of [
    ['peephole', peephole],
    ['inputForget', inputForget],
  ] as const) {
    if (typeof v !== 'boolean') throw new CellDefinitionError(`cells.lstm: ${k}`, 'a boolean', String(v));
  }
  const gate = gateClip(c, 'cells.lstm');
  const acts = resolveActivations(
    'cells.lstm',
    activations,
    ['Sigmoid', 'Tanh', 'Tanh'],
    'f for the gates, g for the cell candidate, h for the output',
  );
  const [fa, ga, ha] = [acts[0]!, acts[1]!, acts[2]!];
  const label = activationsLabel(activations, ['Sigmoid', 'Tanh', 'Tanh']);
  const bound = { uniform: 1 / Math.sqrt(n) };
  const params: Record<string, number[]> = { W: [4 * n, m], R: [4 * n, n], Wb: [4 * n], Rb: [4 * n] };
  if (peephole) params.P = [3 * n];
  const extras = [
    c === undefined ? '' : `, clip=${c}`,
    label ? `, act=${label}` : '',
    peephole ? ', peephole' : '',
    inputForget ? ', input_forget' : '',
  ].join('');
  return defineCell(
    {
      name: `lstm(n=${n}${extras})`,
      state: 2 * n,
      input: m,
      params,
      init: Object.fromEntries(Object.keys(params).map((k) => [k, bound])),
    },
    (s, x, p) => {
      const h = slice(s, 0, n);
      const cPrev = slice(s, n, n);
      const pre = add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!));
      const peep = (k: number, cell: typeof cPrev, v: typeof cPrev) =>
        peephole ? add(v, mul(slice(p.P!, k * n, n), cell)) : v;
      const i = fa(gate(peep(0, cPrev, slice(pre, 0, n))));
      const f = inputForget ? sub(1, i) : fa(gate(peep(2, cPrev, slice(pre, 2 * n, n))));
      const cand = ga(gate(slice(pre, 3 * n, n)));
      const cNext = add(mul(f, cPrev), mul(i, cand));
      const o = fa(gate(peep(1, cNext, slice(pre, n, n))));
      return concat(mul(o, ha(cNext)), cNext);
    },
  );
}
