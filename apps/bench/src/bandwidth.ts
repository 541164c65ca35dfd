import { type Backend, type DType, Rng, type Tensor } from '@deerjs/core';
import { median } from './stats.js';
import { deviceClock } from './timing.js';

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
  /**
   * The same from device time (timestamp queries: the backend's `deviceTimeMs`), where the backend
   * measures it: wall time also holds the submission and the settling read, which on a GPU take
   * longer than moving the bytes. The buffer copy runs no compute pass, so it has no device time.
   */
  readonly device?: {
    readonly scanMs: number;
    readonly addMs: number;
    readonly copyKernelMs: number;
    readonly scanGBs: number;
    readonly addGBs: number;
    readonly copyKernelGBs: number;
    /** scanGBs / copyKernelGBs. */
    readonly kernelRatio: number;
  };
}

type DeviceClock = NonNullable<ReturnType<typeof deviceClock>>;

/**
 * Median wall time of `op` until its result is on the host (a one-step read settles the queue), and
 * its median device time where `clock` measures it.
 */
async function timed(
  backend: Backend,
  op: () => Tensor,
  repeats: number,
  clock: DeviceClock | undefined,
): Promise<{ wall: number; device: number | undefined }> {
  const settle = async (t: Tensor) => {
    const last = backend.timeStep(t, t.shape[1]! - 1);
    await backend.read(last);
    backend.dispose(last);
  };
  const wall: number[] = [];
  const device: number[] = [];
  for (let k = 0; k <= repeats; k++) {
    const d0 = clock ? await clock() : undefined;
    const t0 = performance.now();
    const out = op();
    await settle(out);
    const ms = performance.now() - t0;
    const d1 = clock ? await clock() : undefined;
    backend.dispose(out);
    if (k === 0) continue; // the first run compiles
    wall.push(ms);
    if (d0 !== undefined && d1 !== undefined) device.push(d1 - d0);
  }
  return { wall: median(wall), device: device.length === repeats ? median(device) : undefined };
}

/**
 * The bandwidth line's shape: B = 16 rows of T steps of one state — 1e5 with `quick`, else 1e6, or
 * 4e6 on a backend with a GPU's lanes (`parallelism` ≥ 4096, which no CPU states), where 1e6
 * (64 MB an array) is about an H200's L2 and moves in tens of microseconds.
 */
export function bandwidthShape(backend: Backend, quick: boolean): [number, number, number] {
  const gpu = (backend.capabilities.parallelism ?? 0) >= 4096;
  return [16, quick ? 100_000 : gpu ? 4_000_000 : 1_000_000, 1];
}

/** What measureBandwidth holds at once: A, c, a second operand, y0 and two outputs, about six arrays of the shape. */
export function bandwidthBytes(shape: readonly [number, number, number], dtype: DType): number {
  return 6 * shape[0] * shape[1] * shape[2] * (dtype === 'float64' ? 8 : 4);
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
  const clock = deviceClock(backend);
  try {
    const scan = await timed(backend, () => backend.scan({ A, c, y0, blockSize: 1, reverse: false }), repeats, clock);
    const add = await timed(backend, () => backend.add(a2, c), repeats, clock);
    const copy = await timed(backend, () => backend.sliceTime(c, 0, T), repeats, clock);
    const full = new Array<number>(B).fill(T);
    const copyKernel = await timed(backend, () => backend.maskTime(c, full), repeats, clock);
    const array = size * (dtype === 'float64' ? 8 : 4);
    const gbs = (arrays: number, ms: number) => (arrays * array) / (ms * 1e6);
    const scanGBs = gbs(3, scan.wall);
    const copyGBs = gbs(2, copy.wall);
    const copyKernelGBs = gbs(2, copyKernel.wall);
    const device =
      scan.device !== undefined && add.device !== undefined && copyKernel.device !== undefined && copyKernel.device > 0
        ? {
            scanMs: scan.device,
            addMs: add.device,
            copyKernelMs: copyKernel.device,
            scanGBs: gbs(3, scan.device),
            addGBs: gbs(3, add.device),
            copyKernelGBs: gbs(2, copyKernel.device),
            kernelRatio: gbs(3, scan.device) / gbs(2, copyKernel.device),
          }
        : undefined;
    return {
      shape: [B, T, n],
      scanMs: scan.wall,
      addMs: add.wall,
      copyMs: copy.wall,
      copyKernelMs: copyKernel.wall,
      scanGBs,
      addGBs: gbs(3, add.wall),
      copyGBs,
      copyKernelGBs,
      ratio: scanGBs / copyGBs,
      kernelRatio: scanGBs / copyKernelGBs,
      ...(device ? { device } : {}),
    };
  } finally {
    for (const t of [A, c, a2, y0]) backend.dispose(t);
  }
}
