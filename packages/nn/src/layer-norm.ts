import { type Backend, type Cell, defineCell, lang, stepVjp, type Tensor } from '@deerjs/core';

const { add, div, mul, sqrt, square, sub, sum } = lang;

/**
 * Layer normalisation over the n features of every (b, t): γ ⊙ (h − mean) / √(var + ε) + β. It is a
 * step function, so it is written in the cell language and runs — forward and backward — through
 * the backend's own step programs, like any cell.
 */
export function layerNormCell(n: number, eps = 1e-5): Cell {
  return defineCell(
    {
      name: `layernorm(n=${n})`,
      state: n,
      input: 0,
      params: { gamma: [n], beta: [n] },
      init: { gamma: { constant: 1 }, beta: { constant: 0 } },
    },
    (h, _x, p) => {
      const centred = sub(h, mul(sum(h), 1 / n));
      const inv = div(1, sqrt(add(mul(sum(square(centred)), 1 / n), eps)));
      return add(mul(p.gamma, mul(centred, inv)), p.beta);
    },
  );
}

/** A layer norm applied to y [B, T, n], kept for its backward pass. */
export interface NormRun {
  /** The normalised sequence; the run owns it. */
  readonly out: Tensor;
  /** ∂L/∂y and ∂L/∂(γ, β) given ∂L/∂out; the caller owns the returned tensor. */
  backward(dOut: Tensor): Promise<{ dy: Tensor; grads: Record<string, Float64Array> }>;
  dispose(): void;
}

export function runLayerNorm(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Float64Array>>,
  y: Tensor,
): NormRun {
  const p: Record<string, Tensor> = {};
  for (const spec of cell.params) p[spec.name] = backend.tensor(params[spec.name]!, [spec.size], y.dtype);
  const release = () => {
    for (const t of Object.values(p)) backend.dispose(t);
  };
  let out: Tensor;
  try {
    out = backend.runStep(cell.stepProgram(), { state: y, params: p }).outputs[0]!;
  } catch (err) {
    release();
    throw err;
  }
  return {
    out,
    async backward(dOut) {
      const g = stepVjp(backend, cell, p, y, undefined, dOut);
      try {
        const grads: Record<string, Float64Array> = {};
        for (const [name, t] of Object.entries(g.params)) grads[name] = Float64Array.from(await backend.read(t));
        return { dy: g.dState!, grads };
      } catch (err) {
        if (g.dState) backend.dispose(g.dState);
        throw err;
      } finally {
        for (const t of Object.values(g.params)) backend.dispose(t);
        if (g.dInput) backend.dispose(g.dInput);
      }
    },
    dispose() {
      backend.dispose(out);
      release();
    },
  };
}
