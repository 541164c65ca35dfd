import { type Cell, cells, defineCell, type DType, lang, Rng } from '@deerjs/core';

/** A built-in cell family, built for a given size n (the hidden size). */
export interface CellFamily {
  readonly id: string;
  readonly make: (n: number, m: number) => Cell;
  /** Sizes this family supports. */
  readonly supports: (n: number) => boolean;
}

export const INPUT_SIZE = 3;

export const CELL_FAMILIES: readonly CellFamily[] = [
  { id: 'gru', make: (n, m) => cells.gru({ inputSize: m, hiddenSize: n }), supports: () => true },
  {
    id: 'gru-lbr0',
    make: (n, m) => cells.gru({ inputSize: m, hiddenSize: n, linearBeforeReset: 0 }),
    supports: () => true,
  },
  { id: 'lstm', make: (n, m) => cells.lstm({ inputSize: m, hiddenSize: n }), supports: () => true },
  { id: 'elman', make: (n, m) => cells.elman({ inputSize: m, hiddenSize: n }), supports: () => true },
  {
    id: 'mhgru',
    // Heads of 2 units (1 for n = 1): a block-diagonal Jacobian.
    make: (n, m) => cells.gru({ inputSize: m, hiddenSize: n, heads: n === 1 ? 1 : n / 2 }),
    supports: (n) => n === 1 || n % 2 === 0,
  },
  { id: 'mlp', make: (n, m) => cells.mlp({ stateSize: n, inputSize: m, hidden: [16] }), supports: () => true },
];

/** A cell that is not built in: exercises the cell language and derived derivatives end to end. */
export function userDefinedCell(): Cell {
  const { add, concat, div, dot, matvec, mul, sigmoid, sin, slice, softplus, sqrt, square, sub, tanh } = lang;
  return defineCell(
    {
      name: 'user-defined',
      state: 4,
      input: INPUT_SIZE,
      params: { W: [4, INPUT_SIZE], U: [4, 4], a: [4], V: [2, 2] },
      init: { U: { uniform: 0.4 }, W: { uniform: 0.5 }, a: { uniform: 0.5 }, V: { uniform: 0.5 } },
    },
    (h, x, p) => {
      const pre = add(add(matvec(p.W!, x), matvec(p.U!, h)), p.a!);
      const gate = sigmoid(sub(pre, 0.3));
      const head = slice(h, 0, 2);
      const mixed = tanh(add(matvec(p.V!, head), sin(slice(pre, 2, 2))));
      const energy = div(dot(h, h), add(1, square(sqrt(add(1, softplus(slice(pre, 0, 1)))))));
      const cand = concat(mixed, mul(tanh(slice(pre, 2, 2)), sub(1, sigmoid(energy))));
      return add(mul(gate, h), mul(sub(1, gate), cand));
    },
  );
}

/** Seeded inputs, rounded to float32 when the backend under test computes in float32 so both sides see the same numbers. */
export function sequenceData(seed: number, B: number, T: number, cell: Cell, dtype: DType) {
  const rng = new Rng(seed);
  const round = dtype === 'float32' ? (a: Float64Array) => a.map(Math.fround) : (a: Float64Array) => a;
  const params = cell.init({ seed: seed + 1 });
  for (const k of Object.keys(params)) params[k] = round(params[k]!);
  return {
    x: round(rng.normalArray(B * T * cell.inputSize)),
    h0: round(rng.normalArray(B * cell.stateSize, 0.5)),
    params,
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Number.NaN;
    if (d > m) m = d;
  }
  return m;
}

/** max |a − b| / max(|b|, floor), elementwise. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(b[i]!), floor);
    if (Number.isNaN(d)) return Number.NaN;
    if (d > m) m = d;
  }
  return m;
}
