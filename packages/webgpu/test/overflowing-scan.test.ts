import { scanThenUpdate } from '@deerjs/core';
import { firstMismatch, overflowingScan } from '@deerjs/conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunking } from '../src/kernels/scan.js';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

/** Lanes that make the chunked scan cut time into chunks even on a software adapter. */
const MANY_LANES = 1 << 20;

/**
 * The chunked scan where a chunk's composed product overflows float32 and the answer does not
 * (`overflowingScan`: from 0, at a fixed point, and a row whose trajectory itself overflows), in
 * each family of boundary pass forced on this adapter — an invocation per block (diagonal and
 * dense blocks) and a workgroup per chain — with chunks, in the scan and fused with the update.
 */
describe.skipIf(skip !== null)('webgpu chunked scan where products overflow', () => {
  let invocation: WebGpuBackend;
  let chain: WebGpuBackend;
  beforeAll(async () => {
    invocation = await createWebGpuBackend({ scanKernel: 'chunked', denseScanKernel: 'invocation', scanLanes: MANY_LANES });
    chain = await createWebGpuBackend({ scanKernel: 'chunked', denseScanKernel: 'workgroup', scanLanes: MANY_LANES });
  });
  afterAll(() => {
    invocation?.destroy();
    chain?.destroy();
  });

  const T = 600;
  for (const [family, n, s] of [
    ['invocation', 1, 1],
    ['invocation', 4, 1],
    ['invocation', 4, 2],
    ['chain', 4, 2],
    ['chain', 8, 8],
  ] as const) {
    for (const reverse of [false, true]) {
      it(`${family}, n = ${n}, blocks of ${s}${reverse ? ', reversed' : ''}: every entry as a serial pass`, async () => {
        const backend = family === 'chain' ? chain : invocation;
        expect(chunking(T, 3, n, s, MANY_LANES, family === 'chain').Q, 'the scan is chunked').toBeGreaterThan(1);
        const d = overflowingScan(T, n, s, reverse, 'float32');
        const t = {
          A: backend.tensor(d.A, [d.B, T, n / s, s, s]),
          c: backend.tensor(d.c, [d.B, T, n]),
          y0: backend.tensor(d.y0, [d.B, n]),
          old: backend.zeros([d.B, T, n]),
        };
        try {
          const args = { A: t.A, c: t.c, y0: t.y0, blockSize: s, reverse };
          const y = backend.scan(args);
          const got = await backend.read(y);
          backend.dispose(y);
          expect(firstMismatch(got, d.expected, 1e-6)).toBeNull();
          if (reverse) return;
          const opts = { atol: 1e-6, rtol: 1e-6, clip: 1e30, active: Uint8Array.from([1, 1, 1]) };
          for (const [how, u] of [
            ['fused', await backend.scanUpdate(args, t.old, opts)],
            ['composed', await scanThenUpdate(backend, args, t.old, opts)],
          ] as const) {
            const fused = await backend.read(u.y);
            backend.dispose(u.y);
            const rows = 2 * T * n;
            expect(firstMismatch(fused.subarray(0, rows), d.expected.subarray(0, rows), 1e-6), how).toBeNull();
            expect(Array.from(u.rows.replaced), how).toEqual([0, 0, u.rows.replaced[2]]);
            expect(u.rows.replaced[2], how).toBeGreaterThan(0);
          }
        } finally {
          for (const x of Object.values(t)) backend.dispose(x);
        }
        expect(backend.liveTensors()).toBe(0);
      });
    }
  }
});
