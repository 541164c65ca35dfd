import {
  type Backend,
  type Cell,
  CellDefinitionError,
  type DeerOptions,
  type DeerStats,
  type DType,
  deer,
} from '@deerjs/core';
import { recurrentCell } from './cells.js';
import { OnnxInputError, OnnxUnsupportedError } from './errors.js';
import { GATES, type RecurrentNode } from './recurrent.js';
import { type OnnxTensor, toFloat64 } from './tensor.js';

/** Options of a recurrent node's solve: deer's options (h0 and lengths come from the model) and the compute dtype. */
export interface RecurrentRunOptions extends Omit<DeerOptions, 'h0' | 'lengths'> {
  /** Backend dtype; default float64 for double models where the backend has it, else float32. */
  readonly dtype?: DType;
  /** Called after each direction's solve with deer's statistics. */
  readonly onSolve?: (info: {
    readonly node: string;
    readonly direction: number;
    readonly stats: DeerStats;
  }) => void;
}

/** Cells built for a model, keyed by their shape, so repeated runs reuse traced graphs and compiled kernels. */
export class CellCache {
  private readonly cells = new Map<string, Cell>();
  get(node: RecurrentNode, inputSize: number, hiddenSize: number, direction = 0, peephole = false): Cell {
    const activations = node.activations[direction];
    const key = JSON.stringify([
      node.op,
      inputSize,
      hiddenSize,
      node.linearBeforeReset,
      node.clip,
      activations,
      node.inputForget,
      peephole,
    ]);
    let cell = this.cells.get(key);
    if (!cell) {
      try {
        cell = recurrentCell({
          op: node.op,
          inputSize,
          hiddenSize,
          linearBeforeReset: node.linearBeforeReset,
          clip: node.clip,
          ...(activations ? { activations } : {}),
          peephole,
          inputForget: node.inputForget,
        });
      } catch (e) {
        if (e instanceof CellDefinitionError) {
          throw new OnnxUnsupportedError(
            node.name,
            e.argument.replace(/^cells\.\w+: /, ''),
            e.got,
            e.expected,
          );
        }
        throw e;
      }
      this.cells.set(key, cell);
    }
    return cell;
  }
}

const fmt = (dims: readonly number[]) => `[${dims.join(', ')}]`;

function expectFloat(what: string, t: OnnxTensor): void {
  if (!(t.data instanceof Float32Array || t.data instanceof Float64Array)) {
    throw new OnnxInputError(what, `expected float32 or float64 values, got ${t.data.constructor.name}`);
  }
}

function expectDims(what: string, t: OnnxTensor, expected: readonly number[], float = true): void {
  if (float) expectFloat(what, t);
  if (t.dims.length !== expected.length || t.dims.some((d, i) => d !== expected[i])) {
    throw new OnnxInputError(what, `expected dims ${fmt(expected)}, got ${fmt(t.dims)}`);
  }
}

/**
 * Run one GRU/LSTM/RNN node with DEER, one solve per direction; returns its outputs by value name.
 * `value(name)` gives the tensors feeding the node (initializers or run-time inputs).
 */
export async function runRecurrentNode(
  backend: Backend,
  node: RecurrentNode,
  value: (name: string) => OnnxTensor,
  cells: CellCache,
  options: RecurrentRunOptions = {},
): Promise<Map<string, OnnxTensor>> {
  const { onSolve, dtype: askedDtype, ...deerOptions } = options;
  const X = value(node.inputs.X);
  expectFloat(node.inputs.X, X);
  if (X.dims.length !== 3)
    throw new OnnxInputError(node.inputs.X, `expected rank 3 (X of ${node.name}), got ${fmt(X.dims)}`);
  const [T, B, m] = (node.layout === 0 ? X.dims : [X.dims[1], X.dims[0], X.dims[2]]) as [
    number,
    number,
    number,
  ];
  if (T < 1 || B < 1 || m < 1)
    throw new OnnxInputError(node.inputs.X, `expected non-empty dims, got ${fmt(X.dims)}`);
  const nd = node.numDirections;
  const k = GATES[node.op];
  const W = value(node.inputs.W);
  const R = value(node.inputs.R);
  const n = node.hiddenSize ?? R.dims[2] ?? 0;
  if (!(Number.isInteger(n) && n >= 1)) {
    throw new OnnxInputError(
      node.inputs.R,
      `expected a hidden size ≥ 1 (R of ${node.name} has dims ${fmt(R.dims)}), got ${n}`,
    );
  }
  expectDims(node.inputs.W, W, [nd, k * n, m]);
  expectDims(node.inputs.R, R, [nd, k * n, n]);
  const Bias = node.inputs.B === undefined ? undefined : value(node.inputs.B);
  if (Bias) expectDims(node.inputs.B!, Bias, [nd, 2 * k * n]);
  const stateDims = node.layout === 0 ? [nd, B, n] : [B, nd, n];
  const h0 = node.inputs.initial_h === undefined ? undefined : value(node.inputs.initial_h);
  const c0 = node.inputs.initial_c === undefined ? undefined : value(node.inputs.initial_c);
  if (h0) expectDims(node.inputs.initial_h!, h0, stateDims);
  if (c0) expectDims(node.inputs.initial_c!, c0, stateDims);
  const Peep = node.inputs.P === undefined ? undefined : value(node.inputs.P);
  if (Peep) expectDims(node.inputs.P!, Peep, [nd, 3 * n]);
  // Per-row lengths (padded batches): T for every row when sequence_lens is absent.
  const lens =
    node.inputs.sequence_lens === undefined
      ? new Array<number>(B).fill(T)
      : readSequenceLens(node, value(node.inputs.sequence_lens), B, T);
  // Steps solved: up to the longest row (at least 1, so that empty batches still run).
  const Ts = Math.max(1, ...lens);

  const dtype = askedDtype ?? pickDtype(backend, X);
  const S = node.op === 'LSTM' ? 2 * n : n;
  const peep = Peep ? toFloat64(Peep) : undefined;
  const x = toFloat64(X);
  const w = toFloat64(W);
  const r = toFloat64(R);
  const bias = Bias ? toFloat64(Bias) : undefined;
  const h0v = h0 ? toFloat64(h0) : undefined;
  const c0v = c0 ? toFloat64(c0) : undefined;
  const Out = X.data instanceof Float64Array ? Float64Array : Float32Array;
  const Y = new Out(T * nd * B * n);
  const Yh = new Out(nd * B * n);
  const Yc = new Out(nd * B * n);
  // Flat offsets of (t, d, b) in Y and of (d, b) in Y_h / initial_h, per layout.
  const yAt =
    node.layout === 0
      ? (t: number, d: number, b: number) => ((t * nd + d) * B + b) * n
      : (t: number, d: number, b: number) => ((b * T + t) * nd + d) * n;
  const sAt =
    node.layout === 0
      ? (d: number, b: number) => (d * B + b) * n
      : (d: number, b: number) => (b * nd + d) * n;
  const xAt =
    node.layout === 0 ? (t: number, b: number) => (t * B + b) * m : (t: number, b: number) => (b * T + t) * m;

  for (let d = 0; d < nd; d++) {
    const reverse = node.direction === 'reverse' || d === 1;
    const cell = cells.get(node, m, n, d, peep !== undefined);
    const kn = k * n;
    const params: Record<string, Float64Array> = {
      W: w.subarray(d * kn * m, (d + 1) * kn * m),
      R: r.subarray(d * kn * n, (d + 1) * kn * n),
      Wb: bias ? bias.subarray(2 * d * kn, (2 * d + 1) * kn) : new Float64Array(kn),
      Rb: bias ? bias.subarray((2 * d + 1) * kn, (2 * d + 2) * kn) : new Float64Array(kn),
    };
    if (peep) params.P = peep.subarray(d * 3 * n, (d + 1) * 3 * n);
    // Row b's L valid steps come first (reversed within them for the reverse direction), then
    // padding (zeros), which deer masks through `lengths`.
    const xs = new Float64Array(B * Ts * m);
    for (let b = 0; b < B; b++) {
      const L = lens[b]!;
      for (let t = 0; t < L; t++) {
        const src = xAt(reverse ? L - 1 - t : t, b);
        xs.set(x.subarray(src, src + m), (b * Ts + t) * m);
      }
    }
    let init: Float64Array | undefined;
    if (h0v || c0v) {
      init = new Float64Array(B * S);
      for (let b = 0; b < B; b++) {
        if (h0v) init.set(h0v.subarray(sAt(d, b), sAt(d, b) + n), b * S);
        if (c0v) init.set(c0v.subarray(sAt(d, b), sAt(d, b) + n), b * S + n);
      }
    }
    const xt = backend.tensor(xs, [B, Ts, m], dtype);
    let ys: ArrayLike<number>;
    try {
      // Padding is masked by deer's lengths: zeros there and no Newton work past the longest row.
      const { y, stats } = await deer(backend, cell, params, xt, { ...deerOptions, h0: init, lengths: lens });
      try {
        ys = await backend.read(y);
      } finally {
        backend.dispose(y);
      }
      onSolve?.({ node: node.name, direction: d, stats });
    } finally {
      backend.dispose(xt);
    }
    for (let b = 0; b < B; b++) {
      // Outputs past a row's length stay 0; Y_h and Y_c come from its last valid step (0 for an
      // empty row, as onnxruntime gives).
      const L = lens[b]!;
      for (let t = 0; t < L; t++) {
        const src = (b * Ts + t) * S;
        const dst = yAt(reverse ? L - 1 - t : t, d, b);
        for (let j = 0; j < n; j++) Y[dst + j] = ys[src + j]!;
      }
      if (L === 0) continue;
      const last = (b * Ts + L - 1) * S;
      for (let j = 0; j < n; j++) {
        Yh[sAt(d, b) + j] = ys[last + j]!;
        if (S > n) Yc[sAt(d, b) + j] = ys[last + n + j]!;
      }
    }
  }
  const out = new Map<string, OnnxTensor>();
  const { Y: yName, Y_h: hName, Y_c: cName } = node.outputs;
  if (yName) out.set(yName, { data: Y, dims: node.layout === 0 ? [T, nd, B, n] : [B, T, nd, n] });
  if (hName) out.set(hName, { data: Yh, dims: stateDims });
  if (cName) out.set(cName, { data: Yc, dims: stateDims });
  return out;
}

function pickDtype(backend: Backend, X: OnnxTensor): DType {
  const want: DType = X.data instanceof Float64Array ? 'float64' : 'float32';
  const have = backend.capabilities.dtypes;
  return have.includes(want) ? want : (have[0] ?? 'float32');
}

/** sequence_lens as numbers, each an integer in [0, T]. */
function readSequenceLens(node: RecurrentNode, lens: OnnxTensor, B: number, T: number): number[] {
  // int32 is the operator's type for it (onnxruntime refuses a model that declares int64).
  if (!(lens.data instanceof Int32Array)) {
    throw new OnnxInputError(
      node.inputs.sequence_lens!,
      `expected int32 values (the type ONNX gives sequence_lens), got ${lens.data.constructor.name}`,
    );
  }
  expectDims(node.inputs.sequence_lens!, lens, [B], false);
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    const v = Number(lens.data[b]!);
    if (!Number.isInteger(v) || v < 0 || v > T) {
      throw new OnnxInputError(
        node.inputs.sequence_lens!,
        `expected lengths in [0, ${T}] (the sequence length), got ${v} for batch row ${b}`,
      );
    }
    out.push(v);
  }
  return out;
}
