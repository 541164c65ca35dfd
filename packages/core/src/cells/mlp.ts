import { type Cell, defineCell } from '../cell/cell.js';
import { add, concat, matvec, relu, softplus, tanh, type Vec } from '../cell/lang.js';

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

/** A multilayer perceptron f(y, x) = W_L σ(… σ(W_1 [y; x] + b_1) …) + b_L: a vector field or a step. */
export function mlp({ stateSize: n, inputSize: m = 0, hidden = [64], activation = 'tanh' }: MlpOptions): Cell {
  const widths = [n + m, ...hidden, n];
  const params: Record<string, number[]> = {};
  const init: Record<string, { uniform: number }> = {};
  for (let l = 0; l + 1 < widths.length; l++) {
    params[`W${l}`] = [widths[l + 1]!, widths[l]!];
    params[`b${l}`] = [widths[l + 1]!];
    init[`W${l}`] = { uniform: 1 / Math.sqrt(widths[l]!) };
    init[`b${l}`] = { uniform: 1 / Math.sqrt(widths[l]!) };
  }
  const act = ACT[activation];
  return defineCell(
    { name: `mlp(n=${n}, hidden=[${hidden.join(',')}])`, state: n, input: m, params, init },
    (y, x, p) => {
      let v: Vec = m > 0 ? concat(y, x) : y;
      const layers = widths.length - 1;
      for (let l = 0; l < layers; l++) {
        v = add(matvec(p[`W${l}`]!, v), p[`b${l}`]!);
        if (l + 1 < layers) v = act(v);
      }
      return v;
    },
  );
}
