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
        const { Q, L } = chunking(T, 3, n, s, MANY_LANES, family === 'chain');
        expect(Q, 'the scan is chunked').toBeGreaterThan(1);
        // Chunks of 16 steps or more: every chunk's product overflows, and row 1's boundaries are Inf − Inf.
        expect(L).toBeGreaterThanOrEqual(16);
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

/**
 * The tiled scan (a GPU's diagonal scan, forced here) where a tile's product overflows: rows 0
 * (from 0) and 2 (overflowing) as a serial pass, in the scan and fused with the update; row 1's
 * fixed point cancels within a tile (kernels/tiled-scan.ts), so it is not held to that.
 */
describe.skipIf(skip !== null)('webgpu tiled scan where products overflow', () => {
  let tiled: WebGpuBackend;
  beforeAll(async () => {
    tiled = await createWebGpuBackend({ scanKernel: 'tiled' });
  });
  afterAll(() => tiled?.destroy());

  const T = 3000;
  for (const n of [1, 3, 8]) {
    for (const reverse of [false, true]) {
      it(`n = ${n}${reverse ? ', reversed' : ''}`, async () => {
        const d = overflowingScan(T, n, 1, reverse, 'float32');
        const t = {
          A: tiled.tensor(d.A, [d.B, T, n, 1, 1]),
          c: tiled.tensor(d.c, [d.B, T, n]),
          y0: tiled.tensor(d.y0, [d.B, n]),
          old: tiled.zeros([d.B, T, n]),
        };
        const rows = T * n;
        const check = (got: Float32Array, what: string) => {
          for (const r of [0, 2]) {
            expect(firstMismatch(got.subarray(r * rows, (r + 1) * rows), d.expected.subarray(r * rows, (r + 1) * rows), 1e-6), `${what}, row ${r}`).toBeNull();
          }
        };
        try {
          const args = { A: t.A, c: t.c, y0: t.y0, blockSize: 1, reverse };
          const y = tiled.scan(args);
          check(await tiled.read(y), 'scan');
          tiled.dispose(y);
          if (reverse) return;
          const u = await tiled.scanUpdate(args, t.old, { atol: 1e-6, rtol: 1e-6, clip: 1e30, active: Uint8Array.from([1, 1, 1]) });
          const got = await tiled.read(u.y);
          tiled.dispose(u.y);
          expect(firstMismatch(got.subarray(0, rows), d.expected.subarray(0, rows), 1e-6), 'scanUpdate, row 0').toBeNull();
          expect(u.rows.replaced[0]).toBe(0);
          expect(u.rows.replaced[2]).toBeGreaterThan(0);
        } finally {
          for (const x of Object.values(t)) tiled.dispose(x);
        }
        expect(tiled.liveTensors()).toBe(0);
      });
    }
  }
});
