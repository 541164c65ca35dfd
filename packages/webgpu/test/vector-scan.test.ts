import type { Backend } from '@deerjs/core';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';
import { diagonalScanData, runDiagonalScan } from './diagonal-scan.js';

const skip = await skipReason();

/**
 * The diagonal scan's vectorised serial pass (four steps or four states per vec4), which the
 * backend takes where the chains fill the adapter's lanes (64 rows do on llvmpipe up to 8 cores),
 * against the float64 oracle, forward and reversed; and the chunked path where it does not apply.
 */
describe.skipIf(skip !== null)('webgpu vectorised diagonal scan', () => {
  let backend: WebGpuBackend;
  let oracle: Backend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
    oracle = createReferenceBackend({ dtype: 'float64' });
  });
  afterAll(() => backend?.destroy());

  const scan = (be: Backend, B: number, T: number, n: number, reverse: boolean, seed: number) =>
    runDiagonalScan(be, diagonalScanData(B, T, n, seed, 0.95), [B, T, n], reverse, be === oracle ? 'float64' : 'float32');

  for (const [B, T, n] of [
    [64, 400, 1],
    [64, 37, 4],
    [32, 50, 8],
    [64, 402, 1], // T % 4 ≠ 0: the chunked scan
    [3, 400, 1], // too few chains: the chunked scan
  ] as const) {
    for (const reverse of [false, true]) {
      it(`B = ${B}, T = ${T}, n = ${n}${reverse ? ', reversed' : ''}: matches the float64 oracle`, async () => {
        // White-box: which kernels ran, by their labels.
        const ctx = (backend as unknown as { ctx: { dispatch: (code: string, label: string, ...rest: unknown[]) => void } }).ctx;
        const labels: string[] = [];
        const dispatch = ctx.dispatch.bind(ctx);
        ctx.dispatch = (code, label, ...rest) => {
          labels.push(label);
          dispatch(code, label, ...rest);
        };
        const got = await scan(backend, B, T, n, reverse, B + T + n).finally(() => {
          ctx.dispatch = dispatch;
        });
        const want = await scan(oracle, B, T, n, reverse, B + T + n);
        let worst = 0;
        for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
        expect(worst).toBeLessThanOrEqual(1e-4);
        const chains = n === 1 ? B : B * (n / 4);
        const vector = (n % 4 === 0 || T % 4 === 0) && chains >= (backend.capabilities.parallelism ?? Infinity);
        expect(labels, 'one vectorised pass exactly where it applies').toEqual(vector ? ['scan-vector'] : expect.not.arrayContaining(['scan-vector']));
      });
    }
  }
});
