import { Rng } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunking } from '../src/kernels/scan.js';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

describe('how the chunked scan cuts time', () => {
  it('dense blocks stay one serial pass where few lanes compute at once, and are chunked on a GPU', () => {
    // 16 lanes: two cores of 256-bit SIMD (a software adapter's `parallelism`).
    expect(chunking(5000, 1, 64, 64, 16).Q).toBe(1);
    expect(chunking(10_000, 3, 8, 8, 16).Q).toBe(1);
    expect(chunking(5000, 1, 64, 64, 65_536).Q).toBeGreaterThan(1);
    // Diagonal summaries cost about what the fix-up does: chunks pay even on few lanes.
    expect(chunking(1_000_000, 1, 1, 1, 16).Q).toBeGreaterThan(1);
  });

  it('with a workgroup per chain, dense blocks are chunked only where s² a step beats s and two barriers', () => {
    expect(chunking(1000, 1, 64, 64, 65_536, true).Q).toBe(1);
    expect(chunking(1000, 1, 64, 64, 65_536).Q).toBeGreaterThan(1);
    expect(chunking(100_000, 16, 8, 8, 65_536, true).Q).toBeGreaterThan(1);
    // Blocks too large for workgroup memory keep an invocation per block, and its cost.
    expect(chunking(5000, 1, 2048, 64, 65_536, true)).toEqual(chunking(5000, 1, 2048, 64, 65_536));
  });

  it('the chunks cover time exactly', () => {
    for (const [T, B, n, s, lanes] of [
      [1, 1, 4, 4, 65_536],
      [7, 2, 8, 1, 16],
      [10_001, 1, 32, 32, 65_536],
      [99_999, 16, 8, 1, 128],
    ] as const) {
      const { L, Q } = chunking(T, B, n, s, lanes);
      expect(L * Q).toBeGreaterThanOrEqual(T);
      expect(L * (Q - 1)).toBeLessThan(T);
    }
  });
});

describe.skipIf(skip !== null)('the dense scan on this adapter', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  it('is one dispatch where the adapter computes few lanes at once (a software adapter), and exact', async () => {
    const parallelism = backend.capabilities.parallelism!;
    const [B, T, n] = [1, 3000, 32];
    const rng = new Rng(5);
    const A = rng.uniformArray(B * T * n * n, -0.15, 0.15);
    const c = rng.normalArray(B * T * n);
    const a = backend.tensor(A, [B, T, 1, n, n]);
    const cc = backend.tensor(c, [B, T, n]);
    const y0 = backend.zeros([B, n]);
    const before = backend.counters().dispatches;
    const y = backend.scan({ A: a, c: cc, y0, blockSize: n, reverse: false });
    const dispatches = backend.counters().dispatches - before;
    const got = await backend.read(y);
    for (const t of [a, cc, y0, y]) backend.dispose(t);
    if (chunking(T, B, n, n, parallelism).Q === 1) expect(dispatches).toBe(1);
    else expect(dispatches).toBe(3);
    // Against the recurrence in float64.
    let prev = new Float64Array(n);
    let worst = 0;
    for (let t = 0; t < T; t++) {
      const next = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        let acc = c[t * n + i]!;
        for (let j = 0; j < n; j++) acc += A[(t * n + i) * n + j]! * prev[j]!;
        next[i] = acc;
        worst = Math.max(worst, Math.abs(got[t * n + i]! - acc) / (1 + Math.abs(acc)));
      }
      prev = next;
    }
    expect(worst).toBeLessThanOrEqual(1e-4);
    if (/llvmpipe|lavapipe|swiftshader/i.test(backend.capabilities.device)) expect(dispatches).toBe(1);
  });
});
