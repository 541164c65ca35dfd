import type { Backend, Tensor } from '@deerjs/core';

export type Pooling = 'mean' | 'last';

/**
 * Pool the first `features` entries of a layer output [B, T, S] over time, on the host: [B, features].
 * 'last' reads one time step; 'mean' reads the whole output (the backend has no per-batch reduction).
 */
export async function poolForward(
  backend: Backend,
  out: Tensor,
  features: number,
  pooling: Pooling,
): Promise<Float64Array> {
  const [B, T, S] = out.shape as [number, number, number];
  const pooled = new Float64Array(B * features);
  if (pooling === 'last') {
    const last = backend.timeStep(out, T - 1);
    try {
      const h = await backend.read(last);
      for (let b = 0; b < B; b++) for (let f = 0; f < features; f++) pooled[b * features + f] = h[b * S + f]!;
    } finally {
      backend.dispose(last);
    }
    return pooled;
  }
  const y = await backend.read(out);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const base = (b * T + t) * S;
      for (let f = 0; f < features; f++) pooled[b * features + f]! += y[base + f]!;
    }
  }
  for (let i = 0; i < pooled.length; i++) pooled[i]! /= T;
  return pooled;
}

/** ∂L/∂out [B, T, S] on the backend from ∂L/∂pooled [B, features]; zero beyond `features`. */
export function poolBackward(
  backend: Backend,
  dPooled: Float64Array,
  out: Tensor,
  features: number,
  pooling: Pooling,
): Tensor {
  const [B, T, S] = out.shape as [number, number, number];
  const scale = pooling === 'mean' ? 1 / T : 1;
  const d = new Float64Array(B * S);
  for (let b = 0; b < B; b++)
    for (let f = 0; f < features; f++) d[b * S + f] = dPooled[b * features + f]! * scale;
  if (pooling === 'mean') {
    const step = backend.tensor(d, [B, S], out.dtype);
    try {
      return backend.broadcastTime(step, T);
    } finally {
      backend.dispose(step);
    }
  }
  const last = backend.tensor(d, [B, 1, S], out.dtype);
  if (T === 1) return last;
  const before = backend.zeros([B, T - 1, S], out.dtype);
  try {
    return backend.concatTime([before, last]);
  } finally {
    backend.dispose(before);
    backend.dispose(last);
  }
}
