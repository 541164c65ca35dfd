import { type Backend, type Cell, deer, deerWithGrad, defineCell, lang, sequential, type Tensor, type Vec } from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { maxAbsDiff, maxRelDiff, sequenceData } from './fixtures.js';

const { add, clip, concat, constant, exp, log, matvec, maximum, minimum, mul, neg, relu, sign, slice, step, tanh } = lang;

/**
 * Cells whose graphs tripped a backend's compiler (found by differential fuzzing of random cells):
 * each backend compiles the graph its own way (generated JavaScript and WebAssembly with fused
 * elementwise runs and hoisted input-only parts, batched tf ops with constant vectors kept 1-D,
 * WGSL), and each of these shapes had given wrong values or a crash on one of them.
 */
const CORNERS: { id: string; why: string; cell: () => Cell }[] = [
  {
    id: 'slice-of-a-fused-node',
    why: "a size-1 slice of an elementwise node, broadcast into another node of the same fused loop, read the loop's current element (cpu: silently wrong, converged)",
    cell: () =>
      defineCell({ name: 'slice-of-fused', state: 3, input: 0, params: {} }, (h) =>
        tanh(add(slice(mul(h, h), 0, 1), mul(h, 0.5))),
      ),
  },
  {
    id: 'input-only-node-reading-a-param-only-node',
    why: 'W·x + exp(b): the hoisted input-only part read exp(b), made only in the other part (cpu: a crash)',
    cell: () =>
      defineCell({ name: 'wx-exp-b', state: 2, input: 3, params: { W: [2, 3], b: [2] } }, (h, x, p) =>
        add(mul(tanh(h), 0.5), add(matvec(p.W, x), exp(p.b))),
      ),
  },
  {
    id: 'slice-of-a-concat-on-its-constant-part',
    why: 'a slice of concat(constant, h) falling on the constant: a 1-D value under a per-element node (tfjs ops: NaN or a crash)',
    cell: () =>
      defineCell({ name: 'slice-of-concat', state: 2, input: 0, params: {} }, (h) =>
        add(mul(h, 0.6), clip(neg(slice(concat(constant([0.25]), h), 0, 1)), 1.5)),
      ),
  },
  {
    id: 'output-is-a-bare-parameter',
    why: "f(h) = p: the output has no body, and webgpu's sequential kernel chose its bindings before reading p (a WGSL error that broke the backend for good)",
    cell: () => defineCell({ name: 'bare-param', state: 2, input: 0, params: { p: [2] } }, (_h, _x, p) => p.p),
  },
  {
    id: 'constant-past-float32',
    why: 'min(0.5·h, 1e39): finite in float64, +Infinity in float32 (a WGSL literal beyond f32 failed the shader)',
    cell: () =>
      defineCell({ name: 'big-constant', state: 2, input: 0, params: {} }, (h) =>
        add(minimum(mul(h, 0.5), 1e39), maximum(mul(h, 0.1), constant([-1e39, -2e39]))),
      ),
  },
  {
    id: 'output-from-the-input-only',
    why: "an output that reads only the input: a cached input-only value went out as the output and the caller's dispose broke the cache (tfjs ops: a crash on the next call)",
    cell: () =>
      defineCell({ name: 'input-only-output', state: 2, input: 3, params: { W: [2, 3] } }, (_h, x, p) =>
        tanh(matvec(p.W, x)),
      ),
  },
  {
    id: 'deep-elementwise-chain',
    why: 'twenty stages v ← 0.9·v + 0.1·tanh(v + b), each reading its input twice: the Jacobian expression had doubled per stage (2^20 terms), and code generated from it took minutes or overflowed the stack',
    cell: () =>
      defineCell({ name: 'deep-chain', state: 3, input: 1, params: { b: [3] } }, (h, x, p) => {
        let v = add(h, mul(x, 0.1));
        for (let k = 0; k < 20; k++) v = add(mul(v, 0.9), mul(0.1, tanh(add(v, p.b))));
        return v;
      }),
  },
];

/**
 * Elementwise ops that compare: each must give NaN for a NaN operand, as IEEE arithmetic does. The
 * reference and the cpu backend gave relu(NaN) = step(NaN) = 0, tfjs's sign(NaN) 0, its wasm
 * engine's relu(NaN) and min(0, NaN) 0, WGSL's max, min and sign a number: a NaN made inside a cell
 * (log of a negative parameter) became a finite trajectory, and the solve said converged.
 */
const NAN_OPS: { id: string; f: (v: Vec) => Vec }[] = [
  { id: 'relu', f: (v) => relu(v) },
  { id: 'step', f: (v) => step(v) },
  { id: 'sign', f: (v) => sign(v) },
  { id: 'max', f: (v) => maximum(v, constant(0)) },
  { id: 'min', f: (v) => minimum(constant(0), v) },
  { id: 'clip', f: (v) => clip(v, 1) },
];

export function defineGraphCases(ctx: SuiteContext): void {
  ctx.test('graph/nan-stays-nan', async () => {
    const backend = ctx.backend();
    const [B, T] = [2, 5];
    const x = backend.tensor(
      Array.from({ length: B * T }, (_, i) => 0.1 * i),
      [B, T, 1],
      ctx.dtype,
    );
    try {
      for (const { id, f } of NAN_OPS) {
        const cell = defineCell({ name: `nan-${id}`, state: 1, input: 1, params: { p: [1] } }, (h, xt, p) =>
          add(mul(tanh(h), 0.5), add(xt, f(log(p.p)))),
        );
        const params = { p: [-1] };
        const seq = await sequential(backend, cell, params, x);
        const ys = await backend.read(seq.y);
        backend.dispose(seq.y);
        expect(Array.from(ys).every(Number.isNaN), `${id}(NaN) sequentially: ${Array.from(ys)}`).toBe(true);
        const r = await deer(backend, cell, params, x);
        const yd = await backend.read(r.y);
        backend.dispose(r.y);
        expect(r.stats.converged, `${id}(NaN): DEER does not call it converged`).toBe(false);
        expect(Array.from(yd).every(Number.isNaN), `${id}(NaN) by DEER (its fallback): ${Array.from(yd)}`).toBe(true);
      }
    } finally {
      backend.dispose(x);
    }
  });

  // Relative, not only absolute, accuracy: a state of size 1e-6 must come out to float32's precision
  // (webgpu's tanh as (1 − e^{−2|x|})/(1 + e^{−2|x|}) gave 3e-8 for tanh(1e-9), and its softplus,
  // log(1 + e) with WGSL's log near 1, was 5e-4 off at x = −9.2; the cpu backend's float32 tanh as
  // 1 − 2/(e^{2x} + 1) returned 0 for 1e-30).
  ctx.test('graph/transcendentals-relative-accuracy', async () => {
    const backend = ctx.backend();
    const xs: number[] = [];
    for (let d = -30; d <= 1; d++) for (const m of [1, 2.5, 5]) xs.push(m * 10 ** d, -m * 10 ** d);
    for (let v = -15; v <= 15; v += 0.37) xs.push(v);
    const fns: { id: string; f: (v: Vec) => Vec; want: (v: number) => number; tol: number }[] = [
      { id: 'tanh', f: tanh, want: Math.tanh, tol: 1e-6 },
      { id: 'softplus', f: lang.softplus, want: (v) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v))), tol: 4e-6 },
      { id: 'sigmoid', f: lang.sigmoid, want: (v) => 1 / (1 + Math.exp(-v)), tol: 4e-6 },
      // A composition (ONNX Elu): eᵛ − 1 as exp minus 1 had given 0 for elu(−1e-9) in float32.
      { id: 'elu', f: (v) => lang.elu(v), want: (v) => (v >= 0 ? v : Math.expm1(v)), tol: 4e-6 },
    ];
    const N = xs.length;
    // Float32 values are what a float32 backend is given: the reference is the function of those.
    const given = ctx.dtype === 'float32' ? xs.map(Math.fround) : xs;
    const tol = ctx.dtype === 'float32' ? 1 : 1e-8;
    const state = backend.zeros([1, N, 1], ctx.dtype);
    const input = backend.tensor(given, [1, N, 1], ctx.dtype);
    try {
      for (const { id, f, want, tol: rel } of fns) {
        const cell = defineCell({ name: `accuracy-${id}`, state: 1, input: 1, params: {} }, (h, x) => f(add(x, mul(h, 0))));
        const out = backend.runStep(cell.stepProgram(), { state, input, params: {} }).outputs[0]!;
        const got = await backend.read(out);
        backend.dispose(out);
        for (let i = 0; i < N; i++) {
          const w = want(given[i]!);
          // Below float32's normal range only absolute error counts (subnormals may flush to 0).
          if (ctx.dtype === 'float32' && Math.abs(w) < 2 ** -126) continue;
          expect(Math.abs(got[i]! - w) / Math.abs(w), `${id}(${given[i]}) = ${got[i]}, want ${w}`).toBeLessThanOrEqual(rel * tol);
        }
      }
    } finally {
      backend.dispose(state);
      backend.dispose(input);
    }
  });

  for (const corner of CORNERS) {
    ctx.test(`graph/${corner.id}`, async () => {
      const cell = corner.cell();
      const B = 2;
      const T = 150;
      const data = sequenceData(41, B, T, cell, ctx.dtype);
      const backend = ctx.backend();
      const oracle = ctx.oracle();
      const dy = new Float64Array(B * T * cell.stateSize).map((_, i) => Math.sin(i));
      const ref = await runAll(oracle, cell, data, dy, B, T, 'float64');
      const got = await runAll(backend, cell, data, dy, B, T, ctx.dtype);
      const why = `${corner.id} (${corner.why})`;
      expect(maxAbsDiff(got.seq, ref.seq), `sequential: ${why}`).toBeLessThanOrEqual(ctx.tolerance);
      expect(got.converged, `deer converged: ${why}`).toBe(true);
      expect(maxAbsDiff(got.deer, ref.seq), `deer: ${why}`).toBeLessThanOrEqual(ctx.tolerance);
      const rel = ctx.dtype === 'float64' ? 1e-9 : 1e-4;
      for (const k of Object.keys(ref.grads)) {
        const scale = Math.max(...Array.from(ref.grads[k]!, Math.abs), 1e-6);
        expect(maxRelDiff(got.grads[k]!, ref.grads[k]!, scale), `gradient ${k}: ${why}`).toBeLessThanOrEqual(rel);
      }
      // runStep twice on the same x, after everything above kept what it keeps.
      expect(maxAbsDiff(got.step1, ref.step1), `runStep: ${why}`).toBeLessThanOrEqual(ctx.tolerance);
      expect(maxAbsDiff(got.step2, ref.step1), `runStep again: ${why}`).toBeLessThanOrEqual(ctx.tolerance);
    });
  }
}

/** sequential, deer, deerWithGrad's vjp and runStep (twice) on one x tensor, as a user's loop would. */
async function runAll(
  backend: Backend,
  cell: Cell,
  data: ReturnType<typeof sequenceData>,
  dyValues: Float64Array,
  B: number,
  T: number,
  dtype: SuiteContext['dtype'],
) {
  const x = backend.tensor(data.x, [B, T, cell.inputSize], dtype);
  const dy = backend.tensor(dyValues, [B, T, cell.stateSize], dtype);
  const params: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(data.params)) params[k] = backend.tensor(v, [v.length], dtype);
  const read = async (t: Tensor) => {
    const v = Float64Array.from(await backend.read(t));
    backend.dispose(t);
    return v;
  };
  try {
    const seq = await read((await sequential(backend, cell, params, x, { h0: data.h0 })).y);
    const r = await deer(backend, cell, params, x, { h0: data.h0 });
    const converged = r.stats.converged && !r.stats.fellBack;
    const yDeer = await read(r.y);
    const g = await deerWithGrad(backend, cell, params, x, { h0: data.h0 });
    const grads: Record<string, Float64Array> = {};
    try {
      const v = await g.vjp(dy);
      grads.x = await read(v.x);
      grads.h0 = await read(v.h0);
      for (const [k, t] of Object.entries(v.params)) grads[k] = await read(t);
    } finally {
      g.dispose();
    }
    const state = backend.tensor(seq, [B, T, cell.stateSize], dtype);
    const program = cell.linearizeProgram(cell.exactBlockSize);
    const stepOnce = async () => {
      const o = backend.runStep(program, cell.inputSize > 0 ? { state, input: x, params } : { state, params });
      const f = await read(o.outputs[0]!);
      for (const t of o.outputs.slice(1)) backend.dispose(t);
      const J = await read(o.jacobian!);
      return Float64Array.from([...f, ...J]);
    };
    try {
      const step1 = await stepOnce();
      const step2 = await stepOnce();
      return { seq, deer: yDeer, converged, grads, step1, step2 };
    } finally {
      backend.dispose(state);
    }
  } finally {
    backend.dispose(x);
    backend.dispose(dy);
    for (const t of Object.values(params)) backend.dispose(t);
  }
}
