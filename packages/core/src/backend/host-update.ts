import type { NewtonUpdateOptions, RowUpdate, TypedArray } from './types.js';

/**
 * The Newton update on host arrays, for backends that keep data in typed arrays: sanitize `raw`
 * into `out` (NaN/±Inf → 0, |v| ≥ clip → ±clip) and measure the change against `old`, per batch
 * row (`steps` = the length of axis 1). Rows held by `opts.active` copy `old`. Returns max |Δ| and
 * the per-row measures.
 */
export function hostNewtonUpdate(
  raw: ArrayLike<number>,
  old: ArrayLike<number>,
  out: TypedArray,
  batch: number,
  steps: number,
  opts: NewtonUpdateOptions,
): { maxAbsDiff: number; rows: RowUpdate } {
  const rowLen = batch > 0 ? out.length / batch : 0;
  const inner = rowLen / Math.max(1, steps);
  const rows: RowUpdate = {
    maxScaledDiff: new Float64Array(batch),
    replaced: new Uint32Array(batch),
    clipped: new Uint32Array(batch),
    settled: new Uint32Array(batch),
  };
  const { atol, rtol, clip } = opts;
  const delta = opts.delta === true;
  // Judged as stored: a finite float64 sum past float32's range had been stored as ±Inf unflagged.
  const f32 = out instanceof Float32Array;
  let maxAbs = 0;
  for (let b = 0; b < batch; b++) {
    const from = b * rowLen;
    const to = from + rowLen;
    if (opts.active && !opts.active[b]) {
      for (let i = from; i < to; i++) out[i] = old[i]!;
      continue;
    }
    let scaled = 0;
    let replaced = 0;
    let clipped = 0;
    let firstBad = to;
    for (let i = from; i < to; i++) {
      // With delta, old + δ is exact before the store rounds it: the same as an add in that dtype.
      let v = delta ? old[i]! + raw[i]! : raw[i]!;
      if (f32) v = Math.fround(v);
      if (!Number.isFinite(v)) {
        v = 0;
        replaced++;
        if (firstBad === to) firstBad = i;
      } else if (v >= clip) {
        v = clip;
        clipped++;
        if (firstBad === to) firstBad = i;
      } else if (v <= -clip) {
        v = -clip;
        clipped++;
        if (firstBad === to) firstBad = i;
      }
      out[i] = v;
      // Measured on the stored value, so float32 rounding of the iterate is included.
      const stored = out[i]!;
      const d = Math.abs(stored - old[i]!);
      if (!(d <= maxAbs)) maxAbs = d;
      if (d > 0) {
        const sc = d / (atol + rtol * Math.abs(stored));
        if (!(sc <= scaled)) scaled = sc;
        if (!(sc <= 1) && firstBad === to) firstBad = i;
      }
    }
    rows.settled[b] = firstBad === to ? steps : Math.floor((firstBad - from) / inner);
    rows.maxScaledDiff[b] = scaled;
    rows.replaced[b] = replaced;
    rows.clipped[b] = clipped;
  }
  return { maxAbsDiff: maxAbs, rows };
}

/** max |v| over host values, NaN if any is NaN (`Backend.maxAbs` for backends that keep data on the host). */
export function hostMaxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]!);
    if (Number.isNaN(v)) return Number.NaN;
    if (v > m) m = v;
  }
  return m;
}

/** The first NaN/±Inf of host values and its index, or null (`Backend.findNonFinite` on the host). */
export function hostFindNonFinite(values: ArrayLike<number>): { index: number; value: number } | null {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return { index: i, value: values[i]! };
  return null;
}

/**
 * The damped scan on host arrays, in float64: A is [B, T, n/s, s, s] (s = 1: diagonal, [B, T, n]),
 * c and out [B, T, n]. The system is symmetric positive definite, so neither solver pivots.
 */
export function hostDampedScan(
  A: ArrayLike<number>,
  c: ArrayLike<number>,
  lambda: ArrayLike<number>,
  out: TypedArray,
  B: number,
  T: number,
  n: number,
  s = 1,
): void {
  if (s === 1) diagonalDampedScan(A, c, lambda, out, B, T, n);
  else blockDampedScan(A, c, lambda, out, B, T, n, s);
}

/**
 * Diagonal transitions: for every (b, i) the tridiagonal system of
 * min Σ_t (δ_t − a_t δ_{t−1} − c_t)² + λ_b δ_t², by the Thomas algorithm.
 */
function diagonalDampedScan(
  A: ArrayLike<number>,
  c: ArrayLike<number>,
  lambda: ArrayLike<number>,
  out: TypedArray,
  B: number,
  T: number,
  n: number,
): void {
  const up = new Float64Array(T);
  const rhs = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    const lam = lambda[b]!;
    for (let i = 0; i < n; i++) {
      const at = (t: number) => (t < T ? A[(b * T + t) * n + i]! : 0);
      const ct = (t: number) => (t < T ? c[(b * T + t) * n + i]! : 0);
      for (let t = 0; t < T; t++) {
        const next = at(t + 1);
        const l = t === 0 ? 0 : -at(t);
        const d = 1 + lam + next * next;
        const u = -next;
        const g = ct(t) - next * ct(t + 1);
        const denom = t === 0 ? d : d - l * up[t - 1]!;
        up[t] = u / denom;
        rhs[t] = (g - (t === 0 ? 0 : l * rhs[t - 1]!)) / denom;
      }
      let next = 0;
      for (let t = T - 1; t >= 0; t--) {
        next = rhs[t]! - up[t]! * next;
        out[(b * T + t) * n + i] = next;
      }
    }
  }
}

/**
 * s × s blocks: for every (b, block k) the block-tridiagonal system of
 * min Σ_t ‖δ_t − A_t δ_{t−1} − c_t‖² + λ_b ‖δ_t‖², whose normal equations are
 * S_t δ_t − A_t δ_{t−1} − A_{t+1}ᵀ δ_{t+1} = c_t − A_{t+1}ᵀ c_{t+1} with S_t = (1 + λ) I + A_{t+1}ᵀ A_{t+1}
 * (A_T = 0): block Thomas (block LDLᵀ), each pivot block by its Cholesky factor. The forward sweep
 * keeps the factors and right-hand sides of all T steps; the backward sweep solves with them.
 */
function blockDampedScan(
  A: ArrayLike<number>,
  c: ArrayLike<number>,
  lambda: ArrayLike<number>,
  out: TypedArray,
  B: number,
  T: number,
  n: number,
  s: number,
): void {
  const nb = n / s;
  const ss = s * s;
  const chol = new Float64Array(T * ss); // lower Cholesky factor of each step's pivot block
  const rhs = new Float64Array(T * s);
  const Y = new Float64Array(ss); // C_{t−1}⁻¹ A_tᵀ, column-major: column j at j·s
  const z = new Float64Array(s);
  const v = new Float64Array(s);
  const next = new Float64Array(s); // δ_{t+1} in float64, whatever out's type
  for (let b = 0; b < B; b++) {
    const lam = lambda[b]!;
    for (let k = 0; k < nb; k++) {
      // Block k of A_t starts at blockAt(t); entries of c_t and δ_t for this block at vecAt(t).
      const blockAt = (t: number) => ((b * T + t) * nb + k) * ss;
      const vecAt = (t: number) => (b * T + t) * n + k * s;
      for (let t = 0; t < T; t++) {
        const S = chol.subarray(t * ss, (t + 1) * ss);
        const r = rhs.subarray(t * s, (t + 1) * s);
        // S = (1 + λ) I + A_{t+1}ᵀ A_{t+1} (lower triangle), r = c_t − A_{t+1}ᵀ c_{t+1}.
        S.fill(0);
        const ct = vecAt(t);
        for (let i = 0; i < s; i++) {
          S[i * s + i] = 1 + lam;
          r[i] = c[ct + i]!;
        }
        if (t + 1 < T) {
          const a1 = blockAt(t + 1);
          const c1 = vecAt(t + 1);
          for (let m = 0; m < s; m++) {
            const row = a1 + m * s;
            const cm = c[c1 + m]!;
            for (let i = 0; i < s; i++) {
              const ami = A[row + i]!;
              r[i]! -= ami * cm;
              for (let j = 0; j <= i; j++) S[i * s + j]! += ami * A[row + j]!;
            }
          }
        }
        if (t > 0) {
          // Eliminate δ_{t−1}: S −= A_t S_{t−1}⁻¹ A_tᵀ = YᵀY, r += A_t S_{t−1}⁻¹ r_{t−1} = Yᵀ z.
          const C = chol.subarray((t - 1) * ss, t * ss);
          const a0 = blockAt(t);
          for (let col = 0; col < s; col++) forwardSolve(C, A, a0 + col * s, Y, col * s, s);
          forwardSolve(C, rhs, (t - 1) * s, z, 0, s);
          for (let i = 0; i < s; i++) {
            const yi = i * s;
            for (let j = 0; j <= i; j++) {
              const yj = j * s;
              let sum = 0;
              for (let m = 0; m < s; m++) sum += Y[yi + m]! * Y[yj + m]!;
              S[i * s + j]! -= sum;
            }
            let g = 0;
            for (let m = 0; m < s; m++) g += Y[yi + m]! * z[m]!;
            r[i]! += g;
          }
        }
        cholesky(S, s);
      }
      // Backward: δ_t = S_t⁻¹ (r_t + A_{t+1}ᵀ δ_{t+1}).
      for (let t = T - 1; t >= 0; t--) {
        for (let i = 0; i < s; i++) v[i] = rhs[t * s + i]!;
        if (t + 1 < T) {
          const a1 = blockAt(t + 1);
          for (let m = 0; m < s; m++) {
            const dm = next[m]!;
            for (let i = 0; i < s; i++) v[i]! += A[a1 + m * s + i]! * dm;
          }
        }
        const C = chol.subarray(t * ss, (t + 1) * ss);
        forwardSolve(C, v, 0, z, 0, s);
        for (let i = s - 1; i >= 0; i--) {
          let sum = z[i]!;
          for (let m = i + 1; m < s; m++) sum -= C[m * s + i]! * next[m]!;
          next[i] = sum / C[i * s + i]!;
        }
        const o = vecAt(t);
        for (let i = 0; i < s; i++) out[o + i] = next[i]!;
      }
    }
  }
}

/** In place: the lower triangle of the symmetric positive definite M (s × s) becomes its Cholesky factor. */
function cholesky(M: Float64Array, s: number): void {
  for (let j = 0; j < s; j++) {
    let d = M[j * s + j]!;
    for (let m = 0; m < j; m++) d -= M[j * s + m]! * M[j * s + m]!;
    const root = Math.sqrt(d);
    M[j * s + j] = root;
    for (let i = j + 1; i < s; i++) {
      let sum = M[i * s + j]!;
      for (let m = 0; m < j; m++) sum -= M[i * s + m]! * M[j * s + m]!;
      M[i * s + j] = sum / root;
    }
  }
}

/** out[o..o+s) = C⁻¹ r[from..from+s) for the lower-triangular C (s × s). */
function forwardSolve(C: Float64Array, r: ArrayLike<number>, from: number, out: Float64Array, o: number, s: number): void {
  for (let i = 0; i < s; i++) {
    let sum = r[from + i]!;
    for (let m = 0; m < i; m++) sum -= C[i * s + m]! * out[o + m]!;
    out[o + i] = sum / C[i * s + i]!;
  }
}

/**
 * capTransitions on host data: `out` (a copy of a, [B, T, ...] with rows of s entries) has each
 * (b, t)'s blocks scaled by caps[b] / their largest absolute row sum where that passes caps[b] ≥ 0.
 */
export function hostCapTransitions(
  a: ArrayLike<number>,
  out: TypedArray,
  B: number,
  T: number,
  s: number,
  caps: ArrayLike<number>,
): void {
  const per = a.length / (B * T);
  for (let b = 0; b < B; b++) {
    const cap = caps[b]!;
    if (cap < 0) continue;
    for (let t = 0; t < T; t++) {
      const base = (b * T + t) * per;
      let norm = 0;
      for (let row = base; row < base + per; row += s) {
        let sum = 0;
        for (let j = 0; j < s; j++) sum += Math.abs(a[row + j]!);
        if (sum > norm) norm = sum;
      }
      if (!(norm > cap)) continue;
      const f = cap / norm;
      for (let i = base; i < base + per; i++) out[i] = a[i]! * f;
    }
  }
}
