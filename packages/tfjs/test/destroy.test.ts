import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { type Backend, cells, deer, deerSync, deerWithGrad, Rng, sequential, type Tensor, TensorStateError } from '@deerjs/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '@deerjs/cpu';
import { createTfjsBackend, deerRnn, TfjsBackend } from '../src/index.js';

/**
 * After destroy() the tfjs backend refuses every use with a TensorStateError that names tfjs (not
 * the host kernels' cpu backend createTfjsBackend made, destroyed with it), as cpu and webgpu
 * refuse theirs; dispose and liveTensors stay usable for cleanup, and destroy() again does nothing.
 * A destroy() that lands mid-solve stops the solve the same way at its next use of the backend.
 */
const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
const params = cell.init({ seed: 1 });
const B = 4;
const T = 100;
const m = cell.inputSize;
const n = cell.stateSize;
const xs = new Rng(2).normalArray(B * T * m);
const DESTROYED = /^tfjs: backend used after destroy\(\)/;

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Each configuration, and the Newton update a solve on it goes through (x has B·T ≥ 256 elements: fused on cpu). */
const CONFIGS = [
  { name: 'step programs on @deerjs/cpu', hostKernels: undefined, update: 'deerStep' },
  { name: 'tfjs ops', hostKernels: false as const, update: 'newtonUpdate' },
];

/** Methods allowed after destroy(), and private ones (not part of the contract). */
const ALLOWED = new Set(['constructor', 'dispose', 'liveTensors', 'destroy']);
const PRIVATE = new Set([
  'mine',
  'own',
  'checkAlive',
  'checkDType',
  'program',
  'flatParams',
  'runStepOnHost',
  'toHost',
  'fromHost',
  'newtonStep',
  'finishUpdate',
  'newtonUpdateOnHost',
]);

async function refusal(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (err) {
    return err;
  }
  return undefined;
}

function expectRefused(err: unknown, what: string) {
  expect(err, what).toBeInstanceOf(TensorStateError);
  expect((err as Error).message, what).toMatch(DESTROYED);
}

for (const { name, hostKernels, update } of CONFIGS) {
  describe(`tfjs backend after destroy() (${name})`, () => {
    it('refuses every method but dispose, liveTensors and destroy, naming tfjs', async () => {
      const be = await createTfjsBackend({ backend: 'cpu', hostKernels });
      const x = be.tensor(xs, [B, T, m]);
      const y = be.tensor(new Rng(3).normalArray(B * T * n), [B, T, n]);
      const y0 = be.zeros([B, n]);
      const A = be.tensor(new Float32Array(B * T * n).fill(0.5), [B, T, n, 1, 1]);
      const J = be.tensor(new Float32Array(B * T * 4).fill(0.5), [B, T, 1, 2, 2]);
      const ps = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length])]));
      const program = cell.residualProgram(1);
      const opts = { atol: 1e-5, rtol: 1e-5, clip: 1e6 };
      const live = be.liveTensors();
      be.destroy();
      be.destroy();
      const outside = tf.zeros([2]);
      const calls: Record<string, () => unknown> = {
        tensor: () => be.tensor([1, 2], [2]),
        zeros: () => be.zeros([2]),
        read: () => be.read(x),
        readSync: () => be.readSync(x),
        wrap: () => be.wrap(outside),
        unwrap: () => be.unwrap(x),
        release: () => be.release(y),
        runStep: () => be.runStep(program, { state: y, input: x, params: ps }),
        deerStep: () => be.deerStep(program, { input: x, y0, params: ps }, y, opts),
        runSequential: () => be.runSequential(program, { input: x, y0, params: ps }),
        scan: () => be.scan({ A, c: y, y0, blockSize: 1, reverse: false }),
        affineOffset: () => be.affineOffset(y, A, y, 1),
        shiftTime: () => be.shiftTime(y, y0, 1),
        broadcastTime: () => be.broadcastTime(y0, T),
        sliceTime: () => be.sliceTime(y, 0, 2),
        concatTime: () => be.concatTime([]),
        reshape: () => be.reshape(y, [B * T, n]),
        timeStep: () => be.timeStep(y, 0),
        newtonUpdate: () => be.newtonUpdate(y, y, opts),
        newtonUpdateSync: () => be.newtonUpdateSync(y, y, opts),
        findNonFinite: () => be.findNonFinite(y),
        add: () => be.add(y, y),
        sub: () => be.sub(y, y),
        dampedScan: () => be.dampedScan({ A, c: y, lambda: new Float64Array(B) }),
        maskTime: () => be.maskTime(y, new Array(B).fill(T)),
        gatherRows: () => be.gatherRows(y, [0]),
        scatterRows: () => be.scatterRows(y, [0], be.timeStep(y, 0)),
        sumBatchTime: () => be.sumBatchTime(y),
        outerSum: () => be.outerSum(y, x, 1),
        blockMatmul: () => be.blockMatmul(J, J, 2),
        blockMatvec: () => be.blockMatvec(J, y, 2),
        scaleTime: () => be.scaleTime(y, new Float64Array(T), 1),
        capTransitions: () => be.capTransitions(A, 1, new Float64Array(B).fill(1)),
        addIdentity: () => be.addIdentity(J, 2, 1),
        maxAbs: () => be.maxAbs(y),
      };
      // Every public method is either listed or allowed.
      const methods = Object.getOwnPropertyNames(TfjsBackend.prototype).filter((k) => !PRIVATE.has(k) && !ALLOWED.has(k));
      expect(methods.sort()).toEqual(Object.keys(calls).sort());
      for (const [what, f] of Object.entries(calls)) expectRefused(await refusal(f), what);
      // An owned tf.Tensor handed to wrap() after destroy() is disposed, not leaked.
      const handed = tf.zeros([2]);
      expectRefused(await refusal(() => be.wrap(handed, true)), 'wrap (owned)');
      expect(handed.isDisposed).toBe(true);
      expect(outside.isDisposed).toBe(false);
      outside.dispose();

      // Core's entry points: the same error, not one about the host kernels' backend.
      expectRefused(await refusal(() => deer(be, cell, ps, x)), 'deer');
      expectRefused(await refusal(() => deer(be, cell, params, x)), 'deer (host params)');
      expectRefused(await refusal(() => deer(be, cell, ps, x, { jacobian: 'dense' })), 'deer dense');
      expectRefused(await refusal(() => deerSync(be, cell, ps, x, y0)), 'deerSync');
      expectRefused(await refusal(() => sequential(be, cell, ps, x)), 'sequential');
      expectRefused(await refusal(() => deerWithGrad(be, cell, ps, x)), 'deerWithGrad');
      const tx = tf.tensor3d(Float32Array.from(xs), [B, T, m]);
      const tp = Object.fromEntries(cell.params.map((p) => [p.name, tf.tensor(Float32Array.from(params[p.name]!), p.shape as number[])]));
      expectRefused(await refusal(() => deerRnn(cell, tp, tx, undefined, { backend: be })), 'deerRnn');
      tf.dispose([tx, ...Object.values(tp)]);

      // dispose stays safe (and counts), liveTensors answers, destroy again is a no-op.
      expect(be.liveTensors()).toBe(live);
      for (const t of [x, y, y0, A, J, ...Object.values(ps)]) be.dispose(t);
      be.dispose(x);
      expect(be.liveTensors()).toBe(0);
      expect(() => be.destroy()).not.toThrow();
    });

    it('stops a solve that destroy() lands in the middle of, naming tfjs', async () => {
      const be = await createTfjsBackend({ backend: 'cpu', hostKernels });
      const x = be.tensor(xs, [B, T, m]);
      const ps = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length])]));
      const ref = await deer(be, cell, ps, x);
      be.dispose(ref.y);
      const before = tf.memory().numTensors;
      // The backend as core sees it: destroy() runs while the second Newton update (the host
      // kernels' fused step, or the tfjs update's read) is in flight.
      let updates = 0;
      const during = new Proxy(be, {
        get(target, key) {
          const v = Reflect.get(target, key, target) as unknown;
          if (typeof v !== 'function') return v;
          if (key !== update) return v.bind(target);
          return (...args: unknown[]) => {
            const out = (v as (...a: unknown[]) => unknown).apply(target, args);
            if (out !== null && ++updates === 2) target.destroy();
            return out;
          };
        },
      }) as Backend;
      const err = await refusal(() => deer(during, cell, ps, x));
      expect(updates).toBe(2);
      expectRefused(err, 'deer');
      expect(be.liveTensors()).toBe(1 + Object.keys(ps).length);
      for (const t of [x, ...Object.values(ps)] as Tensor[]) be.dispose(t);
      expect(be.liveTensors()).toBe(0);
      expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
    });
  });
}

describe('host kernels passed in stay the caller’s', () => {
  it('destroying a tfjs backend leaves a hostKernels backend it was given (shared by another) alive', async () => {
    const kernels = createCpuBackend({ dtype: 'float32' });
    const first = await createTfjsBackend({ backend: 'cpu', hostKernels: kernels });
    const second = await createTfjsBackend({ backend: 'cpu', hostKernels: kernels });
    first.destroy();
    const x = second.tensor(xs, [B, T, m]);
    const ps = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, second.tensor(v, [v.length])]));
    const r = await deer(second, cell, ps, x);
    expect(r.stats.converged).toBe(true);
    for (const t of [x, r.y, ...Object.values(ps)]) second.dispose(t);
    second.destroy();
    // Still the caller's to use, and to destroy.
    const k = kernels.tensor([1, 2], [1, 2, 1]);
    expect(Array.from(await kernels.read(k))).toEqual([1, 2]);
    kernels.dispose(k);
    await kernels.destroy();
  });
});
