import { type Cell, cells, deer, type Graph, Rng, sequential, type StepProgram, type Tensor, type UnaryFn } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { makeSeqPlan, makeStepPlan } from '../src/compiled/backend.js';
import { wasmKernels } from '../src/compiled/wasm/kernel-module.js';
import { createCpuBackend, createReferenceBackend, FastCpuBackend } from '../src/index.js';
import { CELLS } from './cells.js';

/** Distance in float32 units in the last place (ordered bit patterns). */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const ordered = (v: number) => {
  f32[0] = v;
  const b = u32[0]!;
  return b & 0x80000000 ? -(b & 0x7fffffff) : b;
};

// This package compiles without DOM or Node types.
const WA = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object) => { exports: Record<string, unknown> };
    };
  }
).WebAssembly;

/** A one-node kernel f(x) run over xs (lanes = four elements) on its own instance. */
function runUnary(fn: UnaryFn, xs: Float32Array): Float32Array {
  const g: Graph = {
    nodes: [
      { op: 'input', size: 1 },
      { op: 'unary', fn, a: 0, size: 1 },
    ],
    stateSize: 1,
    inputSize: 1,
    params: [],
  };
  const k = wasmKernels(g, [
    { name: 'k', nodes: [1], externals: [{ id: 0, layout: 'rows' }], stores: [{ id: 1, layout: 'rows' }] },
  ]);
  const { exports } = new WA.Instance(new WA.Module(k.bytes));
  const mem = exports.mem as { buffer: ArrayBuffer; grow(pages: number): number };
  const run = exports.k as (...a: number[]) => void;
  const N = Math.ceil(xs.length / 4) * 4;
  const [xp, op, sp] = [k.dataEnd, k.dataEnd + 4 * N, k.dataEnd + 8 * N];
  mem.grow(Math.ceil((sp + (N / 4) * k.groupBytes[0]!) / 65536));
  new Float32Array(mem.buffer).set(xs, xp / 4);
  run(N / 4, sp, xp, 16, 4, op, 16, 4);
  return new Float32Array(mem.buffer, op, xs.length).slice();
}

describe('f32x4 transcendentals', () => {
  const rng = new Rng(11);
  // Dense near 0, spread to ±110; then the edges and specials.
  const sweep = Float32Array.from([
    ...rng.normalArray(20000, 1),
    ...rng.normalArray(20000, 30),
    ...Array.from({ length: 4001 }, (_, i) => (i - 2000) * 0.055),
    ...Array.from({ length: 200 }, (_, i) => 1e-6 * (i - 100)),
    88.5,
    -88.5,
    100,
    -100,
    1e30,
    -1e30,
    0,
    -0,
  ]);
  const cases: [UnaryFn, (x: number) => number, number][] = [
    ['exp', Math.exp, 2],
    ['sigmoid', (x) => 1 / (1 + Math.exp(-x)), 3],
    ['tanh', Math.tanh, 6],
  ];
  for (const [fn, exact, maxUlp] of cases) {
    it(`${fn}: within ${maxUlp} ulp of the float32 rounding of the exact value; saturates`, () => {
      const out = runUnary(fn, sweep);
      let worst = 0;
      for (let i = 0; i < sweep.length; i++) {
        const want = Math.fround(exact(sweep[i]!));
        const got = out[i]!;
        if (Number.isFinite(want)) expect(Number.isFinite(got)).toBe(true);
        else expect(got).toBe(want);
        // Below the normal range only the absolute error matters.
        if (Math.abs(want) < 2 ** -126) expect(Math.abs(got - want)).toBeLessThan(2 ** -126);
        else if (Number.isFinite(want)) worst = Math.max(worst, Math.abs(ordered(got) - ordered(want)));
      }
      expect(worst).toBeLessThanOrEqual(maxUlp);
      if (fn !== 'exp') {
        // ±100 and ±1e30 saturate: no NaN, no Inf.
        const big = runUnary(fn, Float32Array.from([100, -100, 1e30, -1e30]));
        expect(Array.from(big)).toEqual(fn === 'tanh' ? [1, -1, 1, -1] : [1, 0, 1, 0]);
      }
    });
  }
  it('NaN stays NaN', () => {
    for (const fn of ['exp', 'sigmoid', 'tanh', 'neg', 'abs', 'square', 'sqrt'] as const) {
      expect(Number.isNaN(runUnary(fn, Float32Array.from([Number.NaN]))[0])).toBe(true);
    }
  });
  it('relu, step, sign and the plain ops agree with the reference formulas exactly', () => {
    const xs = Float32Array.from([-2.5, -0, 0, 1e-30, 3.25, Number.NaN, 7, -1e20]);
    const want: Partial<Record<UnaryFn, (v: number) => number>> = {
      relu: (v) => (v > 0 || Number.isNaN(v) ? v : 0),
      step: (v) => (v > 0 ? 1 : Number.isNaN(v) ? v : 0),
      sign: Math.sign,
      neg: (v) => -v,
      abs: Math.abs,
      square: (v) => Math.fround(v * v),
      sqrt: (v) => Math.fround(Math.sqrt(v)),
    };
    for (const [fn, ref] of Object.entries(want)) {
      const out = runUnary(fn as UnaryFn, xs);
      for (let i = 0; i < xs.length; i++) {
        const want = Math.fround(ref!(xs[i]!));
        expect(Object.is(out[i], want) || (Number.isNaN(out[i]!) && Number.isNaN(want))).toBe(true);
      }
    }
  });
});


async function sequentialOn(be: FastCpuBackend | ReturnType<typeof createReferenceBackend>, cell: Cell, B: number, T: number) {
  const r = new Rng(3);
  const params = cell.init({ seed: 2 });
  const m = cell.inputSize;
  const p: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
  const y = be.runSequential(cell.stepProgram(), {
    input: m > 0 ? be.tensor(r.normalArray(B * T * m, 1), [B, T, m]) : undefined,
    y0: be.tensor(r.normalArray(B * cell.stateSize, 0.5), [B, cell.stateSize]),
    params: p,
  });
  return Float64Array.from(await be.read(y));
}

describe('float32 sequential evaluation on WebAssembly SIMD agrees with the float64 reference', () => {
  for (const [name, cell] of CELLS) {
    it(`${name}, B=7`, async () => {
      expect(makeSeqPlan(cell.stepProgram(), true).wasm).toBeDefined();
      const B = 7;
      const T = 40;
      const fast = await sequentialOn(createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 1 }), cell, B, T);
      const ref = await sequentialOn(createReferenceBackend({ dtype: 'float64' }), cell, B, T);
      let err = 0;
      for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(fast[i]! - ref[i]!) / (1 + Math.abs(ref[i]!)));
      expect(err).toBeLessThan(2e-5);
    });
  }
  it('programs with an op the generator does not know (softplus) run on generated JavaScript', () => {
    const cell = cells.mlp({ stateSize: 3, inputSize: 1, hidden: [4], activation: 'softplus' });
    expect(makeSeqPlan(cell.stepProgram(), true).wasm).toBeUndefined();
  });
  it('float64 and simd: false keep the JavaScript kernels', () => {
    const p = cells.gru({ inputSize: 2, hiddenSize: 3 }).stepProgram();
    expect(makeSeqPlan(p, false).wasm).toBeUndefined();
    expect(makeSeqPlan(p, true, false).wasm).toBeUndefined();
  });
  it('any split of the rows over threads gives the same values', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 6 });
    const B = 9;
    const T = 30000;
    const one = await sequentialOn(new FastCpuBackend({ dtype: 'float32', threads: 1 }), cell, B, T);
    const be = new FastCpuBackend({ dtype: 'float32', threads: 2 });
    try {
      const two = await sequentialOn(be, cell, B, T);
      expect(Array.from(two)).toEqual(Array.from(one));
    } finally {
      be.destroy();
    }
  });
});

/** runStep of `program` on B × T elements (seeded state, input, cotangent); outputs and Jacobian, as float64. */
function stepOn(
  be: FastCpuBackend | ReturnType<typeof createReferenceBackend>,
  cell: Cell,
  program: StepProgram,
  B: number,
  T: number,
  seed = 5,
) {
  const r = new Rng(seed);
  const n = cell.stateSize;
  const m = cell.inputSize;
  const p: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(cell.init({ seed: 2 }))) p[k] = be.tensor(v, [v.length]);
  const out = be.runStep(program, {
    state: be.tensor(r.normalArray(B * T * n, 0.7), [B, T, n]),
    input: m > 0 ? be.tensor(r.normalArray(B * T * m, 1), [B, T, m]) : undefined,
    cotangent: be.tensor(r.normalArray(B * T * n, 1), [B, T, n]),
    params: p,
  });
  return {
    outputs: out.outputs.map((t) => Float64Array.from(be.readSync(t))),
    jacobian: out.jacobian ? Float64Array.from(be.readSync(out.jacobian)) : undefined,
  };
}

const relErr = (a: Float64Array, b: Float64Array) => {
  expect(a.length).toBe(b.length);
  let err = 0;
  for (let i = 0; i < b.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return err;
};

/** The programs a Newton iteration and the backward pass run: residual with each structure, f, the VJP. */
function programsOf(cell: Cell): [string, StepProgram][] {
  const n = cell.stateSize;
  const blocks = [1, n, ...[2, 3, 4].filter((s) => s < n && n % s === 0)];
  const v = cell.vjp;
  const vjpOutputs = [v.dState, v.dInput].filter((id): id is number => id !== null);
  return [
    ['f', cell.stepProgram()],
    ['residual', cell.residualProgram()],
    ...blocks.map((s): [string, StepProgram] => [`residual + Jacobian block(${s})`, cell.residualProgram(s)]),
    ...blocks.map((s): [string, StepProgram] => [`f + Jacobian block(${s})`, cell.linearizeProgram(s)]),
    ...(vjpOutputs.length ? [['vjp', { graph: v.graph, outputs: vjpOutputs }] as [string, StepProgram]] : []),
  ];
}

/** Cells whose Jacobian has terms of the generic entry formula (a product through a hidden layer): JavaScript. */
const ENTRY_TERMS = new Set([
  'gru lbr0, clipped',
  'mlp', 'mlp relu, no input', 'hamiltonian tanh', 'hamiltonian softplus (its vector field reads sigmoid)']);

describe('float32 runStep on WebAssembly SIMD agrees with the float64 reference', () => {
  // B·T = 21: the last group of four elements is partial; n = 13 and 5 are not multiples of 4.
  const [B, T] = [3, 7];
  for (const [name, cell] of CELLS) {
    for (const [what, program] of programsOf(cell)) {
      it(`${name}: ${what}`, () => {
        const plan = makeStepPlan(program, true);
        if (!ENTRY_TERMS.has(name) || !program.jacobian) expect(plan.wasm).toBeDefined();
        const fast = stepOn(createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 1 }), cell, program, B, T);
        const ref = stepOn(createReferenceBackend({ dtype: 'float64' }), cell, program, B, T);
        for (const [k, o] of fast.outputs.entries()) expect(relErr(o, ref.outputs[k]!)).toBeLessThan(2e-5);
        expect(fast.jacobian === undefined).toBe(ref.jacobian === undefined);
        if (ref.jacobian) expect(relErr(fast.jacobian!, ref.jacobian)).toBeLessThan(2e-5);
      });
    }
  }
  it('a long run (many chunks, hoisted values kept across calls, then a new input) agrees too', () => {
    const cell = cells.gru({ inputSize: 5, hiddenSize: 13 });
    const program = cell.residualProgram(13);
    const be = createCpuBackend({ dtype: 'float32', threads: 1 });
    const ref = createReferenceBackend({ dtype: 'float64' });
    const params: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(cell.init({ seed: 2 }))) params[k] = be.tensor(v, [v.length]);
    const refParams: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(cell.init({ seed: 2 }))) refParams[k] = ref.tensor(v, [v.length]);
    const [Bl, Tl, n] = [3, 701, 13];
    const r = new Rng(9);
    const xs = [r.normalArray(Bl * Tl * 5, 1), r.normalArray(Bl * Tl * 5, 1)];
    const x = be.tensor(xs[0]!, [Bl, Tl, 5]);
    for (const [k, xv] of [xs[0]!, xs[0]!, xs[1]!].entries()) {
      const y = r.normalArray(Bl * Tl * n, 0.7);
      const c = r.normalArray(Bl * Tl * n, 1);
      const xt = k < 2 ? x : be.tensor(xv, [Bl, Tl, 5]);
      const a = be.runStep(program, { state: be.tensor(y, [Bl, Tl, n]), input: xt, cotangent: be.tensor(c, [Bl, Tl, n]), params });
      const b = ref.runStep(program, {
        state: ref.tensor(y, [Bl, Tl, n]),
        input: ref.tensor(xv, [Bl, Tl, 5]),
        cotangent: ref.tensor(c, [Bl, Tl, n]),
        params: refParams,
      });
      expect(relErr(Float64Array.from(be.readSync(a.outputs[0]!)), Float64Array.from(ref.readSync(b.outputs[0]!)))).toBeLessThan(2e-5);
      expect(relErr(Float64Array.from(be.readSync(a.jacobian!)), Float64Array.from(ref.readSync(b.jacobian!)))).toBeLessThan(2e-5);
    }
  });
  it('float64 and simd: false keep the JavaScript kernels', () => {
    const p = cells.gru({ inputSize: 2, hiddenSize: 3 }).residualProgram(3);
    expect(makeStepPlan(p, false).wasm).toBeUndefined();
    expect(makeStepPlan(p, true, false).wasm).toBeUndefined();
  });
  it('gives the same values whatever the threads (it runs on the calling thread)', () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 6 });
    const program = cell.residualProgram(1);
    const one = stepOn(new FastCpuBackend({ dtype: 'float32', threads: 1 }), cell, program, 5, 2000);
    const be = new FastCpuBackend({ dtype: 'float32', threads: 2 });
    try {
      const two = stepOn(be, cell, program, 5, 2000);
      expect(Array.from(two.outputs[0]!)).toEqual(Array.from(one.outputs[0]!));
      expect(Array.from(two.jacobian!)).toEqual(Array.from(one.jacobian!));
    } finally {
      be.destroy();
    }
  });
});

// The module encoder pushed a function body's code with spread arguments: from hidden 512 the
// call overflowed the stack (RangeError) and deer-train stopped with a stack trace.
describe('a large generated WebAssembly body', () => {
  it('GRU hidden 512: sequential and dense DEER on WebAssembly SIMD agree with the float64 reference', async () => {
    const cell = cells.gru({ inputSize: 1, hiddenSize: 512 });
    const params = cell.init({ seed: 1 });
    const xs = Float32Array.from({ length: 2 * 3 }, (_, i) => Math.sin(i));
    const be = createCpuBackend({ dtype: 'float32', compileMin: 0, threads: 1 });
    const ref = createReferenceBackend({ dtype: 'float64' });
    try {
      const x = be.tensor(xs, [2, 3, 1], 'float32');
      const got = await be.read((await sequential(be, cell, params, x)).y);
      const xr = ref.tensor(xs, [2, 3, 1], 'float64');
      const want = await ref.read((await sequential(ref, cell, params, xr)).y);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-5);
      // The dense Jacobian's step body is the one large enough to overflow.
      const r = await deer(be, cell, params, x, { jacobian: 'dense', method: 'deer' });
      expect(r.stats.converged).toBe(true);
      const y = await be.read(r.y);
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(y[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-5);
    } finally {
      await be.destroy();
      await ref.destroy();
    }
  });
});
