import { type Backend, Rng } from '@deerjs/core';

/** Seeded inputs of a diagonal scan ([B, T, n], |a| < `scale`), float32-exact, and an old iterate. */
export function diagonalScanData(B: number, T: number, n: number, seed: number, scale: number) {
  const rng = new Rng(seed);
  const round = (a: Float64Array) => a.map(Math.fround);
  return {
    A: round(Float64Array.from(rng.normalArray(B * T * n), (v) => scale * Math.tanh(v))),
    c: round(rng.normalArray(B * T * n)),
    y0: round(rng.normalArray(B * n)),
    old: round(rng.normalArray(B * T * n)),
  };
}

/** `be.scan` of those inputs (blocks of 1), read back; `dtype` as the backend computes. */
export async function runDiagonalScan(
  be: Backend,
  d: ReturnType<typeof diagonalScanData>,
  [B, T, n]: readonly [number, number, number],
  reverse: boolean,
  dtype: 'float32' | 'float64',
): Promise<ArrayLike<number>> {
  const A = be.tensor(d.A, [B, T, n, 1, 1], dtype);
  const c = be.tensor(d.c, [B, T, n], dtype);
  const y0 = be.tensor(d.y0, [B, n], dtype);
  try {
    const y = be.scan({ A, c, y0, blockSize: 1, reverse });
    const out = await be.read(y);
    be.dispose(y);
    return out;
  } finally {
    for (const t of [A, c, y0]) be.dispose(t);
  }
}
