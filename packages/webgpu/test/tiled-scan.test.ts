import { type Backend, UnsupportedOptionError } from '@deerjs/core';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';
import { diagonalScanData, runDiagonalScan } from './diagonal-scan.js';
import { expectFusedAsComposed } from './fused-update.js';
import { gruWithGradient, worstRelative } from './gru-gradient.js';

const skip = await skipReason();

/**
 * The tiled diagonal scan (what a GPU runs for states up to 8), forced on this adapter: against
 * the float64 oracle, forward and reversed, one tile and many (the tiles' summaries scanned by
 * the same kernels, recursively), and fused with the Newton update.
 */
describe.skipIf(skip !== null)('webgpu tiled diagonal scan', () => {
  let backend: WebGpuBackend;
  let plain: WebGpuBackend;
  let oracle: Backend;
  beforeAll(async () => {
    backend = await createWebGpuBackend({ scanKernel: 'tiled' });
    plain = await createWebGpuBackend({ scanKernel: 'chunked' });
    oracle = createReferenceBackend({ dtype: 'float64' });
  });
  afterAll(() => {
    backend?.destroy();
    plain?.destroy();
  });

  const data = (B: number, T: number, n: number, seed: number) => diagonalScanData(B, T, n, seed, 0.97);
  const run = (be: Backend, d: ReturnType<typeof data>, B: number, T: number, n: number, reverse: boolean) =>
    runDiagonalScan(be, d, [B, T, n], reverse, be === oracle ? 'float64' : 'float32');

  for (const [B, T, n] of [
    [2, 2, 1],
    [3, 255, 1],
    [3, 257, 1],
    [2, 1000, 3],
    [4, 700, 8],
    [2, 70001, 1], // 274 tiles a row: their summaries are scanned tiled again, twice
    [1, 9000, 2],
  ] as const) {
    for (const reverse of [false, true]) {
      it(`B = ${B}, T = ${T}, n = ${n}${reverse ? ', reversed' : ''}: matches the float64 oracle`, async () => {
        const d = data(B, T, n, B * 7 + T + n);
        const got = await run(backend, d, B, T, n, reverse);
        const want = await run(oracle, d, B, T, n, reverse);
        let worst = 0;
        for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
        expect(worst).toBeLessThanOrEqual(2e-4);
      });
    }
  }

  it('fused with the Newton update: as the tiled scan then the update kernel', async () => {
    const [B, T, n] = [3, 3000, 2];
    const d = data(B, T, n, 99);
    const c = Float64Array.from(d.c, (v) => v * 1e-3);
    c[(2 * T + 5) * n + 1] = Number.NaN;
    c[(0 * T + 2900) * n] = 5e8;
    const opts = { atol: 1e-4, rtol: 1e-4, clip: 1e8, active: Uint8Array.from([1, 0, 1]) };
    const t = {
      A: backend.tensor(d.A, [B, T, n, 1, 1]),
      c: backend.tensor(c, [B, T, n]),
      y0: backend.zeros([B, n]),
      old: backend.tensor(d.old, [B, T, n]),
    };
    try {
      const args = { A: t.A, c: t.c, y0: t.y0, blockSize: 1, reverse: false };
      const rows = await expectFusedAsComposed(backend, args, t.old, opts);
      expect(rows.replaced[2]).toBeGreaterThan(0);
      expect(rows.clipped[0]).toBeGreaterThan(0);
      expect(rows.settled[1]).toBe(0);
    } finally {
      for (const x of Object.values(t)) backend.dispose(x);
    }
  });

  for (const [name, n, jacobian] of [
    ['GRU n = 1', 1, 'auto'],
    ['quasi GRU n = 8', 8, 'diagonal'],
  ] as const) {
    it(`${name}: deer and its gradient through the tiled scans match the chunked scans'`, async () => {
      const tiled = await gruWithGradient(backend, n, 3, 2000, jacobian);
      const chunked = await gruWithGradient(plain, n, 3, 2000, jacobian);
      expect(tiled.converged).toBe(true);
      expect(worstRelative(tiled.y, chunked.y)).toBeLessThanOrEqual(1e-4);
      // The gradient's reverse (transposed) scan runs tiled too.
      expect(worstRelative(tiled.gx, chunked.gx)).toBeLessThanOrEqual(1e-4);
      expect(worstRelative(tiled.gh0, chunked.gh0)).toBeLessThanOrEqual(1e-4);
    });
  }

  it('a bad scanKernel is an UnsupportedOptionError', async () => {
    await expect(createWebGpuBackend({ scanKernel: 'fast' as never })).rejects.toBeInstanceOf(UnsupportedOptionError);
  });
});
