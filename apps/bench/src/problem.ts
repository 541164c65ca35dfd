import { type Backend, type Cell, cells, type DType, Rng, type Tensor } from '@deerjs/core';
import type { GridPoint } from './grid.js';

/** One point's model and data: host copies for onnxruntime, tensors on the backend for deerjs. */
export interface Problem {
  readonly point: GridPoint;
  readonly cell: Cell;
  /** Parameter values in ONNX layout (float64; rounded to the run's dtype where uploaded). */
  readonly params: Readonly<Record<string, Float64Array>>;
  /** [B, T, m], standard normal. */
  readonly xHost: Float64Array;
  readonly x: Tensor;
  readonly paramTensors: Readonly<Record<string, Tensor>>;
  /**
   * A new tensor holding x, uploaded and settled before it is returned. Timed runs solve on one
   * each: backends may keep work derived from an input tensor (its input projection, say) with
   * the tensor, and a benchmark that reused x would time every run but the first without it.
   */
  freshInput(): Promise<Tensor>;
  dispose(): void;
}

export function makeCell(p: GridPoint): Cell {
  return cells.gru({
    inputSize: p.inputSize,
    hiddenSize: p.hiddenSize,
    linearBeforeReset: 1,
    heads: p.heads,
  });
}

export function makeProblem(backend: Backend, p: GridPoint, dtype: DType, seed: number): Problem {
  const cell = makeCell(p);
  const params = cell.init({ seed });
  const xHost = new Rng(seed + 1).normalArray(p.batch * p.T * p.inputSize);
  const x = backend.tensor(xHost, [p.batch, p.T, p.inputSize], dtype);
  const paramTensors: Record<string, Tensor> = {};
  for (const [name, v] of Object.entries(params)) paramTensors[name] = backend.tensor(v, [v.length], dtype);
  return {
    point: p,
    cell,
    params,
    xHost,
    x,
    paramTensors,
    async freshInput() {
      const fresh = backend.tensor(xHost, [p.batch, p.T, p.inputSize], dtype);
      const probe = backend.timeStep(fresh, 0);
      await backend.read(probe);
      backend.dispose(probe);
      return fresh;
    },
    dispose() {
      backend.dispose(x);
      for (const t of Object.values(paramTensors)) backend.dispose(t);
    },
  };
}
