import type { Backend, DType, Tensor } from '../backend/types.js';

/** Taylor degree after scaling to ‖M‖ ≤ 1/2: truncation below the dtype's rounding. */
const TAYLOR_DEGREE: Readonly<Record<DType, number>> = { float64: 14, float32: 8 };

/** The backend methods the exponential uses (all backends have them). */
export type MatrixOps = Backend;

/**
 * The exact solution map of the piecewise-constant linear ODE dy/dt = M_t y / Δ_t + c_t on each
 * interval: (A_t, b_t) = (exp(M_t), φ1(M_t) c_t Δ_t) with φ1(M) = M⁻¹(e^M − I), for M_t given as
 * `Msum` · scale · h_t (so callers can pass sums of endpoint Jacobians). Only batched small matmuls:
 * scaling by 2^−j, Taylor/Horner for e^M and φ1(M)·c, then j squarings of the affine map
 * (E, w) ↦ (E², E·w + w) — the same composition the scan uses.
 */
export async function affineExponential(
  backend: MatrixOps,
  Msum: Tensor,
  csum: Tensor,
  h: ArrayLike<number>,
  scale: number,
  blockSize: number,
): Promise<{ A: Tensor; b: Tensor }> {
  const s = blockSize;
  const K = TAYLOR_DEGREE[Msum.dtype];
  let hMax = 0;
  for (let i = 0; i < h.length; i++) hMax = Math.max(hMax, Math.abs(h[i]!));
  // ‖M‖_∞ ≤ s · max|entry| per block.
  const norm = (await backend.maxAbs(Msum)) * Math.abs(scale) * hMax * s;
  // A non-finite Jacobian gives a non-finite map, which the Newton update then replaces by zeros;
  // squaring it would never end. Past 2^60 scaling no float matters anyway.
  const j = Number.isFinite(norm) && norm > 0.5 ? Math.min(60, Math.ceil(Math.log2(norm / 0.5))) : 0;
  const sub = scale / 2 ** j;
  const ones = new Float64Array(h.length).fill(1);
  const temps: Tensor[] = [];
  const tmp = <T extends Tensor>(t: T) => {
    temps.push(t);
    return t;
  };
  let E: Tensor | undefined;
  let w: Tensor | undefined;
  /** Replace the tensor held in a slot, disposing the old one. */
  const swap = (old: Tensor | undefined, next: Tensor) => {
    if (old) backend.dispose(old);
    return next;
  };
  try {
    const M = tmp(backend.scaleTime(Msum, h, sub));
    const c = tmp(backend.scaleTime(csum, h, sub));
    // e^M = I + M(I + M/2(I + … (I + M/K))).
    E = backend.addIdentity(tmp(backend.scaleTime(M, ones, 1 / K)), s, 1);
    for (let k = K - 1; k >= 1; k--) {
      const MP = tmp(backend.blockMatmul(M, E, s));
      E = swap(E, backend.addIdentity(tmp(backend.scaleTime(MP, ones, 1 / k)), s, 1));
    }
    // φ1(M)c = c + M/2(c + M/3(c + … (c + M/K c))).
    w = backend.add(c, tmp(backend.scaleTime(tmp(backend.blockMatvec(M, c, s)), ones, 1 / K)));
    for (let k = K - 1; k >= 2; k--) {
      w = swap(w, backend.add(c, tmp(backend.scaleTime(tmp(backend.blockMatvec(M, w, s)), ones, 1 / k))));
    }
    for (let q = 0; q < j; q++) {
      w = swap(w, backend.add(tmp(backend.blockMatvec(E, w, s)), w));
      E = swap(E, backend.blockMatmul(E, E, s));
    }
    return { A: E, b: w };
  } catch (err) {
    if (E) backend.dispose(E);
    if (w) backend.dispose(w);
    throw err;
  } finally {
    for (const t of temps) backend.dispose(t);
  }
}
