import { type Backend, type DType, Rng, type Tensor } from '@deerjs/core';
import { median } from './stats.js';

/**
 * How close the diagonal scan comes to the memory floor, in bytes per second: the scan reads A and
 * c and writes y (three [B, T, n] arrays); an elementwise add moves the same three arrays; a copy
 * kernel (`maskTime` with every step kept, which backends answer with a plain copy: on WebGPU one
 * kernel reading one array and writing one, in vec4s) and a
 * buffer copy (`sliceTime` of the whole range: the device's copy command, no kernel — on a software
 * adapter a memcpy) each read one and write one. An ideal scan moves its bytes as fast as a copy.
 */
export interface Bandwidth {
  readonly shape: readonly [number, number, number];
  readonly scanMs: number;
  readonly addMs: number;
  readonly copyMs: number;
  readonly copyKernelMs: number;
  /** Bytes moved / time, GB/s (1e9 bytes). */
  readonly scanGBs: number;
  readonly addGBs: number;
  /** The buffer copy's. */
  readonly copyGBs: number;
  readonly copyKernelGBs: number;
  /** scanGBs / copyGBs (against the buffer copy, the stricter floor). */
  readonly ratio: number;
  /** scanGBs / copyKernelGBs (against a copy kernel). */
  readonly kernelRatio: number;
}

/** Median wall time of `op` until its result is on the host (a one-step read settles the queue). */
async function timed(backend: Backend, op: () => Tensor, repeats: number): Promise<number> {
  const settle = async (t: Tensor) => {
    const last = backend.timeStep(t, t.shape[1]! - 1);
    await backend.read(last);
    backend.dispose(last);
  };
  const samples: number[] = [];
  for (let k = 0; k <= repeats; k++) {
    const t0 = performance.now();
    const out = op();
    await settle(out);
    const ms = performance.now() - t0;
    backend.dispose(out);
    if (k > 0) samples.push(ms); // the first run compiles
  }
  return median(samples);
}

export async function measureBandwidth(
  backend: Backend,
  shape: readonly [number, number, number],
  dtype: DType,
  seed: number,
  repeats = 5,
): Promise<Bandwidth> {
  const [B, T, n] = shape;
  const rng = new Rng(seed);
  const size = B * T * n;
  // |a| < 1 keeps the scan bounded; the values do not change its cost.
  const A = backend.tensor(Float64Array.from(rng.normalArray(size), (v) => Math.tanh(v) * 0.9), [B, T, n, 1, 1], dtype);
  const c = backend.tensor(rng.normalArray(size), [B, T, n], dtype);
  const a2 = backend.tensor(rng.normalArray(size), [B, T, n], dtype);
  const y0 = backend.zeros([B, n], dtype);
  try {
    const scanMs = await timed(backend, () => backend.scan({ A, c, y0, blockSize: 1, reverse: false }), repeats);
    const addMs = await timed(backend, () => backend.add(a2, c), repeats);
    const copyMs = await timed(backend, () => backend.sliceTime(c, 0, T), repeats);
    const full = new Array<number>(B).fill(T);
    const copyKernelMs = await timed(backend, () => backend.maskTime(c, full), repeats);
    const array = size * (dtype === 'float64' ? 8 : 4);
    const gbs = (arrays: number, ms: number) => (arrays * array) / (ms * 1e6);
    const scanGBs = gbs(3, scanMs);
    const copyGBs = gbs(2, copyMs);
    const copyKernelGBs = gbs(2, copyKernelMs);
    return {
      shape: [B, T, n],
      scanMs,
      addMs,
      copyMs,
      copyKernelMs,
      scanGBs,
      addGBs: gbs(3, addMs),
      copyGBs,
      copyKernelGBs,
      ratio: scanGBs / copyGBs,
      kernelRatio: scanGBs / copyKernelGBs,
    };
  } finally {
    for (const t of [A, c, a2, y0]) backend.dispose(t);
  }
}
