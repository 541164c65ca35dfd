import { type Backend, type DType, type Tensor, UNIT_ROUNDOFF } from '../backend/types.js';
import { describeValue, DTypeError, InvalidArgumentError, NonFiniteError, ShapeError } from '../errors.js';
import { awaitAsync, driveAsync, type Solve } from './solve.js';

/** Taylor degree after scaling to ‖M‖ ≤ 1/2: truncation below the dtype's rounding. */
const TAYLOR_DEGREE: Readonly<Record<DType, number>> = { float64: 14, float32: 8 };

/** Jacobian-sized buffers `affineExponential` holds at its peak, its input included. */
export const EXPM_PEAK_BUFFERS = 5;

/** The backend methods the exponential uses (all backends have them). */
export type MatrixOps = Backend;

/**
 * The exact solution map of the piecewise-constant linear ODE dy/dt = M_t y / Δ_t + c_t on each
 * interval: (A_t, b_t) = (exp(M_t), φ1(M_t) c_t Δ_t) with φ1(M) = M⁻¹(e^M − I), for M_t given as
 * `Msum` · scale · h_t (so callers can pass sums of endpoint Jacobians). Only batched small matmuls:
 * scale by 2^−j, Horner for φ1(M), then D = e^M − I = M·φ1(M) and w = φ1(M)·c, then j squarings of
 * the affine map carried as (D, w) ↦ (2D + D², 2w + D·w). Carrying D = E − I instead of E keeps
 * each interval's relative accuracy however small its own ‖M‖ is next to the largest one (which
 * sets j): rounding grows like j·eps relative to D, not 2^j·eps. Temporaries are freed as they go
 * (peak: EXPM_PEAK_BUFFERS Jacobian-sized buffers).
 */
export async function affineExponential(
  backend: MatrixOps,
  Msum: Tensor,
  csum: Tensor,
  h: ArrayLike<number>,
  scale: number,
  blockSize: number,
): Promise<{ A: Tensor; b: Tensor }> {
  checkAffineExponential(Msum, csum, h, scale, blockSize);
  const { A, b } = await driveAsync(backend, affineExponentialSolve(backend, Msum, csum, h, scale, blockSize));
  return { A, b };
}

/** The public entry's arguments, checked: the solvers pass checked grids, a caller may not. */
function checkAffineExponential(Msum: Tensor, csum: Tensor, h: ArrayLike<number>, scale: number, s: number): void {
  if (!Number.isInteger(s) || s < 1) throw new InvalidArgumentError('affineExponential blockSize', 'an integer ≥ 1', describeValue(s));
  const [B, T, n] = csum.shape as [number, number, number];
  const m = Msum.shape;
  if (csum.shape.length !== 3) throw new ShapeError('affineExponential csum', '[B, T, n]', `[${csum.shape.join(', ')}]`);
  if (m.length !== 5 || m[0] !== B || m[1] !== T || m[3] !== s || m[4] !== s || m[2]! * s !== n) {
    throw new ShapeError('affineExponential Msum', `[${B}, ${T}, ${n / s}, ${s}, ${s}] (s = ${s} dividing n = ${n})`, `[${m.join(', ')}]`);
  }
  if (Msum.dtype !== csum.dtype) throw new DTypeError('affineExponential csum', Msum.dtype, csum.dtype);
  if (h.length !== T) throw new ShapeError('affineExponential h', `${T} steps`, `${h.length}`);
  for (let i = 0; i < T; i++) {
    if (!Number.isFinite(h[i])) throw new NonFiniteError('affineExponential h', i, Number(h[i]));
  }
  if (!Number.isFinite(scale)) throw new InvalidArgumentError('affineExponential scale', 'a finite number', describeValue(scale));
}

/**
 * @internal `affineExponential` as a step of a solve generator; also the norm bound of the largest
 * M (it set the scaling) and, with `estimateRounding`, each block's estimated rounding of e^M
 * ([B·T·n/s], empty otherwise).
 */
export function* affineExponentialSolve(
  backend: MatrixOps,
  Msum: Tensor,
  csum: Tensor,
  h: ArrayLike<number>,
  scale: number,
  blockSize: number,
  estimateRounding = false,
): Solve<{ A: Tensor; b: Tensor; norm: number; rounding: Float64Array }> {
  const s = blockSize;
  const K = TAYLOR_DEGREE[Msum.dtype];
  let hMax = 0;
  for (let i = 0; i < h.length; i++) hMax = Math.max(hMax, Math.abs(h[i]!));
  // ‖M‖_∞ ≤ s · max|entry| per block.
  const norm = (yield* awaitAsync(() => backend.maxAbs(Msum))) * Math.abs(scale) * hMax * s;
  // A non-finite Jacobian gives a non-finite map, which the Newton update then flags; squaring it
  // would never end. A finite norm needs at most ~1025 halvings (a cap of 60 left ‖M‖ ≫ 1/2 on
  // intervals of 1e30, and the series overflowed); 2^−j stays a nonzero double up to j = 1074.
  const j = Number.isFinite(norm) && norm > 0.5 ? Math.min(1074, Math.ceil(Math.log2(norm / 0.5))) : 0;
  const eps = UNIT_ROUNDOFF[Msum.dtype];
  const sub = scale * 2 ** -j;
  const ones = new Float64Array(h.length).fill(1);
  const live = new Set<Tensor>();
  const keep = <T extends Tensor>(t: T) => {
    live.add(t);
    return t;
  };
  const drop = (...ts: Tensor[]) => {
    for (const t of ts) {
      live.delete(t);
      backend.dispose(t);
    }
  };
  /** f(old) then drop old. */
  const step = (old: Tensor, f: (t: Tensor) => Tensor) => {
    const next = keep(f(old));
    drop(old);
    return next;
  };
  try {
    const M = keep(backend.scaleTime(Msum, h, sub));
    const c = keep(backend.scaleTime(csum, h, sub));
    // φ1(M) = I + M/2 (I + M/3 (… (I + M/(K + 1)))).
    const last = keep(backend.scaleTime(M, ones, 1 / (K + 1)));
    let P = keep(backend.addIdentity(last, s, 1));
    drop(last);
    for (let k = K; k >= 2; k--) {
      const scaled = step(keep(backend.blockMatmul(M, P, s)), (t) => backend.scaleTime(t, ones, 1 / k));
      const next = keep(backend.addIdentity(scaled, s, 1));
      drop(scaled, P);
      P = next;
    }
    let D = keep(backend.blockMatmul(M, P, s));
    let w = keep(backend.blockMatvec(P, c, s));
    drop(M, P, c);
    // Estimated rounding of each block of e^M (its largest entry), to first order: each level adds
    // about eps·|D|, and a squaring E ↦ E² carries an error Δ on as Δ·|E| + |E|·Δ, entry by entry,
    // so errors grow through a rotation's squarings (|E| ≈ 1) and die out through a decay's, and a
    // stiff entry does not make a gentle one of its block look rounded. The largest on the way is
    // kept, not the last: an error that grew large enough to shrink E itself (a float32 rotation
    // over 1e9 rad rounds to 0) would otherwise pass for a decay. It reads D at every level, so it
    // runs only on request (a converged ODE solve's last check). An estimate, not a bound.
    const blocks = estimateRounding ? Msum.shape.slice(0, 3).reduce((a, b) => a * b, 1) : 0;
    const ss = s * s;
    let err = new Float64Array(blocks * ss);
    let next = new Float64Array(blocks * ss);
    const absE = new Float64Array(blocks * ss);
    const worst = new Float64Array(blocks);
    let first = true;
    function* level(D: Tensor): Solve<void> {
      const d = yield* awaitAsync(() => backend.read(D));
      for (let k = 0; k < blocks; k++) {
        const o = k * ss;
        let most = 0;
        for (let r = 0; r < s; r++) {
          for (let c = 0; c < s; c++) {
            let carried = 0;
            if (!first) for (let q = 0; q < s; q++) carried += err[o + r * s + q]! * absE[o + q * s + c]! + absE[o + r * s + q]! * err[o + q * s + c]!;
            const v = carried + eps * Math.abs(d[o + r * s + c]!);
            next[o + r * s + c] = v;
            // NaN (a map that overflowed) is not vouched for either.
            most = Number.isNaN(v) ? Number.POSITIVE_INFINITY : Math.max(most, v);
          }
        }
        worst[k] = Math.max(worst[k]!, most);
        for (let r = 0; r < s; r++) for (let c = 0; c < s; c++) absE[o + r * s + c] = Math.abs((r === c ? 1 : 0) + d[o + r * s + c]!);
      }
      [err, next] = [next, err];
      first = false;
    }
    if (estimateRounding) yield* level(D);
    for (let q = 0; q < j; q++) {
      const Dw = keep(backend.blockMatvec(D, w, s));
      const w2 = keep(backend.scaleTime(w, ones, 2));
      const wNext = keep(backend.add(w2, Dw));
      drop(Dw, w2, w);
      w = wNext;
      const DD = keep(backend.blockMatmul(D, D, s));
      const D2 = keep(backend.scaleTime(D, ones, 2));
      drop(D);
      const DNext = keep(backend.add(D2, DD));
      drop(DD, D2);
      D = DNext;
      if (estimateRounding) yield* level(D);
    }
    const A = backend.addIdentity(D, s, 1);
    drop(D);
    live.delete(w);
    return { A, b: w, norm, rounding: worst };
  } finally {
    for (const t of live) backend.dispose(t);
  }
}
