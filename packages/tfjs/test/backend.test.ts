import '@tensorflow/tfjs-backend-cpu';
import {
  type Backend,
  BackendUnavailableError,
  deerSync,
  cells,
  deer,
  deerWithGrad,
  DTypeError,
  InvalidArgumentError,
  KNOWN_BACKENDS,
  loadBackend,
  OutOfMemoryError,
  Rng,
  sequential,
  ShapeError,
  UnsupportedOptionError,
  unregisterBackend,
} from '@deerjs/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREATE_OPTION_NAMES } from '../src/backend.js';
import { createTfjsBackend, register, type TfjsBackend } from '../src/index.js';

let be: TfjsBackend;
beforeAll(async () => {
  be = await createTfjsBackend({ backend: 'cpu' });
});

const cell = cells.gru({ inputSize: 2, hiddenSize: 4 });
const params = cell.init({ seed: 2 });
const B = 2;
const T = 30;
const xs = new Rng(4).normalArray(B * T * 2);

describe('tfjs backend', () => {
  it('refuses unknown, misplaced and out-of-range options, and names an engine that would not start', async () => {
    await expect(createTfjsBackend({ dtype: 'float64' } as never)).rejects.toThrow(DTypeError);
    for (const bad of [{ dtyp: 'float32' }, { scan: 'fast' }, { maxBufferBytes: -1 }, { backend: 7 }, { hostKernels: {} }]) {
      await expect(createTfjsBackend(bad as never), JSON.stringify(bad)).rejects.toThrow(UnsupportedOptionError);
    }
    await expect(createTfjsBackend({ backend: 'no-such-engine' })).rejects.toThrow(BackendUnavailableError);
    expect(tf.getBackend()).toBe('cpu');
  });

  it('says to import an engine where tfjs has none, and refuses a `tf` that is not tfjs', async () => {
    // tfjs-core alone: its ready() rejects "No backend found in registry." (a plain Error).
    const bare = {
      ...tf,
      ready: async () => {
        throw new Error('No backend found in registry.');
      },
    };
    const err = await createTfjsBackend({ tf: bare as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(/import '@tensorflow\/tfjs-backend-cpu'/);
    for (const notTf of [{}, 5, 'tf', { ready: () => {} }]) {
      await expect(createTfjsBackend({ tf: notTf as never }), JSON.stringify(notTf)).rejects.toThrow(InvalidArgumentError);
    }
  });

  it('is float32 only: a float64 request gets a DTypeError', () => {
    expect(be.capabilities.dtypes).toEqual(['float32']);
    expect(() => be.tensor([1, 2], [2], 'float64')).toThrow(DTypeError);
    expect(() => be.zeros([2], 'float64')).toThrow(DTypeError);
  });

  it('runs sequential passes on its host kernels, prices like them, and says it is emulated on the cpu engine', async () => {
    const { createCpuBackend } = await import('@deerjs/cpu');
    const host = createCpuBackend({ dtype: 'float32' });
    const on = await createTfjsBackend({ backend: 'cpu', hostKernels: host });
    const ops = await createTfjsBackend({ backend: 'cpu', hostKernels: false });
    const cell = cells.gru({ inputSize: 3, hiddenSize: 5 });
    const params = cell.init({ seed: 9 });
    const xs = new Rng(4).normalArray(3 * 50 * 3);
    try {
      // The kernels' own pass: the same float32 values as the cpu backend's.
      const run = async (b: Backend) => {
        const x = b.tensor(xs, [3, 50, 3], 'float32');
        const { y } = await sequential(b, cell, params, x);
        const out = Array.from(await b.read(y));
        b.dispose(y);
        b.dispose(x);
        return out;
      };
      const onKernels = await run(on);
      expect(onKernels).toEqual(await run(host));
      // core's host interpreter (no kernels) rounds its own way, within float32's error.
      const viaOps = await run(ops);
      expect(Math.max(...viaOps.map((v, i) => Math.abs(v - onKernels[i]!)))).toBeLessThan(1e-5);
      // 'auto' gets the host backend's figures; tfjs ops alone have none.
      expect(on.capabilities.parallelism).toBe(host.capabilities.parallelism);
      expect(on.capabilities.sequentialRowGain).toEqual(host.capabilities.sequentialRowGain);
      expect(ops.capabilities.parallelism).toBeUndefined();
      expect(on.capabilities.emulated).toBe(true);
      expect(ops.capabilities.emulated).toBe(true);
      // Finite checks on the host data: NaN and ±Inf found where they are.
      for (const [at, value] of [[0, Number.NaN], [449, Number.POSITIVE_INFINITY], [200, Number.NEGATIVE_INFINITY]] as const) {
        const data = Float64Array.from(xs);
        data[at] = value;
        const t = on.tensor(data, [3, 50, 3], 'float32');
        expect(await on.findNonFinite(t)).toEqual({ index: at, value });
        expect(await on.maxAbs(t)).toBe(Number.isNaN(value) ? Number.NaN : Number.POSITIVE_INFINITY);
        on.dispose(t);
      }
    } finally {
      await on.destroy();
      await ops.destroy();
      await host.destroy();
    }
  });

  it('registers as tfjs with core and loads by name', async () => {
    register();
    try {
      const loaded = await loadBackend('tfjs', { options: { backend: 'cpu' } });
      expect(loaded.name).toBe('tfjs');
      // @deerjs/cpu is installed here (a dev dependency): step programs run on its kernels.
      expect(loaded.capabilities.device).toBe('tfjs cpu, step programs on cpu');
      loaded.destroy?.();
    } finally {
      unregisterBackend('tfjs');
    }
    // Core's list of this backend's options (loadBackend() with no name refuses names no backend knows).
    expect([...KNOWN_BACKENDS.tfjs!.options].sort()).toEqual([...CREATE_OPTION_NAMES].sort());
  });

  it('runs step programs on tfjs ops with hostKernels: false, and rejects a host backend it cannot use', async () => {
    const ops = await createTfjsBackend({ backend: 'cpu', hostKernels: false });
    expect(ops.capabilities.device).toBe('tfjs cpu');
    const noSyncReads = { name: 'fake', capabilities: { dtypes: ['float32'] } } as unknown as Backend;
    await expect(createTfjsBackend({ backend: 'cpu', hostKernels: noSyncReads })).rejects.toThrow(/hostKernels: .* got the 'fake' backend/);
    // Not a backend at all: the message says what it got.
    await expect(createTfjsBackend({ backend: 'cpu', hostKernels: true as never })).rejects.toThrow(/hostKernels: .* got true$/);
  });

  it('keeps tf.memory() flat over 100 solves and 100 gradient steps through core', async () => {
    const x = be.tensor(xs, [B, T, 2]);
    const dy = be.tensor(new Rng(5).normalArray(B * T * 4), [B, T, 4]);
    // Warm up once (lazy allocations, if any, happen here).
    const first = await deer(be, cell, params, x);
    be.dispose(first.y);
    const before = tf.memory().numTensors;
    const live = be.liveTensors();
    for (let i = 0; i < 100; i++) {
      const { y } = await deer(be, cell, params, x);
      be.dispose(y);
    }
    for (let i = 0; i < 100; i++) {
      const r = await deerWithGrad(be, cell, params, x);
      const g = await r.vjp(dy);
      for (const t of [...Object.values(g.params), g.x, g.h0]) be.dispose(t);
      r.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(be.liveTensors()).toBe(live);
    be.dispose(x);
    be.dispose(dy);
  }, 120_000);

  it('the synchronous Newton driver agrees with core deer and the sequential run', async () => {
    const x = be.tensor(xs, [B, T, 2]);
    const y0 = be.zeros([B, 4]);
    const ps = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length])]));
    const a = deerSync(be, cell, ps, x, y0);
    const { y: b } = await deer(be, cell, params, x);
    const { y: c } = await sequential(be, cell, params, x);
    const [ra, rb, rc] = [be.readSync(a.y), await be.read(b), await be.read(c)];
    for (let i = 0; i < ra.length; i++) {
      expect(Math.abs(ra[i]! - rb[i]!)).toBeLessThan(1e-5);
      expect(Math.abs(ra[i]! - rc[i]!)).toBeLessThan(1e-5);
    }
    expect(a.stats.converged).toBe(true);
    // h0 is deerSync's argument and it reads nothing to check values: as options both would be ignored.
    expect(() => deerSync(be, cell, ps, x, y0, { h0: [1, 2, 3, 4] } as never)).toThrow(UnsupportedOptionError);
    expect(() => deerSync(be, cell, ps, x, y0, { checkFinite: true } as never)).toThrow(UnsupportedOptionError);
    // Parameters as arrays (which deer uploads): deerSync reads nothing, so it says it takes tensors.
    expect(() => deerSync(be, cell, params as never, x, y0)).toThrow(/params\.\w+: expected a tensor \(deerSync takes no arrays\)/);
    const { R: _r, ...missing } = ps;
    expect(() => deerSync(be, cell, missing, x, y0)).toThrow(/params\.R: .*missing/);
    for (const t of [x, y0, a.y, b, c, ...Object.values(ps)]) be.dispose(t);
  });
});

afterAll(() => be?.destroy());

describe('tfjs backend allocations', () => {
  it('an allocation the engine refuses is an OutOfMemoryError (it was a RangeError); bad dims a ShapeError', () => {
    const live = be.liveTensors();
    expect(() => be.zeros([2 ** 26, 2 ** 26, 2])).toThrow(OutOfMemoryError);
    expect(() => be.zeros([2, -1])).toThrow(ShapeError);
    expect(be.liveTensors()).toBe(live);
  });
});
