import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { Rng } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { createTfjsBackend } from '../src/index.js';

// Parameter gradients are sums over every (b, t): in float32 a one-pass sum of B·T = 1e5 rows had
// lost 1e-5 relative on the wasm engine (a layer norm's bias gradient at B = 4, T = 3000 was 8.6e-5
// off float64). Summed in two levels, the error grows with √(B·T).
describe('sumBatchTime over many rows', () => {
  for (const engine of ['cpu', 'wasm'] as const) {
    it(`stays within 2e-6 of the float64 sum on tfjs ${engine} (B·T = 1e5, and a length that is no square)`, async () => {
      const backend = await createTfjsBackend({ backend: engine, hostKernels: false });
      try {
        for (const [B, T] of [[2, 50_000], [3, 4099]] as const) {
          const F = 6;
          // Values of one sign on average (mean 0.35): a sum that grows, as a bias gradient's can.
          const data = Float32Array.from(new Rng(B + T).uniformArray(B * T * F, -0.3, 1));
          const x = backend.tensor(data, [B, T, F]);
          const s = backend.sumBatchTime(x);
          const got = await backend.read(s);
          backend.dispose(x);
          backend.dispose(s);
          for (let f = 0; f < F; f++) {
            let exact = 0;
            for (let e = 0; e < B * T; e++) exact += data[e * F + f]!;
            expect(Math.abs(got[f]! - exact) / Math.abs(exact), `B=${B} T=${T} column ${f}`).toBeLessThanOrEqual(2e-6);
          }
        }
      } finally {
        await backend.destroy();
      }
    });
  }
});
