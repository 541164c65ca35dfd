import { ShapeError } from '../errors.js';
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

/** Shapes and λ of a damped scan, checked the same way by every backend. */
export function checkDampedScan(
  args: { readonly lambda: ArrayLike<number> },
  aShape: readonly number[],
  cShape: readonly number[],
): void {
  const [B, T, n] = cShape;
  const want = `[${B}, ${T}, ${n}, 1, 1] (diagonal transitions)`;
  if (aShape.length !== 5 || aShape[0] !== B || aShape[1] !== T || aShape[2] !== n || aShape[3] !== 1 || aShape[4] !== 1) {
    throw new ShapeError('dampedScan A', want, `[${aShape.join(', ')}]`);
  }
  if (args.lambda.length !== B) throw new ShapeError('dampedScan lambda', `${B} values`, `${args.lambda.length}`);
  for (let b = 0; b < B!; b++) {
    const l = args.lambda[b]!;
    if (!(l >= 0) || !Number.isFinite(l)) throw new ShapeError(`dampedScan lambda[${b}]`, 'a finite λ ≥ 0', String(l));
  }
}

/**
 * The damped scan with diagonal transitions: for every (b, i) the symmetric tridiagonal system of
 * min Σ_t (δ_t − a_t δ_{t−1} − c_t)² + λ_b δ_t², solved by the Thomas algorithm in float64 (the
 * system is symmetric positive definite, so no pivoting is needed). A is [B, T, n], c and out
 * [B, T, n].
 */
export function hostDampedScan(
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
