import { cells, deer, sequential } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

describe.skipIf(skip !== null)('webgpu windowing', () => {
  const B = 2;
  const T = 3000;
  const n = 6;
  const m = 3;
  const perStep = B * n * n * 4;
  let backend: WebGpuBackend;
  beforeAll(async () => {
    // Room for y and the Jacobians of 600 steps: core has to solve 5 windows one after another.
    backend = await createWebGpuBackend({ maxBufferBytes: perStep * 600 });
  });
  afterAll(() => backend?.destroy());

  it('reports the lowered limit', () => {
    expect(backend.capabilities.maxBufferBytes).toBe(perStep * 600);
  });

  it('solves a GRU in windows and matches the float64 CPU oracle within 1e-4', async () => {
    const cell = cells.gru({ inputSize: m, hiddenSize: n });
    const params = cell.init({ seed: 7 });
    const xs = Array.from({ length: B * T * m }, (_, i) => Math.sin(0.37 * i) + 0.3 * Math.cos(1.3 * i));
    const h0 = Array.from({ length: B * n }, (_, i) => 0.1 * (i % 5) - 0.2);
    const cpu = createCpuBackend({ dtype: 'float64' });
    const xc = cpu.tensor(xs, [B, T, m]);
    const ref = await sequential(cpu, cell, params, xc, { h0 });
    const want = await cpu.read(ref.y);
    cpu.dispose(ref.y);
    cpu.dispose(xc);

    const x = backend.tensor(xs, [B, T, m]);
    const { y, stats } = await deer(backend, cell, params, x, { h0 });
    const got = await backend.read(y);
    backend.dispose(y);
    backend.dispose(x);
    expect(stats.windows).toBe(Math.ceil(T / 600));
    expect(stats.converged).toBe(true);
    expect(stats.fellBack).toBe(false);
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
    console.log(
      `[webgpu windowing] ${stats.windows} windows, ${stats.iterations} iterations, max abs err ${err.toExponential(2)}`,
    );
    expect(err).toBeLessThan(1e-4);
    expect(backend.liveTensors()).toBe(0);
  });
});
