import { type Cell, defineCell } from '../cell/cell.js';
import { add, concat, matvec, type Param, relu, softplus, tanh, type Vec } from '../cell/lang.js';
import { CellDefinitionError } from '../errors.js';
import { checkCellOptions, checkSize } from './gate-clip.js';

export type Activation = 'tanh' | 'relu' | 'softplus';

export interface MlpOptions {
  /** State size n (the output size too). */
  readonly stateSize: number;
  /** Input size m, concatenated to the state (default 0). */
  readonly inputSize?: number;
  /** Hidden layer widths (default [64]). */
  readonly hidden?: readonly number[];
  readonly activation?: Activation;
}

const ACT: Record<Activation, (v: Vec) => Vec> = { tanh, relu, softplus };

/** Parameter shapes and inits of an MLP with the given layer widths: W{l} [out, in], b{l} [out]. */
export function mlpParams(widths: readonly number[]) {
  const params: Record<string, number[]> = {};
  const init: Record<string, { uniform: number }> = {};
  for (let l = 0; l + 1 < widths.length; l++) {
    params[`W${l}`] = [widths[l + 1]!, widths[l]!];
    params[`b${l}`] = [widths[l + 1]!];
    init[`W${l}`] = { uniform: 1 / Math.sqrt(widths[l]!) };
    init[`b${l}`] = { uniform: 1 / Math.sqrt(widths[l]!) };
  }
  return { params, init };
}

/** Apply the MLP of `mlpParams` to v: affine layers with `act` between them (none after the last). */
export function applyMlp(
  v: Vec,
  p: Readonly<Record<string, Param>>,
  layers: number,
  act: (v: Vec) => Vec,
): Vec {
  for (let l = 0; l < layers; l++) {
    v = add(matvec(p[`W${l}`]!, v), p[`b${l}`]!);
    if (l + 1 < layers) v = act(v);
  }
  return v;
}

/** A multilayer perceptron f(y, x) = W_L σ(… σ(W_1 [y; x] + b_1) …) + b_L: a vector field or a step. */
export function mlp(options: MlpOptions): Cell {
  const { stateSize, inputSize = 0, hidden = [64], activation = 'tanh' } = checkCellOptions('cells.mlp', options, ['stateSize', 'inputSize', 'hidden', 'activation']);
  const n = checkSize('cells.mlp', 'stateSize', stateSize);
  const m = checkSize('cells.mlp', 'inputSize', inputSize, 0);
  if (!Array.isArray(hidden)) throw new CellDefinitionError('cells.mlp: hidden', 'an array of layer widths', String(hidden));
  for (const [i, w] of hidden.entries()) checkSize('cells.mlp', `hidden[${i}]`, w);
  if (!(activation in ACT)) {
    throw new CellDefinitionError(
      'cells.mlp: activation',
      `one of ${Object.keys(ACT).join(', ')}`,
      String(activation),
    );
  }
  const widths = [n + m, ...hidden, n];
  const { params, init } = mlpParams(widths);
  const act = ACT[activation];
  return defineCell(
    { name: `mlp(n=${n}, hidden=[${hidden.join(',')}])`, state: n, input: m, params, init },
    (y, x, p) => applyMlp(m > 0 ? concat(y, x) : y, p, widths.length - 1, act),
  );
}
