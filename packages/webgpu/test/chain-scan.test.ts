import { type Backend, Rng, UnsupportedOptionError } from '@deerjs/core';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainWorkgroup, chunking } from '../src/kernels/scan.js';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';
import { expectFusedAsComposed } from './fused-update.js';
import { gruWithGradient, worstRelative } from './gru-gradient.js';

const skip = await skipReason();

/** Lanes that make the chunked scan cut time into chunks even on a software adapter. */
const MANY_LANES = 1 << 20;

/** Seeded dense-block scan inputs, float32-exact: A [B, T, n/s, s, s] (a stable recurrence), c, y0, an old iterate. */
function blockData(B: number, T: number, n: number, s: number, seed: number) {
  const rng = new Rng(seed);
  const round = (a: Float64Array) => a.map(Math.fround);
  return {
    A: round(rng.uniformArray(B * T * n * s, -0.9 / s, 0.9 / s)),
    c: round(rng.normalArray(B * T * n)),
    y0: round(rng.normalArray(B * n)),
    old: round(rng.normalArray(B * T * n)),
  };
}

async function runScan(
  be: Backend,
  d: ReturnType<typeof blockData>,
  [B, T, n, s]: readonly [number, number, number, number],
  reverse: boolean,
  dtype: 'float32' | 'float64',
): Promise<ArrayLike<number>> {
  const A = be.tensor(d.A, [B, T, n / s, s, s], dtype);
  const c = be.tensor(d.c, [B, T, n], dtype);
  const y0 = be.tensor(d.y0, [B, n], dtype);
  try {
    const y = be.scan({ A, c, y0, blockSize: s, reverse });
    const out = await be.read(y);
    be.dispose(y);
    return out;
  } finally {
    for (const t of [A, c, y0]) be.dispose(t);
  }
}

/**
 * The dense scan's serial passes with a workgroup per chain (what a GPU runs for blocks of 8 or
 * more), forced on this adapter: against the float64 oracle, in one serial pass and in chunks (the
 * boundary pass), forward and reversed, fused with the Newton update, and under DEER's gradient.
 */
describe.skipIf(skip !== null)('webgpu dense scan, a workgroup per chain', () => {
  let chain: WebGpuBackend;
  let chunked: WebGpuBackend;
  let invocation: WebGpuBackend;
  let oracle: Backend;
  beforeAll(async () => {
    chain = await createWebGpuBackend({ denseScanKernel: 'workgroup' });
    chunked = await createWebGpuBackend({ denseScanKernel: 'workgroup', scanLanes: MANY_LANES });
    invocation = await createWebGpuBackend({ denseScanKernel: 'invocation' });
    oracle = createReferenceBackend({ dtype: 'float64' });
  });
  afterAll(() => {
    chain?.destroy();
    chunked?.destroy();
    invocation?.destroy();
  });

  for (const [B, T, n, s] of [
    [2, 50, 8, 8],
    [1, 700, 33, 33], // n not a power of two: idle lanes in the workgroup
    [2, 300, 12, 4], // three blocks in one chain
    [1, 40, 300, 300], // more entries than lanes: each lane makes two
  ] as const) {
    for (const reverse of [false, true]) {
      it(`B = ${B}, T = ${T}, n = ${n}, blocks of ${s}${reverse ? ', reversed' : ''}: one pass and chunks match the float64 oracle`, async () => {
        const d = blockData(B, T, n, s, B * 7 + T + n + s);
        const want = await runScan(oracle, d, [B, T, n, s], reverse, 'float64');
        // Chunks pay where the summaries' s² a step beat the chain's s (long rows of small blocks).
        expect(chunking(T, B, n, s, MANY_LANES, true).Q > 1).toBe(s <= 8);
        for (const be of [chain, chunked]) {
          const got = await runScan(be, d, [B, T, n, s], reverse, 'float32');
          let worst = 0;
          for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
          expect(worst, be === chain ? 'one pass' : 'chunked').toBeLessThanOrEqual(2e-5);
        }
      });
    }
  }

  it('a chunked scan is three dispatches: summaries, boundaries, fix-up', async () => {
    const [B, T, n, s] = [1, 400, 8, 8];
    const d = blockData(B, T, n, s, 3);
    const before = chunked.counters().dispatches;
    await runScan(chunked, d, [B, T, n, s], false, 'float32');
    expect(chunked.counters().dispatches - before).toBe(3);
  });

  for (const be of ['one pass', 'chunked'] as const) {
    it(`fused with the Newton update (${be}): as the scan then the update kernel`, async () => {
      const backend = be === 'one pass' ? chain : chunked;
      const [B, T, n, s] = [3, 500, 40, be === 'one pass' ? 40 : 8];
      expect(chunking(T, B, n, s, MANY_LANES, true).Q > 1).toBe(be === 'chunked');
      const d = blockData(B, T, n, s, 99);
      const c = Float64Array.from(d.c, (v) => v * 1e-3);
      c[(2 * T + 5) * n + 1] = Number.NaN;
      c[(0 * T + 450) * n] = 5e8;
      const opts = { atol: 1e-4, rtol: 1e-4, clip: 1e8, active: Uint8Array.from([1, 0, 1]) };
      const t = {
        A: backend.tensor(d.A, [B, T, n / s, s, s]),
        c: backend.tensor(c, [B, T, n]),
        y0: backend.zeros([B, n]),
        old: backend.tensor(d.old, [B, T, n]),
      };
      try {
        const args = { A: t.A, c: t.c, y0: t.y0, blockSize: s, reverse: false };
        const rows = await expectFusedAsComposed(backend, args, t.old, opts);
        expect(rows.replaced[2]).toBeGreaterThan(0);
        expect(rows.clipped[0]).toBeGreaterThan(0);
        expect(rows.settled[1]).toBe(0);
      } finally {
        for (const x of Object.values(t)) backend.dispose(x);
      }
    });
  }

  it('GRU n = 16: deer and its gradient match the invocation-per-block kernels', async () => {
    const got = await gruWithGradient(chain, 16, 2, 600);
    const want = await gruWithGradient(invocation, 16, 2, 600);
    expect(got.converged).toBe(true);
    expect(worstRelative(got.y, want.y)).toBeLessThanOrEqual(1e-4);
    // The gradient's reverse (transposed) scan takes the chain kernels too.
    expect(worstRelative(got.gx, want.gx)).toBeLessThanOrEqual(1e-4);
    expect(worstRelative(got.gh0, want.gh0)).toBeLessThanOrEqual(1e-4);
  });

  it('the workgroup has a lane per entry, 32 to 256', () => {
    expect([1, 8, 33, 64, 300, 1024].map(chainWorkgroup)).toEqual([32, 32, 64, 64, 256, 256]);
  });

  it('a bad denseScanKernel is an UnsupportedOptionError', async () => {
    await expect(createWebGpuBackend({ denseScanKernel: 'fast' as never })).rejects.toBeInstanceOf(UnsupportedOptionError);
  });
});
