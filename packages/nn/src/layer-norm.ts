import { type Backend, type Cell, defineCell, describeValue, InvalidArgumentError, lang, ShapeError, stepVjp, type Tensor } from '@deerjs/core';

const { add, div, mul, sqrt, square, sub, sum } = lang;

/**
 * Layer normalisation over the n features of every (b, t): γ ⊙ (h − mean) / √(var + ε) + β. It is a
 * step function, so it is written in the cell language and runs — forward and backward — through
 * the backend's own step programs, like any cell. `n` is an integer ≥ 1 and `eps` a finite number
 * > 0 (InvalidArgumentError otherwise): with ε ≤ 0 a constant input divides by √0 or the root of a
 * negative number.
 */
export function layerNormCell(n: number, eps = 1e-5): Cell {
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('layerNormCell n', 'an integer ≥ 1', describeValue(n));
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0)
    throw new InvalidArgumentError('layerNormCell eps', 'a finite number > 0', describeValue(eps));
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

/**
 * Run the layer norm `cell` over y [B, T, n]. Each of the cell's params (`gamma`, `beta`) must be
 * given, an array of its size: a missing or non-array one is an InvalidArgumentError, one of another
 * size a ShapeError (a missing gamma had been a raw TypeError).
 */
export function runLayerNorm(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Float64Array>>,
  y: Tensor,
): NormRun {
  if (params === null || typeof params !== 'object')
    throw new InvalidArgumentError('runLayerNorm params', `an object { ${cell.params.map((s) => s.name).join(', ')} }`, describeValue(params));
  for (const spec of cell.params) {
    const v: unknown = params[spec.name];
    if (!ArrayBuffer.isView(v) && !Array.isArray(v))
      throw new InvalidArgumentError(`${cell.name} ${spec.name}`, `an array of ${spec.size} numbers`, v === undefined ? 'nothing (missing)' : describeValue(v));
    if ((v as ArrayLike<number>).length !== spec.size)
      throw new ShapeError(`${cell.name} ${spec.name}`, `${spec.size} values`, `${(v as ArrayLike<number>).length} values`);
  }
  const p: Record<string, Tensor> = {};
  const release = () => {
    for (const t of Object.values(p)) backend.dispose(t);
  };
  let out: Tensor;
  try {
    for (const spec of cell.params) p[spec.name] = backend.tensor(params[spec.name]!, [spec.size], y.dtype);
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
