import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTfjsBackend, type ScanMethod, type TfjsBackend } from '../src/index.js';
import { linearScan } from '../src/scan.js';

const cpu = createCpuBackend({ dtype: 'float64' });

async function reference(
  A: Float64Array,
  c: Float64Array,
  y0: Float64Array,
  B: number,
  T: number,
  n: number,
  s: number,
  reverse: boolean,
) {
  const a = cpu.tensor(A, [B, T, n / s, s, s]);
  const cc = cpu.tensor(c, [B, T, n]);
  const y = cpu.tensor(y0, [B, n]);
  const out = cpu.scan({ A: a, c: cc, y0: y, blockSize: s, reverse });
  const r = await cpu.read(out);
  for (const t of [a, cc, y, out]) cpu.dispose(t);
  return r;
}

describe.each([
  'oddeven',
  'chunked',
  'sequential',
] as ScanMethod[])('scan (%s) matches the CPU reference', (method) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ backend: 'cpu', scan: method });
  });
  const cases = [
    { B: 1, T: 1, n: 3, s: 3 },
    { B: 2, T: 7, n: 4, s: 4 },
    { B: 3, T: 33, n: 4, s: 2 },
    { B: 2, T: 50, n: 5, s: 1 },
    { B: 1, T: 101, n: 3, s: 3 },
  ];
  for (const { B, T, n, s } of cases) {
    for (const reverse of [false, true]) {
      it(`B=${B} T=${T} n=${n} s=${s}${reverse ? ' reverse' : ''}`, async () => {
        const rng = new Rng(B * 1000 + T * 10 + s);
        const A = rng.uniformArray(B * T * n * s, -0.6, 0.6).map(Math.fround);
        const c = rng.normalArray(B * T * n).map(Math.fround);
        const y0 = rng.normalArray(B * n).map(Math.fround);
        const ref = await reference(A, c, y0, B, T, n, s, reverse);
        const before = tf.memory().numTensors;
        const a = be.tensor(A, [B, T, n / s, s, s]);
        const cc = be.tensor(c, [B, T, n]);
        const y = be.tensor(y0, [B, n]);
        const out = be.scan({ A: a, c: cc, y0: y, blockSize: s, reverse });
        const got = await be.read(out);
        for (const t of [a, cc, y, out]) be.dispose(t);
        expect(tf.memory().numTensors).toBe(before);
        let err = 0;
        for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i]! - ref[i]!));
        expect(err).toBeLessThan(1e-5);
      });
    }
  }
});

describe('the sequential scan as a host loop (tfjs cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  for (const { B, T, n, s } of [
    { B: 2, T: 9, n: 4, s: 4 },
    { B: 3, T: 17, n: 6, s: 2 },
    { B: 2, T: 12, n: 5, s: 1 },
    { B: 2, T: 7, n: 12, s: 6 },
  ]) {
    for (const reverse of [false, true]) {
      it(`gives the op path's values bit for bit: B=${B} T=${T} n=${n} s=${s}${reverse ? ' reverse' : ''}`, () => {
        const rng = new Rng(7 + B * T + s);
        const A = Float32Array.from(rng.uniformArray(B * T * n * s, -0.7, 0.7));
        const c = Float32Array.from(rng.normalArray(B * T * n));
        const y0 = Float32Array.from(rng.normalArray(B * n));
        const run = (hostLoops: boolean) =>
          tf.tidy(() =>
            Array.from(
              linearScan(
              tf,
              'sequential',
              tf.tensor(A, [B, T, n / s, s, s]),
              tf.tensor3d(c, [B, T, n]),
              tf.tensor2d(y0, [B, n]),
              s,
              reverse,
                { viewSlices: true, gatherSteps: false, hostLoops },
              ).dataSync(),
            ),
          );
        expect(run(true)).toEqual(run(false));
      });
    }
  }
});
