import { cells, type DeviceCounters, deer, deerWithGrad, defineCell, dopri5, lang, sequential, withCapabilities } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { USAGE } from '../src/flags.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

const minus = (a: DeviceCounters, b: DeviceCounters) => ({
  dispatches: a.dispatches - b.dispatches,
  submits: a.submits - b.submits,
  reads: a.reads - b.reads,
  bytesWritten: a.bytesWritten - b.bytesWritten,
  bytesRead: a.bytesRead - b.bytesRead,
});

/**
 * The structure of a Newton iteration on the device (issue 14): every dispatch, copy and clear of
 * an iteration goes into one submission, and the host reads only at the convergence check.
 */
describe.skipIf(skip !== null)('webgpu submissions per Newton iteration', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  it('a repeated solve reuses its bind groups and uniforms instead of making them per dispatch', async () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 8 });
    const params = cell.init({ seed: 3 });
    const x = backend.tensor(
      Array.from({ length: 2 * 300 * 2 }, (_, i) => Math.sin(0.37 * i)),
      [2, 300, 2],
    );
    const device = (backend as unknown as { ctx: { device: GPUDevice } }).ctx.device;
    const made = { bindGroups: 0, uniforms: 0 };
    const createBindGroup = device.createBindGroup.bind(device);
    const createBuffer = device.createBuffer.bind(device);
    device.createBindGroup = (d) => {
      made.bindGroups++;
      return createBindGroup(d);
    };
    device.createBuffer = (d) => {
      if (d.usage === (USAGE.UNIFORM | USAGE.COPY_DST)) made.uniforms++;
      return createBuffer(d);
    };
    try {
      const solve = async () => {
        const { y, stats } = await deer(backend, cell, params, x);
        backend.dispose(y);
        return stats;
      };
      await solve();
      const before = backend.counters();
      made.bindGroups = 0;
      made.uniforms = 0;
      const stats = await solve();
      const dispatches = backend.counters().dispatches - before.dispatches;
      expect(stats.converged).toBe(true);
      expect(dispatches).toBeGreaterThan(10);
      // Buffers come back from the pool and shapes repeat: nearly every dispatch finds its bind group.
      expect(made.bindGroups, `${made.bindGroups} bind groups made for ${dispatches} dispatches`).toBeLessThanOrEqual(dispatches / 10);
      expect(made.uniforms).toBe(0);
    } finally {
      device.createBindGroup = createBindGroup;
      device.createBuffer = createBuffer;
      backend.dispose(x);
    }
  });

  for (const [name, n, jacobian] of [
    ['dense GRU', 8, 'auto'],
    ['quasi GRU', 8, 'diagonal'],
    ['GRU nh=1', 1, 'auto'],
  ] as const) {
    it(`${name}: one submit and one 4(1 + 4B)-byte read per iteration; stats.device adds up`, async () => {
      const B = 3;
      const T = 500;
      const cell = cells.gru({ inputSize: 2, hiddenSize: n });
      const params = cell.init({ seed: 3 });
      const xs = Array.from({ length: B * T * 2 }, (_, i) => Math.sin(0.41 * i));
      const x = backend.tensor(xs, [B, T, 2]);
      const before = backend.counters();
      const perIteration: ReturnType<typeof minus>[] = [];
      let last = before;
      const { y, stats } = await deer(backend, cell, params, x, {
        jacobian,
        checkFinite: false,
        onIteration: () => {
          const now = backend.counters();
          perIteration.push(minus(now, last));
          last = now;
        },
      });
      backend.dispose(y);
      backend.dispose(x);
      expect(stats.converged).toBe(true);
      expect(perIteration.length).toBe(stats.iterations);
      // From the second iteration on, each one is exactly: record, submit at the update's read.
      for (const it of perIteration.slice(1)) {
        expect(it.submits).toBe(1);
        expect(it.reads).toBe(1);
        expect(it.bytesRead).toBe(Math.ceil(((1 + 4 * B) * 4) / 4) * 4);
        // The step (Jacobian fused where small), the scan's summaries and boundaries when it is
        // chunked, and its fix-up with the update fused: four passes at most (B = 3 rows do not
        // fill the lanes, so the whole step is not one pass: see deer-step.test.ts).
        expect(it.dispatches).toBeGreaterThanOrEqual(2);
        expect(it.dispatches).toBeLessThanOrEqual(4);
        expect(it.bytesWritten).toBeGreaterThan(B * T * n * 4);
      }
      // The first also holds the setup (parameters, initial guess): still one submission.
      expect(perIteration[0]!.submits).toBe(1);
      const device = stats.device!;
      expect(device).toBeDefined();
      // Beyond the iterations: the residual check (one evaluation, one read), nothing else read.
      expect(device.reads).toBe(stats.iterations + 1);
      expect(device.submits).toBe(stats.iterations + 1);
      expect(minus(backend.counters(), before).reads).toBe(device.reads);
      console.log(
        `[webgpu submits] ${name}: ${stats.iterations} iterations, ${device.dispatches} dispatches, ${device.submits} submits, ${device.reads} reads, ${(device.bytesWritten / 2 ** 20).toFixed(1)} MiB written`,
      );
      expect(backend.liveTensors()).toBe(0);
    });
  }

  it('where reads cost a round trip, Newton steps run unread between checks: fewer reads, the same answer', async () => {
    // iterationOverhead as large as a GPU's: a small problem then runs MAX_UNREAD (3) steps unread
    // before each measured one. Each step is still submitted as it is recorded.
    const slow = await createWebGpuBackend({ iterationOverhead: 2e5 });
    try {
      expect(slow.capabilities.iterationOverhead).toBe(2e5);
      const B = 3;
      const T = 400;
      const cell = cells.gru({ inputSize: 2, hiddenSize: 4 });
      const params = cell.init({ seed: 5 });
      const xs = Array.from({ length: B * T * 2 }, (_, i) => 2 * Math.sin(0.37 * i));
      const run = async (be: WebGpuBackend) => {
        const x = be.tensor(xs, [B, T, 2]);
        const checks: number[] = [];
        const { y, stats } = await deer(be, cell, params, x, { checkFinite: false, onIteration: (i) => checks.push(i.iteration) });
        const out = await be.read(y);
        be.dispose(y);
        be.dispose(x);
        return { out, stats, checks };
      };
      const measured = await run(backend);
      const unread = await run(slow);
      expect(unread.stats.converged).toBe(true);
      // The first step is measured, then every fourth: 1, 5, 9, … (the budget caps the last stride).
      expect(unread.checks.length).toBeGreaterThan(1);
      expect(unread.checks).toEqual(unread.checks.map((_, k) => 1 + 4 * k));
      expect(unread.stats.iterations).toBe(unread.checks.at(-1));
      // No more than 3 iterations past the check that would have stopped every-step checking.
      expect(unread.stats.iterations).toBeGreaterThanOrEqual(measured.stats.iterations);
      expect(unread.stats.iterations).toBeLessThanOrEqual(measured.stats.iterations + 3);
      // A warm start at the solution stops at its first, measured step.
      {
        const x = slow.tensor(xs, [B, T, 2]);
        const guess = slow.tensor(measured.out, [B, T, 4]);
        const warm = await deer(slow, cell, params, x, { checkFinite: false, initialGuess: guess });
        expect(warm.stats.converged).toBe(true);
        expect(warm.stats.iterations).toBe(1);
        for (const t of [x, guess, warm.y]) slow.dispose(t);
      }
      const device = unread.stats.device!;
      // One read per check plus the residual check's; a submit per step and per read.
      expect(device.reads).toBe(unread.checks.length + 1);
      expect(device.reads).toBeLessThan(measured.stats.device!.reads);
      expect(device.submits).toBeLessThanOrEqual(unread.stats.iterations + 1);
      // Both converged to the same trajectory (within the tolerance, scaled).
      let worst = 0;
      for (let i = 0; i < measured.out.length; i++) {
        worst = Math.max(worst, Math.abs(measured.out[i]! - unread.out[i]!) / (1e-5 + 1e-4 * Math.abs(measured.out[i]!)));
      }
      expect(worst).toBeLessThanOrEqual(2);
      console.log(
        `[webgpu submits] unread steps: ${unread.stats.iterations} iterations with ${device.reads} reads (every step read: ${measured.stats.iterations} iterations, ${measured.stats.device!.reads} reads)`,
      );
      expect(slow.liveTensors()).toBe(0);
    } finally {
      slow.destroy();
    }
  });

  it('unread steps stop after a check that replaced or clipped entries: a diverging row is given up as when every step is read', async () => {
    // GRU nh = 16 with weights ×6 overflows: every-step reading gives the rows up as nonFinite after
    // three bad steps; unread steps must not stretch that to three checks (12 steps) or hide it.
    const slow = await createWebGpuBackend({ iterationOverhead: 1e12 });
    try {
      const B = 4;
      const T = 1500;
      const cell = cells.gru({ inputSize: 2, hiddenSize: 16 });
      const base = cell.init({ seed: 7 }) as Record<string, ArrayLike<number>>;
      const params = Object.fromEntries(Object.entries(base).map(([k, v]) => [k, Array.from(v, (z) => z * 6)]));
      const xs = Array.from({ length: B * T * 2 }, (_, i) => 2 * Math.sin(0.37 * i) + Math.cos(1.3 * i));
      const run = async (be: WebGpuBackend) => {
        const x = be.tensor(xs, [B, T, 2]);
        try {
          const { y, stats } = await deer(be, cell, params, x, { checkFinite: false, fallback: 'none' });
          be.dispose(y);
          return stats;
        } finally {
          be.dispose(x);
        }
      };
      const every = await run(backend);
      const unread = await run(slow);
      expect(every.converged).toBe(false);
      expect(unread.stopReason).toBe(every.stopReason);
      expect(unread.iterations).toBe(every.iterations);
      expect(slow.liveTensors()).toBe(0);
    } finally {
      slow.destroy();
    }
  });

  it('iterationOverhead must be a finite number ≥ 0', async () => {
    await expect(createWebGpuBackend({ iterationOverhead: -1 })).rejects.toThrow(/iterationOverhead/);
    await expect(createWebGpuBackend({ iterationOverhead: Number.NaN })).rejects.toThrow(/iterationOverhead/);
  });

  it('a write into a buffer that pending commands read lands after them', async () => {
    // a is read by the pending add; then a's buffer is released and re-acquired by the next tensor,
    // whose data must not overwrite a before the add ran.
    const a = backend.tensor([1, 2, 3, 4], [4]);
    const b = backend.tensor([10, 20, 30, 40], [4]);
    const s = backend.add(a, b);
    backend.dispose(a);
    const c = backend.tensor([100, 200, 300, 400], [4]);
    const s2 = backend.add(c, b);
    expect([...(await backend.read(s))]).toEqual([11, 22, 33, 44]);
    expect([...(await backend.read(s2))]).toEqual([110, 220, 330, 440]);
    for (const t of [b, c, s, s2]) backend.dispose(t);
    expect(backend.liveTensors()).toBe(0);
  });

  it('a large write into a buffer that pending commands read submits them first', async () => {
    const n = 300_000; // 1.2 MB: past the upload-buffer path
    const a = backend.tensor(Float32Array.from({ length: n }, (_, i) => i % 7), [n]);
    const b = backend.tensor(Float32Array.from({ length: n }, () => 1), [n]);
    const s = backend.add(a, b);
    backend.dispose(a);
    const before = backend.counters().submits;
    const c = backend.tensor(Float32Array.from({ length: n }, () => 100), [n]);
    expect(backend.counters().submits).toBe(before + 1);
    const got = await backend.read(s);
    const want = Float32Array.from({ length: n }, (_, i) => (i % 7) + 1);
    expect(got).toEqual(want);
    for (const t of [b, c, s]) backend.dispose(t);
  });

  it('many dispatches without a read stay correct (uniform blocks are not rewritten early)', async () => {
    let acc = backend.tensor([0, 0], [2]);
    const one = backend.tensor([1, 0.5], [2]);
    for (let i = 0; i < 2500; i++) {
      const next = backend.add(acc, one);
      backend.dispose(acc);
      acc = next;
    }
    expect([...(await backend.read(acc))]).toEqual([2500, 1250]);
    backend.dispose(acc);
    backend.dispose(one);
  });

  it('timestamps: true measures device time where the adapter offers timestamp-query', async () => {
    const timed = await createWebGpuBackend({ timestamps: true });
    try {
      const cell = cells.gru({ inputSize: 2, hiddenSize: 4 });
      const x = timed.tensor(
        Array.from({ length: 2 * 300 * 2 }, (_, i) => Math.cos(0.3 * i)),
        [2, 300, 2],
      );
      const t0 = performance.now();
      const before = await timed.deviceTimeMs();
      const { y, stats } = await deer(timed, cell, cell.init({ seed: 1 }), x, { checkFinite: false });
      await timed.read(y);
      const wall = performance.now() - t0;
      const after = await timed.deviceTimeMs();
      timed.dispose(y);
      timed.dispose(x);
      expect(stats.converged).toBe(true);
      if (before === undefined) {
        expect(after).toBeUndefined();
        console.log('[webgpu submits] adapter without timestamp-query: no device time');
        return;
      }
      const device = after! - before;
      console.log(`[webgpu submits] device time ${device.toFixed(2)} ms of ${wall.toFixed(1)} ms wall`);
      expect(device).toBeGreaterThan(0);
      expect(device).toBeLessThan(wall * 1.5);
      // By kernel: every dispatch of the solve is a labelled pass, and the labels' times add up.
      const kernels = (await timed.deviceTimeByKernel())!;
      const passes = Object.values(kernels).reduce((a, k) => a + k.passes, 0);
      expect(passes).toBe(timed.counters().dispatches);
      expect(Object.keys(kernels)).toContain('step');
      const summed = Object.values(kernels).reduce((a, k) => a + k.ms, 0);
      expect(summed).toBeGreaterThan(0);
      expect(summed).toBeLessThan(wall * 1.5);
    } finally {
      timed.destroy();
    }
  });

  /** The overlap cases' problem: a GRU n = 4 over B = 2 rows of T = 300 steps. */
  const overlapProblem = () => {
    const [B, T] = [2, 300];
    const cell = cells.gru({ inputSize: 2, hiddenSize: 4 });
    const params = cell.init({ seed: 5 });
    const x = backend.tensor(
      Array.from({ length: B * T * 2 }, (_, i) => Math.cos(0.3 * i)),
      [B, T, 2],
    );
    return { B, T, cell, params, x };
  };

  it('stats.device is left out where two solves on the backend overlapped (the counts cannot be split)', async () => {
    const { B, T, cell, params, x } = overlapProblem();
    const solve = () => deer(backend, cell, params, x, { jacobian: 'diagonal', checkFinite: false });
    const alone = await solve();
    const [a, b] = await Promise.all([solve(), solve()]);
    const after = await solve();
    for (const r of [alone, a, b, after]) backend.dispose(r.y);
    expect(alone.stats.device).toBeDefined();
    expect(a.stats.device).toBeUndefined();
    expect(b.stats.device).toBeUndefined();
    expect(after.stats.device).toEqual(alone.stats.device);
    expect(Object.keys(alone.stats)).not.toContain('deviceShared');
    // A withCapabilities view runs on (and counts on) the same device.
    const x2 = backend.tensor(
      Array.from({ length: B * T * 2 }, (_, i) => Math.sin(0.2 * i)),
      [B, T, 2],
    );
    const view = withCapabilities(backend, { parallelism: 1e6 });
    const [c, d] = await Promise.all([
      solve(),
      deer(view, cell, params, x2, { jacobian: 'diagonal', checkFinite: false }),
    ]);
    for (const r of [c, d]) backend.dispose(r.y);
    backend.dispose(x2);
    backend.dispose(x);
    expect(c.stats.device).toBeUndefined();
    expect(d.stats.device).toBeUndefined();
    expect(Object.keys(c.stats)).not.toContain('deviceShared');
    expect(Object.keys(c.stats)).not.toContain('device');
  });

  it('stats.device is left out where a backward pass, a sequential pass or dopri5 overlapped the solve', async () => {
    // They are not solves but send work to the same device: it had been counted as the solve's.
    const { B, T, cell, params, x } = overlapProblem();
    const dy = backend.tensor(
      Array.from({ length: B * T * 4 }, (_, i) => Math.sin(0.1 * i)),
      [B, T, 4],
    );
    const solve = () => deer(backend, cell, params, x, { checkFinite: false });
    const alone = await solve();
    backend.dispose(alone.y);
    expect(alone.stats.device).toBeDefined();
    const g = await deerWithGrad(backend, cell, params, x);
    const [a, grads] = await Promise.all([solve(), g.vjp(dy)]);
    const [b, seq] = await Promise.all([solve(), sequential(backend, cell, params, x)]);
    const decay = defineCell({ name: 'decay', state: 1, input: 0, params: {} }, (y) => lang.neg(y));
    const [c, ode] = await Promise.all([solve(), dopri5(backend, decay, {}, { y0: [1], t: [0, 1, 2] })]);
    // 'auto' answering by sequential evaluation up front (one lane: the cost model's choice) is a
    // solve too: counted alone, and not counted into another solve's figures.
    const oneLane = withCapabilities(backend, { parallelism: 1 });
    const auto = () => deer(oneLane, cell, params, x, { method: 'auto', checkFinite: false });
    const lone = await auto();
    const [d, e] = await Promise.all([solve(), auto()]);
    for (const t of [a.y, b.y, c.y, d.y, e.y, lone.y, seq.y, ode.y, grads.x, grads.h0, ...Object.values(grads.params), dy, x]) backend.dispose(t);
    g.dispose();
    expect(a.stats.device, 'beside a vjp').toBeUndefined();
    expect(b.stats.device, 'beside sequential').toBeUndefined();
    expect(c.stats.device, 'beside dopri5').toBeUndefined();
    expect(lone.stats.stopReason).toBe('sequential');
    expect(lone.stats.device?.dispatches, "'auto' answering sequentially, alone").toBeGreaterThan(0);
    expect(d.stats.device, "beside 'auto' answering sequentially").toBeUndefined();
    expect(e.stats.device).toBeUndefined();
  });
});
