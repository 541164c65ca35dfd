import {
  type Backend,
  type Cell,
  cells,
  deer,
  deerWithGrad,
  defineCell,
  lang,
  sequential,
} from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();
const MiB = 2 ** 20;

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
  return err;
};

const wave = (length: number, f: number) =>
  Array.from({ length }, (_, i) => Math.sin(f * i) + 0.3 * Math.cos(1.3 * i));

/** An elementwise cell (exact Jacobian diagonal) with wide input weights: n, m > 64. */
const wideDiagonal = (n: number, m: number): Cell => {
  const { add, matvec, mul, tanh } = lang;
  return defineCell(
    {
      name: 'wide-diagonal',
      state: n,
      input: m,
      params: { W: [n, m], a: [n], b: [n] },
      init: { W: { uniform: 0.1 }, a: { uniform: 0.5 }, b: { uniform: 0.2 } },
    },
    (y, x, p) => tanh(add(add(matvec(p.W!, x), mul(p.a!, y)), p.b!)),
  );
};

// A device whose bindings hold 1 MiB: core's windows fit the Jacobians, while runStep's packed
// outputs and outerSum's partial sums are several times larger and must go through in slabs.
describe.skipIf(skip !== null)('webgpu slabs under a small binding limit', () => {
  let backend: WebGpuBackend;
  let cpu: Backend;
  beforeAll(async () => {
    backend = await createWebGpuBackend({ simulatedBindingBytes: MiB });
    cpu = createCpuBackend({ dtype: 'float64' });
  });
  afterAll(() => backend?.destroy());

  it('refuses a buffer past the simulated limit', () => {
    expect(backend.capabilities.maxBufferBytes).toBe(MiB);
    expect(() => backend.zeros([MiB / 4 + 1])).toThrow(/OutOfMemory|bytes/);
  });

  it('solves a GRU n = 32 with a diagonal Jacobian and matches the float64 CPU oracle', async () => {
    // One window (its y is 1 000 000 bytes); runStep's scratch is 224 floats per element, 7 MB.
    const [B, T, m, n] = [4, 2000, 4, 32];
    const cell = cells.gru({ inputSize: m, hiddenSize: n });
    const params = cell.init({ seed: 3 });
    const xs = wave(B * T * m, 0.37);
    const xc = cpu.tensor(xs, [B, T, m]);
    const ref = await sequential(cpu, cell, params, xc);
    const want = await cpu.read(ref.y);
    cpu.dispose(ref.y);
    cpu.dispose(xc);

    const x = backend.tensor(xs, [B, T, m]);
    const { y, stats } = await deer(backend, cell, params, x, { jacobian: 'diagonal', maxIter: 200 });
    const got = await backend.read(y);
    backend.dispose(y);
    backend.dispose(x);
    const err = maxAbsDiff(got, want);
    console.log(
      `[webgpu slabs] GRU diagonal: ${stats.iterations} iterations, max abs err ${err.toExponential(2)}`,
    );
    expect(stats.windows).toBe(1);
    expect(stats.converged).toBe(true);
    expect(stats.fellBack).toBe(false);
    expect(err).toBeLessThan(1e-4);
    expect(backend.liveTensors()).toBe(0);
  }, 60_000);

  it('takes gradients whose VJP outputs and outer sums exceed the limit', async () => {
    // x and y fit (768 KiB each); the VJP's packed terms and outerSum's partials (1.1 MiB) do not.
    const [B, T, m, n] = [2, 1024, 96, 96];
    const cell = wideDiagonal(n, m);
    expect(cell.exactBlockSize).toBe(1);
    const params = cell.init({ seed: 4 });
    const xs = wave(B * T * m, 0.11);
    const dys = wave(B * T * n, 0.53);
    const grads = async (be: Backend) => {
      const x = be.tensor(xs, [B, T, m]);
      const dy = be.tensor(dys, [B, T, n]);
      const r = await deerWithGrad(be, cell, params, x, {});
      const g = await r.vjp(dy);
      const out = {
        y: await be.read(r.y),
        W: await be.read(g.params.W!),
        a: await be.read(g.params.a!),
        x: await be.read(g.x),
      };
      for (const t of [...Object.values(g.params), g.x, g.h0, x, dy]) be.dispose(t);
      r.dispose();
      return out;
    };
    const want = await grads(cpu);
    const got = await grads(backend);
    for (const k of ['y', 'W', 'a', 'x'] as const) {
      const scale = Math.max(1, maxAbsDiff(want[k], new Float64Array(want[k].length)));
      const err = maxAbsDiff(got[k], want[k]) / scale;
      console.log(`[webgpu slabs] gradient ${k}: relative max err ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-4);
    }
    expect(backend.liveTensors()).toBe(0);
  }, 60_000);

  it('windows ELK so that its damped scan workspace fits where DEER needs one window', async () => {
    // GRU n = 8 (dense blocks), B = 2, T = 1000: its Jacobians (512 KB) fit the binding in one
    // window, but the block cyclic reduction holds buffers 2.1× that size; core's windows must
    // leave room for them (before, ELK threw OutOfMemoryError here).
    const [B, T, n] = [2, 1000, 8];
    const cell = cells.gru({ inputSize: n, hiddenSize: n });
    const params = cell.init({ seed: 6 });
    const xs = wave(B * T * n, 0.07);
    const solve = async (be: Backend, method: 'deer' | 'elk' | 'sequential') => {
      const x = be.tensor(xs, [B, T, n]);
      try {
        const r = method === 'sequential' ? { ...(await sequential(be, cell, params, x)), stats: undefined } : await deer(be, cell, params, x, { method });
        const y = await be.read(r.y);
        be.dispose(r.y);
        return { y, stats: r.stats };
      } finally {
        be.dispose(x);
      }
    };
    const want = await solve(cpu, 'sequential');
    expect((await solve(backend, 'deer')).stats!.windows).toBe(1);
    const elk = await solve(backend, 'elk');
    expect(elk.stats!.structure).toBe('dense');
    expect(elk.stats!.windows).toBeGreaterThan(1);
    expect(elk.stats!.converged).toBe(true);
    expect(maxAbsDiff(elk.y, want.y)).toBeLessThan(1e-4);
    expect(backend.liveTensors()).toBe(0);
  }, 60_000);
});
