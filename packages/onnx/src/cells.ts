import { type Cell, cells, defineCell, lang, type Vec } from '@deerjs/core';
import type { RecurrentOp } from './recurrent.js';

const { add, concat, matvec, mul, neg, relu, sigmoid, slice, sub, tanh } = lang;

export interface CellSpec {
  readonly op: RecurrentOp;
  readonly inputSize: number;
  readonly hiddenSize: number;
  readonly linearBeforeReset: 0 | 1;
  readonly clip: number | undefined;
}

/** The core cell for an ONNX node: the built-in one, or a clipped variant when `clip` is set. */
export function recurrentCell(spec: CellSpec): Cell {
  const { op, inputSize, hiddenSize, linearBeforeReset, clip } = spec;
  if (clip === undefined) {
    if (op === 'GRU') return cells.gru({ inputSize, hiddenSize, linearBeforeReset });
    if (op === 'LSTM') return cells.lstm({ inputSize, hiddenSize });
    return cells.elman({ inputSize, hiddenSize });
  }
  if (op === 'GRU') return clippedGru(inputSize, hiddenSize, linearBeforeReset, clip);
  if (op === 'LSTM') return clippedLstm(inputSize, hiddenSize, clip);
  return clippedElman(inputSize, hiddenSize, clip);
}

/** min(max(v, −c), c), exactly, in ops the cell language has: v − relu(v − c) + relu(−v − c). */
function clamp(v: Vec, c: number): Vec {
  return add(sub(v, relu(sub(v, c))), relu(sub(neg(v), c)));
}

function clippedGru(m: number, n: number, lbr: 0 | 1, c: number): Cell {
  return defineCell(
    {
      name: `onnx-gru(n=${n}, lbr=${lbr}, clip=${c})`,
      state: n,
      input: m,
      params: { W: [3 * n, m], R: [3 * n, n], Wb: [3 * n], Rb: [3 * n] },
    },
    (h, x, p) => {
      const gx = add(matvec(p.W!, x), p.Wb!);
      const gh = add(matvec(p.R!, h), p.Rb!);
      const z = sigmoid(clamp(add(slice(gx, 0, n), slice(gh, 0, n)), c));
      const r = sigmoid(clamp(add(slice(gx, n, n), slice(gh, n, n)), c));
      const hh =
        lbr === 1
          ? mul(r, slice(gh, 2 * n, n))
          : add(slice(matvec(p.R!, mul(r, h)), 2 * n, n), slice(p.Rb!, 2 * n, n));
      const cand = tanh(clamp(add(slice(gx, 2 * n, n), hh), c));
      return add(mul(sub(1, z), cand), mul(z, h));
    },
  );
}

function clippedLstm(m: number, n: number, c: number): Cell {
  return defineCell(
    {
      name: `onnx-lstm(n=${n}, clip=${c})`,
      state: 2 * n,
      input: m,
      params: { W: [4 * n, m], R: [4 * n, n], Wb: [4 * n], Rb: [4 * n] },
    },
    (s, x, p) => {
      const h = slice(s, 0, n);
      const cell = slice(s, n, n);
      const g = clamp(add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!)), c);
      const i = sigmoid(slice(g, 0, n));
      const o = sigmoid(slice(g, n, n));
      const f = sigmoid(slice(g, 2 * n, n));
      const cNext = add(mul(f, cell), mul(i, tanh(slice(g, 3 * n, n))));
      return concat(mul(o, tanh(cNext)), cNext);
    },
  );
}

function clippedElman(m: number, n: number, c: number): Cell {
  return defineCell(
    {
      name: `onnx-rnn(n=${n}, clip=${c})`,
      state: n,
      input: m,
      params: { W: [n, m], R: [n, n], Wb: [n], Rb: [n] },
    },
    (h, x, p) => tanh(clamp(add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!)), c)),
  );
}
