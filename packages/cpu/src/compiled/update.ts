import type { NewtonUpdateOptions, RowUpdate, TypedArray } from '@deerjs/core';
import { type Call, jobFromFunction, sharedArray, type ThreadPool } from './threads.js';

/**
 * core's `hostNewtonUpdate` split over threads by contiguous ranges of elements. Each range
 * reports its own measures, merged here in range order into exactly what one pass over all
 * elements gives (the same stored values, maxima, counts and settled fronts), NaNs included.
 */

/** Fewest elements an update is split over threads for. */
export const UPDATE_PARALLEL_MIN = 1 << 16;

/** Per range: max |Δ|, whether it met a NaN, then per row it touches the ROW fields below. */
const HEAD = 2;
const ROW = 6;
const [SCALED, SCALED_NAN, SCALED_ANY, REPLACED, CLIPPED, FIRST_BAD] = [0, 1, 2, 3, 4, 5];

/**
 * The update of elements [e0, e1) (hostNewtonUpdate's loop, for a range). Self-contained: it runs
 * in the workers from its source. res: [max |Δ|, NaN met, then per row b from the range's first,
 * ROW values: max scaled, NaN met, any scaled, replaced, clipped, first bad index (−1: none)].
 */
export function updateRange(
  raw: TypedArray,
  old: TypedArray,
  out: TypedArray,
  rowLen: number,
  e0: number,
  e1: number,
  opts: { readonly atol: number; readonly rtol: number; readonly clip: number; readonly delta?: boolean },
  active: Uint8Array | null,
  res: Float64Array,
): void {
  // Read from an object, not taken as arguments: V8 then keeps them unboxed in the loop (~30% faster).
  const { atol, rtol, clip } = opts;
  const delta = opts.delta === true;
  // Judged as stored: a finite float64 sum past float32's range had been stored as ±Inf unflagged.
  const f32 = out instanceof Float32Array;
  let maxAbs = 0;
  let absNaN = 0;
  const bFirst = Math.floor(e0 / rowLen);
  for (let b = bFirst; b * rowLen < e1; b++) {
    // Integers for V8 (Math.max/min give doubles): a double loop index slows the loop by half.
    const from = Math.max(e0, b * rowLen) | 0;
    const to = Math.min(e1, (b + 1) * rowLen) | 0;
    const r = 2 + (b - bFirst) * 6;
    if (active && !active[b]) {
      for (let i = from; i < to; i++) out[i] = old[i]!;
      res[r + 5] = -1;
      continue;
    }
    let scaled = 0;
    let scaledNaN = 0;
    let scaledAny = 0;
    let replaced = 0;
    let clipped = 0;
    let firstBad = to;
    for (let i = from; i < to; i++) {
      const o = old[i]!;
      let v = raw[i]!;
      if (delta) v += o;
      if (f32) v = Math.fround(v);
      if (!(v < clip && v > -clip)) {
        let bad = true;
        if (!Number.isFinite(v)) {
          v = 0;
          replaced++;
        } else if (v >= clip) {
          v = clip;
          clipped++;
        } else if (v <= -clip) {
          v = -clip;
          clipped++;
        } else bad = false;
        if (bad && firstBad === to) firstBad = i;
      }
      out[i] = v;
      const stored = out[i]!;
      const d = Math.abs(stored - o);
      if (!(d <= maxAbs)) {
        maxAbs = d;
        if (Number.isNaN(d)) absNaN = 1;
      }
      if (d > 0) {
        const sc = d / (atol + rtol * Math.abs(stored));
        if (!(sc <= scaled)) {
          scaled = sc;
          if (Number.isNaN(sc)) scaledNaN = 1;
        }
        scaledAny = 1;
        if (!(sc <= 1) && firstBad === to) firstBad = i;
      }
    }
    res[r] = scaled;
    res[r + 1] = scaledNaN;
    res[r + 2] = scaledAny;
    res[r + 3] = replaced;
    res[r + 4] = clipped;
    res[r + 5] = firstBad === to ? -1 : firstBad;
  }
  res[0] = maxAbs;
  res[1] = absNaN;
}

let job: ReturnType<typeof jobFromFunction> | undefined;

/**
 * One step of the running max `if (!(d <= m)) m = d` over a range, given the range's own result
 * `r` (from 0) and whether it met a NaN: the value after a NaN does not depend on what came before.
 */
const foldMax = (m: number, r: number, nan: number) => (nan || !(r <= m) ? r : m);

/** hostNewtonUpdate over the pool's threads; raw, old and out must be shared. */
export function threadedNewtonUpdate(
  pool: ThreadPool,
  raw: TypedArray,
  old: TypedArray,
  out: TypedArray,
  batch: number,
  steps: number,
  opts: NewtonUpdateOptions,
): { maxAbsDiff: number; rows: RowUpdate } {
  const E = out.length;
  job ??= jobFromFunction(updateRange);
  const rowLen = E / batch;
  const inner = rowLen / Math.max(1, steps);
  const P = pool.size;
  // Ranges on whole time steps, so that a settled front is never cut inside one.
  const cuts = Array.from({ length: P + 1 }, (_, i) => Math.round((i * E) / P / inner) * inner);
  const res = cuts.slice(0, P).map((e0, i) => {
    const rows = Math.ceil(cuts[i + 1]! / rowLen) - Math.floor(e0 / rowLen);
    return sharedArray(Float64Array, HEAD + Math.max(0, rows) * ROW) as Float64Array;
  });
  const o = { atol: opts.atol, rtol: opts.rtol, clip: opts.clip, delta: opts.delta === true };
  const active = opts.active ?? null;
  pool.calls(
    res.map((r, i): Call[] =>
      cuts[i + 1]! > cuts[i]! ? [[job!, [raw, old, out, rowLen, cuts[i], cuts[i + 1], o, active, r]]] : [],
    ),
  );
  const rows: RowUpdate = {
    maxScaledDiff: new Float64Array(batch),
    replaced: new Uint32Array(batch),
    clipped: new Uint32Array(batch),
    settled: new Uint32Array(batch),
  };
  const firstBad = new Float64Array(batch).fill(-1);
  let maxAbs = 0;
  for (let i = 0; i < P; i++) {
    const [e0, e1] = [cuts[i]!, cuts[i + 1]!];
    if (e1 <= e0) continue;
    const r = res[i]!;
    maxAbs = foldMax(maxAbs, r[0]!, r[1]!);
    const bFirst = Math.floor(e0 / rowLen);
    for (let b = bFirst; b * rowLen < e1; b++) {
      if (active && !active[b]) continue;
      const o = HEAD + (b - bFirst) * ROW;
      if (r[o + SCALED_ANY]) {
        rows.maxScaledDiff[b] = foldMax(rows.maxScaledDiff[b]!, r[o + SCALED]!, r[o + SCALED_NAN]!);
      }
      rows.replaced[b]! += r[o + REPLACED]!;
      rows.clipped[b]! += r[o + CLIPPED]!;
      if (firstBad[b] === -1) firstBad[b] = r[o + FIRST_BAD]!;
    }
  }
  for (let b = 0; b < batch; b++) {
    if (active && !active[b]) continue;
    const bad = firstBad[b]!;
    rows.settled[b] = bad === -1 ? steps : Math.floor((bad - b * rowLen) / inner);
  }
  return { maxAbsDiff: maxAbs, rows };
}
