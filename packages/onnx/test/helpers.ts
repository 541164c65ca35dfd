import { Rng } from '@deerjs/core';
import type { Direction, OnnxTensor, RecurrentOp } from '../src/index.js';

export interface Case {
  readonly op: RecurrentOp;
  readonly lbr: 0 | 1;
  readonly direction: Direction;
  readonly layout: 0 | 1;
  readonly initial: boolean;
}

export const SIZES = { m: 3, n: 6, T: 12, B: 3 } as const;

export function maxAbsDiff(a: OnnxTensor, b: OnnxTensor): number {
  if (a.dims.join() !== b.dims.join()) throw new Error(`dims differ: [${a.dims}] vs [${b.dims}]`);
  let e = 0;
  for (let i = 0; i < a.data.length; i++) e = Math.max(e, Math.abs(Number(a.data[i]) - Number(b.data[i])));
  return e;
}

/** out[i_perm] = x: a plain row-major transpose for the layout-1 ↔ layout-0 reference. */
export function transpose(x: OnnxTensor, perm: readonly number[]): OnnxTensor {
  const dims = perm.map((p) => x.dims[p]!);
  const strides = x.dims.map((_, i) => x.dims.slice(i + 1).reduce((a, b) => a * b, 1));
  const out = new Float32Array(x.data.length);
  const idx = dims.map(() => 0);
  for (let o = 0; o < out.length; o++) {
    out[o] = Number(x.data[perm.reduce((s, p, i) => s + idx[i]! * strides[p]!, 0)]);
    for (let i = dims.length - 1; i >= 0 && ++idx[i]! >= dims[i]!; i--) idx[i] = 0;
  }
  return { data: out, dims };
}

/** Seeded X, initial_h and initial_c in the case's layout. */
export function randomInputs(c: Case, seed: number, T: number = SIZES.T): Record<string, OnnxTensor> {
  const { m, n, B } = SIZES;
  const nd = c.direction === 'bidirectional' ? 2 : 1;
  const rng = new Rng(seed);
  const draw = (dims: number[]) => ({
    data: Float32Array.from(rng.uniformArray(dims.reduce((a, b) => a * b, 1))),
    dims,
  });
  const inputs: Record<string, OnnxTensor> = { X: draw(c.layout === 0 ? [T, B, m] : [B, T, m]) };
  if (c.initial) {
    const dims = c.layout === 0 ? [nd, B, n] : [B, nd, n];
    inputs.initial_h = draw(dims);
    if (c.op === 'LSTM') inputs.initial_c = draw(dims);
  }
  return inputs;
}

/** Layout-1 tensors as layout 0 (onnxruntime's CPU kernels accept layout 0 only). */
export function toLayout0(inputs: Record<string, OnnxTensor>): Record<string, OnnxTensor> {
  return Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, transpose(v, [1, 0, 2])]));
}

/** Layout-0 outputs as layout 1: Y [T, nd, B, n] → [B, T, nd, n], states [nd, B, n] → [B, nd, n]. */
export function toLayout1(outputs: Record<string, OnnxTensor>): Record<string, OnnxTensor> {
  return Object.fromEntries(
    Object.entries(outputs).map(([k, v]) => [
      k,
      transpose(v, v.dims.length === 4 ? [2, 0, 1, 3] : [1, 0, 2]),
    ]),
  );
}
