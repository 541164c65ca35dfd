import { type Backend, cells, Rng, sequential, type Tensor } from '@deerjs/core';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
  return err;
};

// The input projection W·x + b of a step program is computed once per input tensor and kept with
// it (Hoist in wgsl/step.ts): these check it is reused only while it is still right.
describe.skipIf(skip !== null)('webgpu: hoisted input projection', () => {
  let gpu: WebGpuBackend;
  let ref: Backend;
  const [B, T, n, m] = [2, 300, 8, 6];
  const cell = cells.gru({ inputSize: m, hiddenSize: n });
  const program = cell.linearizeProgram(n);
  const rng = new Rng(11);
  const xHost = rng.normalArray(B * T * m);
  const yHost = rng.normalArray(B * T * n);
  const upload = (be: Backend, values: Record<string, Float64Array>) =>
    Object.fromEntries(Object.entries(values).map(([k, v]) => [k, be.tensor(v, [v.length], be.capabilities.defaultDType)]));

  beforeAll(async () => {
    gpu = await createWebGpuBackend();
    ref = createReferenceBackend({ dtype: 'float64' });
  });
  afterAll(() => gpu?.destroy());

  /** runStep on both backends; the largest difference over outputs and Jacobian. */
  async function compare(x: Tensor, params: Record<string, Tensor>, values: Record<string, Float64Array>) {
    const y = gpu.tensor(yHost, [B, T, n]);
    const before = gpu.counters().dispatches;
    const out = gpu.runStep(program, { state: y, input: x, params });
    const got = [...(await Promise.all(out.outputs.map((t) => gpu.read(t)))), await gpu.read(out.jacobian!)];
    const dispatches = gpu.counters().dispatches - before;
    for (const t of [y, ...out.outputs, out.jacobian!]) gpu.dispose(t);
    const rp = upload(ref, values);
    const rx = ref.tensor(xHost, [B, T, m], 'float64');
    const ry = ref.tensor(yHost, [B, T, n], 'float64');
    const rout = ref.runStep(program, { state: ry, input: rx, params: rp });
    const want = [...(await Promise.all(rout.outputs.map((t) => ref.read(t)))), await ref.read(rout.jacobian!)];
    const err = Math.max(...got.map((g, i) => maxAbsDiff(g, want[i]!)));
    return { err, dispatches };
  }

  it('computes the projection once per input and reuses it while x and the params are unchanged', async () => {
    const values = cell.init({ seed: 1 });
    const params = upload(gpu, values);
    const x = gpu.tensor(xHost, [B, T, m]);
    const first = await compare(x, params, values);
    const second = await compare(x, params, values);
    expect(first.err).toBeLessThan(1e-5);
    expect(second.err).toBeLessThan(1e-5);
    expect(second.dispatches, 'the hoist kernel runs only the first time').toBe(first.dispatches - 1);
    gpu.dispose(x);
    for (const t of Object.values(params)) gpu.dispose(t);
  });

  it('recomputes it for new param tensors on the same x', async () => {
    const x = gpu.tensor(xHost, [B, T, m]);
    const v1 = cell.init({ seed: 2 });
    const v2 = cell.init({ seed: 3 });
    const p1 = upload(gpu, v1);
    const p2 = upload(gpu, v2);
    expect((await compare(x, p1, v1)).err).toBeLessThan(1e-5);
    const again = await compare(x, p2, v2);
    expect(again.err, 'results for the new params, not the cached ones').toBeLessThan(1e-5);
    expect((await compare(x, p1, v1)).err).toBeLessThan(1e-5);
    gpu.dispose(x);
    for (const t of [...Object.values(p1), ...Object.values(p2)]) gpu.dispose(t);
  });

  it('sequential evaluation uses and keeps the same values; disposing x frees them', async () => {
    const values = cell.init({ seed: 4 });
    const params = upload(gpu, values);
    const bytes0 = gpu.liveBytes();
    const x = gpu.tensor(xHost, [B, T, m]);
    const { y } = await sequential(gpu, cell, params, x);
    const got = await gpu.read(y);
    gpu.dispose(y);
    const rp = upload(ref, values);
    const want = await ref.read(
      (await sequential(ref, cell, rp, ref.tensor(xHost, [B, T, m], 'float64'), {})).y,
    );
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
    expect(gpu.liveBytes(), 'the hoisted values stay with x').toBeGreaterThan(bytes0 + B * T * m * 4);
    gpu.dispose(x);
    expect(gpu.liveBytes()).toBe(bytes0);
    for (const t of Object.values(params)) gpu.dispose(t);
  });
});
