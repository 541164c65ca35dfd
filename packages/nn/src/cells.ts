import { type Cell, cells, checkOptionNames, defineCell, describeValue, InvalidArgumentError, lang, UnsupportedOptionError } from '@deerjs/core';

export type CellKind = 'gru' | 'mhgru' | 'lstm';

const KINDS: readonly CellKind[] = ['gru', 'mhgru', 'lstm'];

/** `kind`, checked: an unknown one (say 'GRU' or 'rnn') had built an LSTM. */
function checkKind(kind: unknown): CellKind {
  if (!KINDS.includes(kind as CellKind)) throw new UnsupportedOptionError('kind', kind, `one of ${KINDS.map((k) => `'${k}'`).join(', ')}`);
  return kind as CellKind;
}

export interface LayerCellOptions {
  readonly kind: CellKind;
  /** Size of the vector the layer receives per step (the previous layer's state size). */
  readonly inputSize: number;
  /** How many leading entries of that vector the cell reads: an LSTM's state is [h; c] and only h feeds on. */
  readonly inputUsed: number;
  readonly hiddenSize: number;
  /** Heads of the multi-head GRU. */
  readonly heads?: number;
}

/**
 * State size of a layer of this kind; its first hiddenSize entries are the output features. An
 * unknown kind is an UnsupportedOptionError.
 */
export function stateSize(kind: CellKind, hiddenSize: number): number {
  return checkKind(kind) === 'lstm' ? 2 * hiddenSize : hiddenSize;
}

/**
 * The recurrent cell of one layer, from core's built-ins where they fit as they are. An unknown
 * `kind` or option name, `heads` other than 1 for a kind other than 'mhgru', or an `inputUsed` the
 * cell would not honour (outside 1 … inputSize; less than inputSize for a GRU, which reads its whole
 * input) is an UnsupportedOptionError; sizes are checked by core's cells.
 */
export function layerCell(o: LayerCellOptions): Cell {
  if (o === null || typeof o !== 'object')
    throw new InvalidArgumentError('layerCell options', '{ kind, inputSize, inputUsed, hiddenSize, heads? }', describeValue(o));
  checkOptionNames(o, ['kind', 'inputSize', 'inputUsed', 'hiddenSize', 'heads'], 'layerCell');
  const { inputSize: m, inputUsed, hiddenSize: n } = o;
  const kind = checkKind(o.kind);
  if (kind !== 'mhgru' && o.heads !== undefined && o.heads !== 1)
    throw new UnsupportedOptionError('heads', o.heads, "1 or nothing: more heads are for kind 'mhgru'");
  if (!Number.isSafeInteger(inputUsed) || inputUsed < 1 || inputUsed > m)
    throw new UnsupportedOptionError('inputUsed', inputUsed, `an integer in 1 … inputSize (${m})`);
  if (kind !== 'lstm' && inputUsed !== m)
    throw new UnsupportedOptionError('inputUsed', inputUsed, `inputSize (${m}): a ${kind} layer reads its whole input`);
  if (kind === 'gru') return cells.gru({ inputSize: m, hiddenSize: n });
  if (kind === 'mhgru') return cells.gru({ inputSize: m, hiddenSize: n, heads: o.heads ?? 1 });
  if (inputUsed === m) return cells.lstm({ inputSize: m, hiddenSize: n });
  if (!Number.isSafeInteger(n) || n < 1) throw new UnsupportedOptionError('hiddenSize', n, 'an integer ≥ 1');
  return lstmOnPrefix(m, inputUsed, n);
}

/** An LSTM (ONNX layout, as core's) that reads only the first `used` entries of its input. */
function lstmOnPrefix(m: number, used: number, n: number): Cell {
  const { add, concat, matvec, mul, sigmoid, slice, tanh } = lang;
  const bound = { uniform: 1 / Math.sqrt(n) };
  return defineCell(
    {
      name: `lstm(n=${n}, input ${used} of ${m})`,
      state: 2 * n,
      input: m,
      params: { W: [4 * n, used], R: [4 * n, n], Wb: [4 * n], Rb: [4 * n] },
      init: { W: bound, R: bound, Wb: bound, Rb: bound },
    },
    (s, xFull, p) => {
      const x = slice(xFull, 0, used);
      const h = slice(s, 0, n);
      const c = slice(s, n, n);
      const g = add(add(matvec(p.W!, x), p.Wb!), add(matvec(p.R!, h), p.Rb!));
      const i = sigmoid(slice(g, 0, n));
      const o = sigmoid(slice(g, n, n));
      const f = sigmoid(slice(g, 2 * n, n));
      const cNew = add(mul(f, c), mul(i, tanh(slice(g, 3 * n, n))));
      return concat(mul(o, tanh(cNew)), cNew);
    },
  );
}
