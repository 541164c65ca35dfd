import { type Backend, type DType, type Tensor, UNIT_ROUNDOFF } from '../backend/types.js';
import { describeValue, DTypeError, InvalidArgumentError, NonFiniteError, ShapeError } from '../errors.js';
import { awaitAsync, driveAsync, type Solve } from './solve.js';

/** Taylor degree after scaling to ‖M‖ ≤ 1/2: truncation below the dtype's rounding. */
const TAYLOR_DEGREE: Readonly<Record<DType, number>> = { float64: 14, float32: 8 };

/**
 * The most halvings one scaling may take for all intervals: beyond log2(eps / smallest normal), an
 * interval whose ‖M‖ is just above eps (still not negligible next to I) would scale below the
 * normal range (float32: 2^−102 · 1e-7 ≈ 1e-38) and lose its digits, or round to 0.
 */
const SAFE_HALVINGS: Readonly<Record<DType, number>> = {
  float64: Math.floor(Math.log2(2 ** -53 / 2 ** -1022)),
  float32: Math.floor(Math.log2(2 ** -24 / 2 ** -126)),
};

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
  const peak = yield* awaitAsync(() => backend.maxAbs(Msum));
  const norm = peak * Math.abs(scale) * hMax * s;
  // Its log2 from the factors': the product itself overflows where each factor is finite (a rate
  // of 2 over an interval of 1e308), and ∞ had read as "no scaling needed" or, through
  // log2(norm / 0.5), as 1074 halvings of a factor that then underflowed to 0: every map the
  // identity, and a solve that had not moved was reported converged.
  const log2Norm = Math.log2(peak) + Math.log2(Math.abs(scale)) + Math.log2(hMax) + Math.log2(s);
  // A non-finite Jacobian gives a non-finite map, which the Newton update then flags; squaring it
  // would never end. A finite norm needs at most ~1026 halvings (a cap of 60 left ‖M‖ ≫ 1/2 on
  // intervals of 1e30, and the series overflowed); 2^−j stays a nonzero double up to j = 1074.
  const halvings = (log2: number) => (log2 > -1 ? Math.min(1074, Math.ceil(log2 + 1)) : 0);
  let j = Number.isFinite(peak) ? halvings(log2Norm) : 0;
  const eps = UNIT_ROUNDOFF[Msum.dtype];
  const T = h.length;
  // Halvings per interval: all j where one scaling keeps every interval's M that matters (‖M‖ ≥
  // eps next to I) in the dtype's normal range. Past that (intervals of 1e-3 beside one of 1e300:
  // j ≈ 1000, and a float32 M of 1e-3 · 2^−1000 is 0) each interval is scaled by its own norm,
  // read from Msum, and takes only its own squarings (the others wait, masked).
  let own: Int32Array | undefined;
  if (j > SAFE_HALVINGS[Msum.dtype]) {
    const m = yield* awaitAsync(() => backend.read(Msum));
    const per = m.length / (Msum.shape[0]! * T);
    const peaks = new Float64Array(T);
    for (let b = 0; b < Msum.shape[0]!; b++)
      for (let t = 0; t < T; t++) {
        const o = (b * T + t) * per;
        for (let e = 0; e < per; e++) peaks[t] = Math.max(peaks[t]!, Math.abs(m[o + e]!));
      }
    own = Int32Array.from(peaks, (p, t) => halvings(Math.log2(p) + Math.log2(Math.abs(scale)) + Math.log2(Math.abs(h[t]!)) + Math.log2(s)));
    j = own.reduce((a, b) => Math.max(a, b), 0);
  }
  // Each interval's factor h_t · scale · 2^−j_t, with 2^−j_t applied in two halves so that neither
  // h_t · scale (huge h) nor scale · 2^−j (large j) leaves the doubles on the way.
  const factors = Float64Array.from(h, (ht, t) => {
    const jt = own ? own[t]! : j;
    const half = Math.floor(jt / 2);
    return ht * 2 ** -half * scale * 2 ** -(jt - half);
  });
  /**
   * Level q squares the intervals that need j − q squarings or more; undefined where that is all of
   * them (always without `own`), so the level takes the unmasked three ops.
   */
  const squaring = (q: number) => {
    if (!own) return undefined;
    const mask = Float64Array.from(own, (jt) => (jt >= j - q ? 1 : 0));
    return mask.every((v) => v === 1) ? undefined : mask;
  };
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
    const M = keep(backend.scaleTime(Msum, factors, 1));
    const c = keep(backend.scaleTime(csum, factors, 1));
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
    const nb = Msum.shape[2]!;
    function* level(D: Tensor, mask?: Float64Array): Solve<void> {
      const d = yield* awaitAsync(() => backend.read(D));
      for (let k = 0; k < blocks; k++) {
        const o = k * ss;
        // A block whose interval waits at this level is unchanged: so is its error.
        if (mask && mask[Math.floor(k / nb) % T] === 0) {
          for (let e = 0; e < ss; e++) next[o + e] = err[o + e]!;
          continue;
        }
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
    // A squaring is (D, w) ↦ (D·(D + 2I), (D + 2I)·w) = (2D + D², 2w + D·w): three ops where the
    // sums had taken six (on a GPU each a dispatch; 1024 squarings for an interval of 1e308). The
    // rounding is of the same order (D + 2I rounds D's entries by about eps·2, each then times |D|).
    for (let q = 0; q < j; q++) {
      const mask = squaring(q);
      if (mask) {
        // (D, w) ↦ (D, w) + mask_t · (D·(D + I), (D + I)·w): only the intervals whose turn it is.
        const E = keep(backend.addIdentity(D, s, 1));
        const wStep = step(keep(backend.blockMatvec(E, w, s)), (t) => backend.scaleTime(t, mask, 1));
        const wNext = keep(backend.add(w, wStep));
        drop(wStep, w);
        w = wNext;
        const DStep = step(keep(backend.blockMatmul(D, E, s)), (t) => backend.scaleTime(t, mask, 1));
        drop(E);
        const DNext = keep(backend.add(D, DStep));
        drop(DStep, D);
        D = DNext;
      } else {
        const E = keep(backend.addIdentity(D, s, 2));
        const wNext = keep(backend.blockMatvec(E, w, s));
        drop(w);
        w = wNext;
        const DNext = keep(backend.blockMatmul(D, E, s));
        drop(E, D);
        D = DNext;
      }
      if (estimateRounding) yield* level(D, mask);
    }
    const A = backend.addIdentity(D, s, 1);
    drop(D);
    live.delete(w);
    return { A, b: w, norm, rounding: worst };
  } finally {
    for (const t of live) backend.dispose(t);
  }
}
