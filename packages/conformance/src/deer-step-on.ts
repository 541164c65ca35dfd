import {
  type Backend,
  type Cell,
  type DType,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  scanThenUpdate,
  type Tensor,
} from '@deerjs/core';

/** A DEER step's data: inputs x [B, T, m], h0 [B, n], the iterate `prev` [B, T, n], the params. */
export interface DeerStepData {
  readonly B: number;
  readonly T: number;
  readonly x: ArrayLike<number>;
  readonly h0: ArrayLike<number>;
  readonly prev: ArrayLike<number>;
  readonly params: Readonly<Record<string, ArrayLike<number>>>;
}

/**
 * One DEER step of `cell` at `data.prev` with Jacobian blocks of s on `be`: the backend's fused
 * `deerStep` ('fused': null where it has none for the case), core's composition (shiftTime,
 * runStep, scan and update: 'composed'), or the fused one where there is one ('either'). Returns
 * the update and the new iterate read back; frees everything it made.
 */
export async function deerStepOn(
  be: Backend,
  cell: Cell,
  data: DeerStepData,
  s: number,
  opts: NewtonUpdateOptions,
  dtype: DType,
  how: 'fused' | 'composed' | 'either',
): Promise<{ u: NewtonUpdate; y: ArrayLike<number> } | null> {
  const { B, T } = data;
  const n = cell.stateSize;
  const owned: Tensor[] = [];
  const t = (v: Tensor) => {
    owned.push(v);
    return v;
  };
  const p: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(data.params)) p[k] = t(be.tensor(v, [v.length], dtype));
  const inputs = {
    input: t(be.tensor(data.x, [B, T, cell.inputSize], dtype)),
    y0: t(be.tensor(data.h0, [B, n], dtype)),
    params: p,
  };
  const old = t(be.tensor(data.prev, [B, T, n], dtype));
  const program = cell.residualProgram(s);
  try {
    let u = how === 'composed' ? null : ((await be.deerStep?.(program, inputs, old, opts)) ?? null);
    if (!u && how === 'fused') return null;
    if (!u) {
      const yPrev = t(be.shiftTime(old, inputs.y0, 1));
      const out = be.runStep(program, { state: yPrev, input: inputs.input, cotangent: old, params: p });
      t(out.outputs[0]!);
      t(out.jacobian!);
      const args = { A: out.jacobian!, c: out.outputs[0]!, y0: t(be.zeros([B, n], dtype)), blockSize: s, reverse: false };
      u = await scanThenUpdate(be, args, old, { ...opts, delta: true });
    }
    const y = await be.read(u.y);
    be.dispose(u.y);
    return { u, y };
  } finally {
    for (const v of owned) be.dispose(v);
  }
}
