import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { cells, DTypeError, InvalidArgumentError, NonFiniteError, Rng, ShapeError, TensorStateError, UnsupportedOptionError } from '@deerjs/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { createTfjsBackend, deerRnn } from '../src/index.js';
import { defaultBackend } from '../src/op.js';
import { createReferenceBackend } from '@deerjs/cpu/reference';

const n = 6;
const m = 3;
const B = 2;
const T = 40;
const cell = cells.gru({ inputSize: m, hiddenSize: n });

/** The GRU (ONNX layout, linear_before_reset 1) written directly with tf ops, unrolled over time. */
function gruUnrolled(p: Record<string, tf.Tensor>, x: tf.Tensor3D, h0: tf.Tensor2D): tf.Tensor3D {
  const xs = tf.unstack(x, 1);
  let h: tf.Tensor2D = h0;
  const ys: tf.Tensor2D[] = [];
  for (const xt of xs) {
    const gx = tf.add(tf.matMul(xt as tf.Tensor2D, p.W as tf.Tensor2D, false, true), p.Wb!);
    const gh = tf.add(tf.matMul(h, p.R as tf.Tensor2D, false, true), p.Rb!);
    const part = (g: tf.Tensor, k: number) => tf.slice(g, [0, k * n], [-1, n]);
    const z = tf.sigmoid(tf.add(part(gx, 0), part(gh, 0)));
    const r = tf.sigmoid(tf.add(part(gx, 1), part(gh, 1)));
    const cand = tf.tanh(tf.add(part(gx, 2), tf.mul(r, part(gh, 2))));
    h = tf.add(tf.mul(tf.sub(1, z), cand), tf.mul(z, h)) as tf.Tensor2D;
    ys.push(h);
  }
  return tf.stack(ys, 1) as tf.Tensor3D;
}

/** A copy of x [B, T, m] with NaN at (b, t, i). */
function withNaN(x: tf.Tensor3D, b: number, t: number, i: number): tf.Tensor3D {
  const xs = x.arraySync();
  xs[b]![t]![i] = Number.NaN;
  return tf.tensor3d(xs);
}

function problem(seed: number) {
  const init = cell.init({ seed });
  const rng = new Rng(seed + 1);
  const params: Record<string, tf.Variable> = {};
  for (const spec of cell.params)
    params[spec.name] = tf.variable(tf.tensor(Float32Array.from(init[spec.name]!), spec.shape as number[]));
  const x = tf.tensor3d(Float32Array.from(rng.normalArray(B * T * m)), [B, T, m]);
  const h0 = tf.variable(tf.tensor2d(Float32Array.from(rng.normalArray(B * n, 0.5)), [B, n]));
  const w = tf.tensor3d(Float32Array.from(rng.normalArray(B * T * n)), [B, T, n]);
  const dispose = () => tf.dispose([...Object.values(params), x, h0, w]);
  return { params, x, h0, w, dispose };
}

function maxRel(
  a: Float32Array | Int32Array | Uint8Array,
  b: Float32Array | Int32Array | Uint8Array,
): number {
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
  return err / Math.max(scale, 1e-30);
}

for (const engine of ['cpu', 'wasm'] as const) {
  describe(`deerRnn on tfjs ${engine}`, () => {
    it('forward and gradients equal the unrolled tf recurrence differentiated by tfjs', async () => {
      const backend = await createTfjsBackend({ backend: engine });
      const pr = problem(5);
      const loss = (f: () => tf.Tensor3D) => () => tf.sum(tf.mul(f(), pr.w)) as tf.Scalar;
      const deerLoss = loss(() => deerRnn(cell, pr.params, pr.x, pr.h0, { backend }));
      const refLoss = loss(() => gruUnrolled(pr.params, pr.x, pr.h0));
      const yD = deerRnn(cell, pr.params, pr.x, pr.h0, { backend });
      const yR = gruUnrolled(pr.params, pr.x, pr.h0);
      expect(maxRel(yD.dataSync(), yR.dataSync())).toBeLessThan(1e-5);
      tf.dispose([yD, yR]);
      const gD = tf.variableGrads(deerLoss);
      const gR = tf.variableGrads(refLoss);
      for (const name of [...cell.params.map((p) => p.name)]) {
        const k = pr.params[name]!.name;
        expect(gD.grads[k]!.shape).toEqual(gR.grads[k]!.shape);
        expect(maxRel(gD.grads[k]!.dataSync(), gR.grads[k]!.dataSync()), `d/d${name}`).toBeLessThan(1e-4);
      }
      const kh = pr.h0.name;
      expect(maxRel(gD.grads[kh]!.dataSync(), gR.grads[kh]!.dataSync()), 'd/dh0').toBeLessThan(1e-4);
      // ∂L/∂x through tf.grads (x is not a variable).
      const dxD = tf.grad((x: tf.Tensor) =>
        tf.sum(tf.mul(deerRnn(cell, pr.params, x as tf.Tensor3D, pr.h0, { backend }), pr.w)),
      )(pr.x);
      const dxR = tf.grad((x: tf.Tensor) =>
        tf.sum(tf.mul(gruUnrolled(pr.params, x as tf.Tensor3D, pr.h0), pr.w)),
      )(pr.x);
      expect(maxRel(dxD.dataSync(), dxR.dataSync()), 'd/dx').toBeLessThan(1e-4);
      tf.dispose([dxD, dxR, gD.value, gR.value, ...Object.values(gD.grads), ...Object.values(gR.grads)]);
      pr.dispose();
    });

    it('leaks no tf tensors over 100 solves and 100 training steps', async () => {
      const backend = await createTfjsBackend({ backend: engine });
      const pr = problem(9);
      const opt = tf.train.adam(1e-2);
      const step = () =>
        opt.minimize(
          () =>
            tf.mean(tf.square(tf.sub(deerRnn(cell, pr.params, pr.x, pr.h0, { backend }), pr.w))) as tf.Scalar,
          true,
          [...Object.values(pr.params)],
        );
      // One step first: the optimizer allocates its slots once.
      step()?.dispose();
      const before = tf.memory().numTensors;
      const live = backend.liveTensors();
      for (let i = 0; i < 100; i++) tf.dispose(deerRnn(cell, pr.params, pr.x, pr.h0, { backend }));
      let first = Number.NaN;
      let last = Number.NaN;
      for (let i = 0; i < 100; i++) {
        const l = step()!;
        last = l.dataSync()[0]!;
        if (i === 0) first = last;
        l.dispose();
      }
      expect(last).toBeLessThan(first);
      expect(tf.memory().numTensors).toBe(before);
      expect(backend.liveTensors()).toBe(live);
      opt.dispose();
      pr.dispose();
    }, 120_000);
  });
}

describe('deerRnn input checks', () => {
  it('answers bad shapes and dtypes with typed errors', async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(1);
    const bad = {
      rank2: tf.zeros([B, T]),
      wideX: tf.zeros([B, T, m + 1]),
      intX: tf.zeros([B, T, m], 'int32'),
      tallH0: tf.zeros([B + 1, n]),
      intH0: tf.zeros([B, n], 'int32'),
      wideW: tf.zeros([3 * n, m + 1]),
      intR: tf.zeros([3 * n, n], 'int32'),
    };
    // Every input exists before the count: a rejected call must leave no tensor behind.
    const before = tf.memory().numTensors;
    const run =
      (x: unknown, params: Record<string, tf.Tensor> = pr.params, h0: unknown = undefined) =>
      () =>
        deerRnn(cell, params, x as tf.Tensor3D, h0 as tf.Tensor2D, { backend });
    expect(run(bad.rank2)).toThrow(ShapeError);
    expect(run(bad.wideX)).toThrow(ShapeError);
    expect(run(bad.intX)).toThrow(DTypeError);
    expect(run(pr.x, pr.params, bad.tallH0)).toThrow(ShapeError);
    expect(run(pr.x, pr.params, bad.intH0)).toThrow(DTypeError);
    expect(run(pr.x, { ...pr.params, W: bad.wideW })).toThrow(ShapeError);
    expect(run(pr.x, { ...pr.params, R: bad.intR })).toThrow(DTypeError);
    expect(run(pr.x, { W: pr.params.W! })).toThrow(ShapeError);
    expect(tf.memory().numTensors, 'tensors left by rejected calls').toBe(before);
    expect(run([[1, 2, 3]])).toThrow(ShapeError);
    expect(tf.memory().numTensors, 'tensors left by a rejected array input').toBe(before);
    // Arguments that are not what they should be, and options the op would not honour.
    expect(() => deerRnn(cell, null as never, pr.x, undefined, { backend })).toThrow(InvalidArgumentError);
    expect(() => deerRnn(null as never, pr.params, pr.x, undefined, { backend })).toThrow(InvalidArgumentError);
    expect(() => deerRnn(cell, pr.params, pr.x, undefined, { backend, h0: [1, 2] } as never)).toThrow(UnsupportedOptionError);
    expect(() => deerRnn(cell, pr.params, pr.x, undefined, { backend, initialGuess: 'h0' } as never)).toThrow(UnsupportedOptionError);
    // Lengths as a tensor had been copied as no lengths: "expected shape [2], got 0 values".
    const lengthsTensor = tf.tensor1d([T, T - 3], 'int32');
    expect(() => deerRnn(cell, pr.params, pr.x, undefined, { backend, lengths: lengthsTensor as never })).toThrow(/lengths: expected an array of 2 sequence lengths \(numbers, not a tensor\)/);
    lengthsTensor.dispose();
    // Not a tfjs backend: a TypeError deep inside (or, for null, the default backend in silence).
    for (const other of [null, {}, createReferenceBackend({ dtype: 'float32' })])
      expect(() => deerRnn(cell, pr.params, pr.x, undefined, { backend: other } as never)).toThrow(InvalidArgumentError);
    expect(tf.memory().numTensors, 'tensors left by rejected arguments').toBe(before);
    tf.dispose(Object.values(bad));
    pr.dispose();
  });

  it('refuses NaN/Inf in x, h0 and params with a NonFiniteError naming the entry (as deer does), unless checkFinite: false', async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(2);
    const nanX = withNaN(pr.x, 1, 2, 0);
    const h0 = tf.tensor1d(Array.from({ length: n }, (_, i) => (i === 1 ? Number.POSITIVE_INFINITY : 0)));
    const R = tf.tidy(() => tf.div(pr.params.R!, tf.scalar(0)));
    const before = tf.memory().numTensors;
    expect(() => deerRnn(cell, pr.params, nanX, undefined, { backend })).toThrow(/x: expected finite values, got NaN at flat index 126/);
    expect(() => deerRnn(cell, pr.params, pr.x, h0, { backend })).toThrow(NonFiniteError);
    expect(() => deerRnn(cell, { ...pr.params, R }, pr.x, undefined, { backend })).toThrow(/params\.R: expected finite values/);
    expect(() => deerRnn(cell, pr.params, pr.x, undefined, { backend, checkFinite: 1 } as never)).toThrow(UnsupportedOptionError);
    expect(tf.memory().numTensors, 'tensors left by refused calls').toBe(before);
    // Unchecked: the NaN goes through (tf's own semantics), and the answer says so.
    const y = deerRnn(cell, pr.params, nanX, undefined, { backend, checkFinite: false });
    expect(Array.from(y.dataSync()).some(Number.isNaN)).toBe(true);
    tf.dispose([y, nanX, h0, R]);
    pr.dispose();
  });

  it('throwing inside tf.variableGrads or optimizer.minimize leaves no tensor behind', async () => {
    // Under a gradient tape tfjs keeps the inputs of every op for the backward pass; when the op
    // throws, that pass never runs. The op's own work must stay off the tape.
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(4);
    const nanX = withNaN(pr.x, 0, 3, 1);
    const vars = Object.values(pr.params);
    const throwing: [string, () => tf.Scalar, RegExp][] = [
      ['NaN in x', () => tf.sum(deerRnn(cell, pr.params, nanX, pr.h0, { backend })), /x: expected finite values/],
      ['ConvergenceError', () => tf.sum(deerRnn(cell, pr.params, pr.x, pr.h0, { backend, maxIter: 1, fallback: 'throw' })), /did not converge/],
      ['onStats throws', () => tf.sum(deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats: () => { throw new Error('boom'); } })), /boom/],
    ];
    const optimizer = tf.train.sgd(0.01);
    const before = tf.memory().numTensors;
    for (const [what, loss, message] of throwing) {
      expect(() => tf.variableGrads(loss, vars), what).toThrow(message);
      expect(() => optimizer.minimize(loss, false, vars), what).toThrow(message);
      expect(tf.memory().numTensors, `tensors left after ${what}`).toBe(before);
    }
    optimizer.dispose();
    tf.dispose(nanX);
    pr.dispose();
  });

  it('a disposed x, h0 or parameter is a TensorStateError, with or without checkFinite', async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(2);
    const dead = <T extends tf.Tensor>(t: T): T => {
      const c = t.clone();
      c.dispose();
      return c as T;
    };
    const x = dead(pr.x);
    const h0 = dead(pr.h0 as tf.Tensor2D);
    const W = dead(pr.params.W!);
    const before = tf.memory().numTensors;
    for (const checkFinite of [true, false]) {
      expect(() => deerRnn(cell, pr.params, x, undefined, { backend, checkFinite })).toThrow(/x was disposed/);
      expect(() => deerRnn(cell, pr.params, pr.x, h0, { backend, checkFinite })).toThrow(TensorStateError);
      expect(() => deerRnn(cell, { ...pr.params, W }, pr.x, undefined, { backend, checkFinite })).toThrow(/params\.W was disposed/);
    }
    expect(tf.memory().numTensors, 'tensors left by refused calls').toBe(before);
    pr.dispose();
  });

  it("onStats reports each forward solve: with fallback 'none' an unconverged y says so", async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(3);
    const before = tf.memory().numTensors;
    const seen: { converged: boolean; fellBack: boolean; iterations: number }[] = [];
    const onStats = (s: { converged: boolean; fellBack: boolean; iterations: number }) => seen.push(s);
    tf.dispose(deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats }));
    tf.dispose(deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats, maxIter: 2, fallback: 'none' }));
    tf.dispose(deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats, maxIter: 2 }));
    expect(seen.map((s) => [s.converged, s.fellBack])).toEqual([
      [true, false],
      [false, false],
      [false, true],
    ]);
    expect(seen[1]!.iterations).toBe(2);
    // Refused up front, and a callback that throws leaves nothing behind.
    expect(() => deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats: 1 } as never)).toThrow(InvalidArgumentError);
    const boom = () => {
      throw new Error('boom');
    };
    expect(() => deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats: boom })).toThrow('boom');
    expect(tf.memory().numTensors, 'tensors left').toBe(before);
    pr.dispose();
  });

  it('onStats must be synchronous: an async one is refused up front, a returned promise makes the op throw, and no rejection goes unhandled', async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(5);
    const before = tf.memory().numTensors;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let calls = 0;
      // Refused before any solve: it is never called.
      const asyncFn = async () => {
        calls++;
        throw new Error('late');
      };
      const asyncArrow = async (_s: unknown) => {
        calls++;
      };
      for (const onStats of [asyncFn, asyncArrow]) {
        let err: unknown;
        try {
          deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(UnsupportedOptionError);
        expect((err as Error).message).toMatch(/option onStats: expected a synchronous function \(deerRnn cannot wait for a promise\), got "an async function"/);
      }
      expect(calls).toBe(0);
      // A plain function that returns a promise anyway: called, then the op throws; the promise's
      // rejection (or a thenable's, or a `then` that throws) is handled.
      const rejecting = () => {
        calls++;
        return Promise.reject(new Error('late'));
      };
      const resolving = () => {
        calls++;
        return Promise.resolve();
      };
      const thenable = () => {
        calls++;
        // biome-ignore lint/suspicious/noThenProperty: a thenable that is not a Promise is the case under test
        return { then: (_ok: unknown, fail: (e: Error) => void) => fail(new Error('late thenable')) };
      };
      const throwingThen = () => {
        calls++;
        return {
          // biome-ignore lint/suspicious/noThenProperty: a thenable whose then throws is the case under test
          then() {
            throw new Error('then throws');
          },
        };
      };
      for (const onStats of [rejecting, resolving, thenable, throwingThen]) {
        expect(() => deerRnn(cell, pr.params, pr.x, pr.h0, { backend, onStats: onStats as never }), onStats.name).toThrow(UnsupportedOptionError);
      }
      expect(calls).toBe(4);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
      expect(tf.memory().numTensors, 'tensors left').toBe(before);
      // A synchronous callback is called as before, and sees the windows the op solved in.
      const windows: number[] = [];
      for (const window of [undefined, 7]) {
        tf.dispose(deerRnn(cell, pr.params, pr.x, pr.h0, { backend, ...(window ? { window } : {}), onStats: (st) => windows.push(st.windows) }));
      }
      expect(windows).toEqual([1, Math.ceil(T / 7)]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      pr.dispose();
    }
  });

  it('padded rows (lengths) and windows: y and every gradient as the unrolled recurrence of each row to its length', async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(4);
    const lengths = [T - 13, T];
    const mask = tf.tensor3d(
      Float32Array.from({ length: B * T * n }, (_, i) => (Math.floor(i / n) % T < lengths[Math.floor(i / (T * n))]! ? 1 : 0)),
      [B, T, n],
    );
    const loss = (f: (x: tf.Tensor3D) => tf.Tensor3D) => (x: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor3D), pr.w)) as tf.Scalar;
    const ref = loss((x) => tf.mul(gruUnrolled(pr.params, x, pr.h0), mask) as tf.Tensor3D);
    for (const window of [undefined, 7]) {
      const opts = { backend, lengths, ...(window ? { window } : {}) };
      const got = loss((x) => deerRnn(cell, pr.params, x, pr.h0, opts));
      const y = deerRnn(cell, pr.params, pr.x, pr.h0, opts);
      const yr = tf.mul(gruUnrolled(pr.params, pr.x, pr.h0), mask);
      expect(maxRel(y.dataSync(), yr.dataSync()), `y, window ${window}`).toBeLessThan(1e-5);
      const pad = y.dataSync().subarray(lengths[0]! * n, T * n);
      expect(Math.max(...Array.from(pad, Math.abs)), 'padding').toBe(0);
      const gx = tf.grad(got)(pr.x);
      const gxr = tf.grad(ref)(pr.x);
      expect(maxRel(gx.dataSync(), gxr.dataSync()), `d/dx, window ${window}`).toBeLessThan(1e-4);
      const gxPad = gx.dataSync().subarray(lengths[0]! * m, T * m);
      expect(Math.max(...Array.from(gxPad, Math.abs)), 'd/dx past the end of the row').toBe(0);
      const gp = tf.variableGrads(() => got(pr.x));
      const gpr = tf.variableGrads(() => ref(pr.x));
      for (const name of [...cell.params.map((p) => p.name)]) {
        const k = pr.params[name]!.name;
        expect(maxRel(gp.grads[k]!.dataSync(), gpr.grads[k]!.dataSync()), `d/d${name}, window ${window}`).toBeLessThan(1e-4);
      }
      const kh = pr.h0.name;
      expect(maxRel(gp.grads[kh]!.dataSync(), gpr.grads[kh]!.dataSync()), `d/dh0, window ${window}`).toBeLessThan(1e-4);
      tf.dispose([y, yr, gx, gxr, gp.value, gpr.value, ...Object.values(gp.grads), ...Object.values(gpr.grads)]);
    }
    tf.dispose(mask);
    pr.dispose();
  });

  it("the gradient uses the lengths and window the forward solve saw, whatever the caller's options object holds later", async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(5);
    const grad = (mutate: boolean) =>
      tf.grad((x: tf.Tensor) => {
        const opts = { backend, lengths: [T - 13, T], window: 7 };
        const y = deerRnn(cell, pr.params, x as tf.Tensor3D, pr.h0, opts);
        if (mutate) {
          opts.lengths[0] = 1;
          opts.window = 2;
        }
        return tf.sum(tf.mul(y, pr.w));
      })(pr.x);
    const [kept, edited] = [grad(false), grad(true)];
    expect(Array.from(edited.dataSync())).toEqual(Array.from(kept.dataSync()));
    tf.dispose([kept, edited]);
    pr.dispose();
  });

  it("method: 'auto', 'elk' and 'shoot' give DEER's y, and gradients through them", async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(6);
    const y = (method: 'deer' | 'auto' | 'elk' | 'shoot') => deerRnn(cell, pr.params, pr.x, pr.h0, { backend, method });
    const gx = (method: 'deer' | 'auto' | 'elk' | 'shoot') =>
      tf.grad((x: tf.Tensor) => tf.sum(tf.mul(deerRnn(cell, pr.params, x as tf.Tensor3D, pr.h0, { backend, method }), pr.w)))(pr.x);
    const [yRef, gRef] = [y('deer'), gx('deer')];
    for (const method of ['auto', 'elk', 'shoot'] as const) {
      const [yM, gM] = [y(method), gx(method)];
      expect(maxRel(yM.dataSync(), yRef.dataSync()), `y, ${method}`).toBeLessThan(1e-5);
      // The gradient is implicit differentiation at the solution, whichever method found it.
      expect(maxRel(gM.dataSync(), gRef.dataSync()), `d/dx, ${method}`).toBeLessThan(1e-4);
      tf.dispose([yM, gM]);
    }
    tf.dispose([yRef, gRef]);
    pr.dispose();
  });

  it('accepts h0 as [n] and flat params, and quasi-DEER gives the same gradient', async () => {
    const backend = await createTfjsBackend({ backend: 'cpu' });
    const pr = problem(3);
    const h1 = tf.tensor1d(pr.h0.dataSync().slice(0, n));
    const hB = tf.tile(tf.reshape(h1, [1, n]), [B, 1]) as tf.Tensor2D;
    const flat = Object.fromEntries(Object.entries(pr.params).map(([k, v]) => [k, tf.reshape(v, [v.size])]));
    const f = (h: tf.Tensor, ps: Record<string, tf.Tensor>, jacobian: 'auto' | 'diagonal') =>
      tf.grad((hh: tf.Tensor) =>
        tf.sum(tf.mul(deerRnn(cell, ps, pr.x, hh as tf.Tensor2D, { backend, jacobian }), pr.w)),
      )(h);
    const g1 = f(h1, flat, 'diagonal');
    const gB = f(hB, pr.params, 'auto');
    expect(g1.shape).toEqual([n]);
    expect(maxRel(g1.dataSync(), tf.sum(gB, 0).dataSync())).toBeLessThan(1e-4);
    tf.dispose([h1, hB, g1, gB, ...Object.values(flat)]);
    pr.dispose();
  });
});

describe('deerRnn without a backend', () => {
  // A TfjsBackend fixes how data moves from the engine active when it is made: the op's default
  // is one per engine, not the first one made, kept after tf.setBackend.
  it('runs on a backend made for the active tfjs engine', async () => {
    const start = tf.getBackend();
    try {
      await tf.setBackend('cpu');
      const onCpu = defaultBackend();
      expect(onCpu.capabilities.device).toBe('tfjs cpu');
      expect(defaultBackend()).toBe(onCpu);
      await tf.setBackend('wasm');
      expect(defaultBackend().capabilities.device).toBe('tfjs wasm');
      const pr = problem(4);
      const y = deerRnn(cell, pr.params, pr.x, pr.h0);
      const yRef = gruUnrolled(pr.params, pr.x, pr.h0);
      expect(maxRel(y.dataSync(), yRef.dataSync())).toBeLessThan(1e-5);
      tf.dispose([y, yRef]);
      pr.dispose();
      await tf.setBackend('cpu');
      expect(defaultBackend()).toBe(onCpu);
    } finally {
      await tf.setBackend(start);
    }
  });
});
