import '@tensorflow/tfjs-backend-cpu';
import { hostCapTransitions, hostDampedScan, Rng } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTfjsBackend, type ScanMethod, type TfjsBackend } from '../src/index.js';
import { dampedScanPcr, linearScan } from '../src/scan.js';
import { capTransitionsOps } from '../src/transitions.js';

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
                { viewSlices: true, gatherSteps: false, hostLoops, hostData: hostLoops },
              ).dataSync(),
            ),
          );
        expect(run(true)).toEqual(run(false));
      });
    }
  }
});

/**
 * The op paths that engines without host data (WebGL, WebGPU) take, run here on tfjs cpu's
 * kernels with the other engines' data moves: each order against the float64 reference.
 */
describe('the op orders of engines without host data', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  const moves = [
    { name: 'wasm-like (row gathers)', m: { viewSlices: false, gatherSteps: true } },
    { name: 'webgl-like (slices)', m: { viewSlices: false, gatherSteps: false } },
  ];
  for (const { name, m } of moves) {
    for (const method of ['sequential', 'oddeven', 'chunked'] as const) {
      for (const { B, T, n, s, reverse } of [
        { B: 2, T: 37, n: 4, s: 4, reverse: false },
        { B: 3, T: 50, n: 6, s: 1, reverse: true },
        { B: 1, T: 101, n: 6, s: 2, reverse: false },
      ]) {
        it(`${name} ${method}: B=${B} T=${T} n=${n} s=${s}${reverse ? ' reverse' : ''}`, async () => {
          const rng = new Rng(31 + B * T + s);
          const A = rng.uniformArray(B * T * n * s, -0.6, 0.6).map(Math.fround);
          const c = rng.normalArray(B * T * n).map(Math.fround);
          const y0 = rng.normalArray(B * n).map(Math.fround);
          const ref = await reference(A, c, y0, B, T, n, s, reverse);
          const got = tf.tidy(() =>
            linearScan(
              tf,
              method,
              tf.tensor(Float32Array.from(A), [B, T, n / s, s, s]),
              tf.tensor3d(Float32Array.from(c), [B, T, n]),
              tf.tensor2d(Float32Array.from(y0), [B, n]),
              s,
              reverse,
              m,
            ).dataSync(),
          );
          let err = 0;
          for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i]! - ref[i]!));
          expect(err).toBeLessThan(1e-5);
        });
      }
    }
  }

  it('the damped scan by cyclic reduction matches the host Thomas sweeps', () => {
    for (const [B, T, n] of [
      [1, 1, 1],
      [2, 2, 3],
      [3, 37, 2],
      [2, 300, 4],
    ] as const) {
      const rng = new Rng(B * 100 + T);
      const a = Float32Array.from(rng.uniformArray(B * T * n, -1.5, 1.5));
      const c = Float32Array.from(rng.normalArray(B * T * n));
      const lambda = Array.from({ length: B }, (_, b) => [0, 0.3, 4][b % 3]!);
      const want = new Float64Array(B * T * n);
      hostDampedScan(a, c, lambda, want, B, T, n);
      const got = tf.tidy(() =>
        dampedScanPcr(tf, tf.tensor3d(a, [B, T, n]), tf.tensor3d(c, [B, T, n]), lambda).dataSync(),
      );
      let err = 0;
      let scale = 1;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(got[i]! - want[i]!));
        scale = Math.max(scale, Math.abs(want[i]!));
      }
      expect(err / scale, `B=${B} T=${T} n=${n}`).toBeLessThan(1e-4);
    }
  });
});

describe('capTransitions as ops (engines without host data)', () => {
  it('matches the host loop', () => {
    for (const [B, T, n, s] of [
      [1, 1, 1, 1],
      [3, 20, 4, 1],
      [2, 9, 6, 3],
      [2, 5, 4, 4],
    ] as const) {
      const rng = new Rng(B * 10 + T + s);
      const a = Float32Array.from(rng.uniformArray(B * T * n * s, -2, 2));
      const caps = Array.from({ length: B }, (_, b) => [0.5, -1, 3][b % 3]!);
      const want = Float64Array.from(a);
      hostCapTransitions(a, want, B, T, s, caps);
      const got = tf.tidy(() => capTransitionsOps(tf, tf.tensor(a, [B, T, n / s, s, s]), s, caps).dataSync());
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
      expect(err, `B=${B} T=${T} n=${n} s=${s}`).toBeLessThan(1e-5);
    }
  });
});
