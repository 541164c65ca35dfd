import '@tensorflow/tfjs-backend-cpu';
import { type Cell, type CellBody, cells, deer, defineCell, lang, Rng, type StepProgram, type Tensor } from '@deerjs/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTfjsBackend, type TfjsBackend } from '../src/index.js';

/**
 * runStep keeps input-only values (W·x + b) between calls with the same input and params, shared
 * by the programs that compute them: they must follow those tensors (new params, a reassigned
 * tf.Variable) and go with them.
 */
const cell = cells.gru({ inputSize: 3, hiddenSize: 8, heads: 2 });
let program: StepProgram = cell.residualProgram(4);
const B = 2;
const T = 5;
const n = cell.stateSize;

let be: TfjsBackend;
beforeAll(async () => {
  be = await createTfjsBackend({ backend: 'cpu', hostKernels: false });
});

function tensors(backend: TfjsBackend, seed: number) {
  return Object.fromEntries(Object.entries(cell.init({ seed })).map(([k, v]) => [k, backend.tensor(v, [v.length])]));
}

async function run(backend: TfjsBackend, params: Record<string, Tensor>, x: Tensor, y: Tensor, yPrev: Tensor) {
  const out = backend.runStep(program, { state: yPrev, input: x, cotangent: y, params });
  const got = [...(await backend.read(out.outputs[0]!)), ...(out.jacobian ? await backend.read(out.jacobian) : [])];
  backend.dispose(out.outputs[0]!);
  if (out.jacobian) backend.dispose(out.jacobian);
  return got;
}

/** The same step on a backend that has never seen the program (nothing kept). */
async function fresh(values: Record<string, ArrayLike<number>>, xs: ArrayLike<number>, ys: ArrayLike<number>, ps: ArrayLike<number>) {
  const other = await createTfjsBackend({ backend: 'cpu', hostKernels: false });
  const params = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, other.tensor(v, [v.length])]));
  const [x, y, yPrev] = [other.tensor(xs, [B, T, 3]), other.tensor(ys, [B, T, n]), other.tensor(ps, [B, T, n])];
  const got = await run(other, params, x, y, yPrev);
  for (const t of [x, y, yPrev, ...Object.values(params)]) other.dispose(t);
  return got;
}

describe('kept input-only values', () => {
  it('follow the input and params they came from, and go with them', async () => {
    const before = tf.memory().numTensors;
    const xs = new Rng(1).normalArray(B * T * 3);
    const ys = new Rng(2).normalArray(B * T * n);
    const ps = new Rng(3).normalArray(B * T * n);
    const [x, y, yPrev] = [be.tensor(xs, [B, T, 3]), be.tensor(ys, [B, T, n]), be.tensor(ps, [B, T, n])];
    const p1 = tensors(be, 11);
    const p2 = tensors(be, 12);
    const ref1 = await fresh(cell.init({ seed: 11 }), xs, ys, ps);
    const ref2 = await fresh(cell.init({ seed: 12 }), xs, ys, ps);
    expect(ref1).not.toEqual(ref2);
    // First call: values kept; then reused.
    for (let k = 0; k < 3; k++) expect(await run(be, p1, x, y, yPrev)).toEqual(ref1);
    expect(await run(be, p2, x, y, yPrev)).toEqual(ref2);
    expect(await run(be, p1, x, y, yPrev)).toEqual(ref1);
    // A new input.
    const xs2 = new Rng(4).normalArray(B * T * 3);
    const x2 = be.tensor(xs2, [B, T, 3]);
    expect(await run(be, p1, x2, y, yPrev)).toEqual(await fresh(cell.init({ seed: 11 }), xs2, ys, ps));

    // A tf.Variable keeps its identity when assigned: its new values must be used.
    const w11 = tf.tensor1d(Float32Array.from(cell.init({ seed: 11 }).W!));
    const w12 = tf.tensor1d(Float32Array.from(cell.init({ seed: 12 }).W!));
    const W = tf.variable(w11);
    const pv = { ...p1, W: be.wrap(W) };
    expect(await run(be, pv, x, y, yPrev)).toEqual(ref1);
    expect(await run(be, pv, x, y, yPrev)).toEqual(ref1);
    W.assign(w12);
    const mixed = { ...cell.init({ seed: 11 }), W: cell.init({ seed: 12 }).W! };
    expect(await run(be, pv, x, y, yPrev)).toEqual(await fresh(mixed, xs, ys, ps));

    // Other programs of the cell on the same input and params reuse what the first one kept.
    for (const other of [cell.residualProgram(), cell.linearizeProgram(4), cell.residualProgram(4)]) {
      program = other;
      const ref = await fresh(cell.init({ seed: 12 }), xs, ys, ps);
      expect(await run(be, p2, x, y, yPrev)).toEqual(ref);
      expect(await run(be, p2, x, y, yPrev)).toEqual(ref);
    }

    be.dispose(pv.W);
    tf.dispose([W, w11, w12]);
    for (const t of [x, x2, y, yPrev, ...Object.values(p1), ...Object.values(p2)]) be.dispose(t);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('are released by destroy()', async () => {
    const other = await createTfjsBackend({ backend: 'cpu', hostKernels: false });
    const x = other.tensor(new Rng(1).normalArray(B * T * 3), [B, T, 3]);
    const y = other.tensor(new Rng(2).normalArray(B * T * n), [B, T, n]);
    const params = tensors(other, 11);
    const before = tf.memory().numTensors;
    for (let k = 0; k < 3; k++) await run(other, params, x, y, y);
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    other.destroy();
    expect(tf.memory().numTensors).toBe(before);
    for (const t of [x, y, ...Object.values(params)]) other.dispose(t);
  });
});

/**
 * Kept values are keyed by the expression they compute, which names params; the cache must tell
 * apart everything else they depend on: which tensor each name is bound to, and the layout the cell
 * declares for it. Each case runs cell A, then cell B on the same x tensor (and the same param
 * tensors, bound differently), and compares B with B alone on a fresh x.
 */
describe('kept input-only values across cells', () => {
  const { add, constant, div, matvec, mul, sigmoid, tanh } = lang;

  async function bAfterA(
    A: Cell,
    pa: Record<string, Tensor>,
    Bc: Cell,
    pb: Record<string, Tensor>,
    xs: ArrayLike<number>,
    shape: number[],
  ) {
    const xAlone = be.tensor(xs, shape);
    const alone = await deer(be, Bc, pb, xAlone);
    const ref = await be.read(alone.y);
    const x = be.tensor(xs, shape);
    const a = await deer(be, A, pa, x);
    const b = await deer(be, Bc, pb, x);
    const got = await be.read(b.y);
    for (const t of [xAlone, x, alone.y, a.y, b.y]) be.dispose(t);
    return { ref, got, converged: b.stats.converged };
  }

  it('the same tensors bound to other names (params declared {W, U} and {U, W}) are other values', async () => {
    const n = 4;
    const m = 3;
    const body: CellBody<'W' | 'U'> = (h, x, p) =>
      tanh(add(matvec(p.W, x), add(mul(matvec(p.U, x), constant([0.5])), mul(h, constant([0.3])))));
    const A = defineCell({ state: n, input: m, params: { W: [n, m], U: [n, m] } }, body);
    const Bc = defineCell({ state: n, input: m, params: { U: [n, m], W: [n, m] } }, body);
    const t1 = be.tensor(Array.from({ length: n * m }, (_, i) => Math.sin(i + 1)), [n, m]);
    const t2 = be.tensor(Array.from({ length: n * m }, (_, i) => Math.cos(3 * i)), [n, m]);
    const xs = Array.from({ length: 2 * 50 * m }, (_, i) => Math.sin(i / 7));
    const r = await bAfterA(A, { W: t1, U: t2 }, Bc, { U: t1, W: t2 }, xs, [2, 50, m]);
    expect(r.converged).toBe(true);
    expect(r.got).toEqual(r.ref);
    be.dispose(t1);
    be.dispose(t2);
  });

  it('one flat tensor read as a dense [2, 6] and as a block [2, 2, 3] param is two products', async () => {
    const body: CellBody<'W'> = (h, x, p) => tanh(add(matvec(p.W, x), mul(h, constant([0.3]))));
    const A = defineCell({ state: 2, input: 6, params: { W: [2, 6] } }, body);
    const Bc = defineCell({ state: 4, input: 6, params: { W: [2, 2, 3] } }, body);
    const W = be.tensor(Array.from({ length: 12 }, (_, i) => Math.sin(2 * i + 1)), [12]);
    const xs = Array.from({ length: 2 * 20 * 6 }, (_, i) => Math.cos(i / 5));
    const r = await bAfterA(A, { W }, Bc, { W }, xs, [2, 20, 6]);
    expect(r.got).toEqual(r.ref);
    be.dispose(W);
  });

  it('a constant -0 is not the constant 0', async () => {
    // 1/(W·x · ±0) is ∓∞: the sigmoid is 1 for one cell and 0 for the other.
    const cell = (z: number) =>
      defineCell({ state: 2, input: 3, params: { W: [2, 3] } }, (h, x, p) =>
        sigmoid(add(div(constant([1]), mul(matvec(p.W, x), constant([z]))), mul(h, constant([0.3])))),
      );
    const W = be.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const xs = Array.from({ length: 2 * 5 * 3 }, (_, i) => 1 + (i % 4));
    const r = await bAfterA(cell(0), { W }, cell(-0), { W }, xs, [2, 5, 3]);
    expect(Array.from(r.ref).every((v) => v === 0)).toBe(true);
    expect(r.got).toEqual(r.ref);
    be.dispose(W);
  });
});
