import type { TypedArray } from '@deerjs/core';

/**
 * The linear recurrence with block-diagonal transitions, time order: for s ≤ 8 a generated loop
 * with the s×s product unrolled, else plain loops; same arithmetic order as the reference
 * `scanBlocks`.
 * A is [B, T, n/s, s, s], c and out are [B, T, n], y0 is [B, n].
 */
export function scanFast(
  A: TypedArray,
  c: TypedArray,
  y0: TypedArray,
  out: TypedArray,
  B: number,
  T: number,
  n: number,
  s: number,
  reverse: boolean,
): void {
  const fn = s <= UNROLL_SCAN ? unrolledScan(s, reverse, out instanceof Float32Array) : undefined;
  if (fn) {
    fn(A, c, out, y0, 0, n, T, n, 0, B, 0, T);
    return;
  }
  for (let b = 0; b < B; b++) {
    let prev = y0;
    let p0 = b * n;
    for (let step = 0; step < T; step++) {
      const t = reverse ? T - 1 - step : step;
      const base = (b * T + t) * n;
      const aBase = base * s;
      for (let k = 0; k < n; k += s) {
        const blk = aBase + k * s;
        const pk = p0 + k;
        if (reverse) {
          for (let i = 0; i < s; i++) {
            let acc = c[base + k + i]!;
            for (let j = 0; j < s; j++) acc += A[blk + j * s + i]! * prev[pk + j]!;
            out[base + k + i] = acc;
          }
        } else {
          for (let i = 0; i < s; i++) {
            let acc = c[base + k + i]!;
            const row = blk + i * s;
            for (let j = 0; j < s; j++) acc += A[row + j]! * prev[pk + j]!;
            out[base + k + i] = acc;
          }
        }
      }
      prev = out;
      p0 = base;
    }
  }
}

/** c = F − A·y per element, A in block structure [E, n/s, s, s]. */
export function affineOffsetFast(
  F: TypedArray,
  A: TypedArray,
  y: TypedArray,
  out: TypedArray,
  E: number,
  n: number,
  s: number,
): void {
  if (s === 1) {
    for (let q = 0; q < E * n; q++) out[q] = F[q]! - A[q]! * y[q]!;
    return;
  }
  const fn = s <= UNROLL_SCAN ? unrolledOffset(s) : undefined;
  if (fn) {
    fn(F, A, y, out, E, n);
    return;
  }
  for (let e = 0; e < E; e++) {
    const base = e * n;
    for (let k = 0; k < n; k += s) {
      const blk = (base + k) * s;
      for (let i = 0; i < s; i++) {
        let acc = 0;
        const row = blk + i * s;
        for (let j = 0; j < s; j++) acc += A[row + j]! * y[base + k + j]!;
        out[base + k + i] = F[base + k + i]! - acc;
      }
    }
  }
}

/** Block sizes up to this get a scan with the s×s product written out (generated once per s). */
export const UNROLL_SCAN = 8;

/*
 * The generated scans, by block size s, direction and output dtype. Step u is time t = u forward,
 * t = T − 1 − u in reverse, and its transition G_u is A_t (forward) or A_tᵀ (reverse), so that
 * y_u = G_u y_{u−1} + c_u either way. With one block per step (n = s) the state stays in locals
 * from step to step, rounded with Math.fround when the output is float32: the values that storing
 * and reading back would give, without a trip through memory on the step-to-step chain (about
 * 1.7× faster for n = 1). With several blocks, a step's blocks are independent chains that run
 * interleaved, each reading its previous state from out.
 */
const gIndex = (s: number, reverse: boolean, i: number, j: number) => (reverse ? j * s + i : i * s + j);
const timeOf = (reverse: boolean, u: string) => (reverse ? `T - 1 - ${u}` : u);
const each = (count: number, line: (q: number) => string, sep = ' ') =>
  Array.from({ length: count }, (_, q) => line(q)).join(sep);
const round = (f32: boolean, expr: string) => (f32 ? `Math.fround(${expr})` : expr);
/** Index arguments as int32: one that arrives as a double (Math.round, postMessage) makes every index a double. */
const ints = (...names: string[]) => names.map((v) => `${v} |= 0;`).join(' ');

/**
 * Rows [b0, b1), steps [u0, u1) of the scan from the state at Y[yBase + b·yStride] (the state
 * before step u0), into out.
 */
export type RangeScanFn = (
  A: TypedArray,
  c: TypedArray,
  out: TypedArray,
  Y: TypedArray,
  yBase: number,
  yStride: number,
  T: number,
  n: number,
  b0: number,
  b1: number,
  u0: number,
  u1: number,
) => void;

/** Source (a body returning the function) of the RangeScanFn for one small block size. */
export function rangeScanSource(s: number, reverse: boolean, f32: boolean): string {
  const sum = (i: number, q: string) =>
    [`c[e + ${i}]`, ...Array.from({ length: s }, (_, j) => `A[a + ${gIndex(s, reverse, i, j)}] * ${q}${j}`)].join(
      ' + ',
    );
  const sumAt = (i: number) =>
    [
      `c[base + k + ${i}]`,
      ...Array.from({ length: s }, (_, j) => `A[blk + ${gIndex(s, reverse, i, j)}] * q${j}`),
    ].join(' + ');
  return `// scan s=${s} reverse=${reverse} f32=${f32}
return function scanRange(A, c, out, Y, yBase, yStride, T, n, b0, b1, u0, u1) {
  ${ints('yBase', 'yStride', 'T', 'n', 'b0', 'b1', 'u0', 'u1')}
  if (u1 <= u0) return;
  const dE = ${reverse ? '-n' : 'n'};
  if (n === ${s}) {
    for (let b = b0; b < b1; b++) {
      const p0 = yBase + b * yStride;
      ${each(s, (j) => `let q${j} = Y[p0 + ${j}];`)}
      let e = (b * T + ${timeOf(reverse, 'u0')}) * n;
      for (let u = u0; u < u1; u++, e += dE) {
        const a = e * ${s};
        ${each(s, (i) => `const v${i} = ${round(f32, sum(i, 'q'))};`, '\n        ')}
        ${each(s, (i) => `out[e + ${i}] = v${i}; q${i} = v${i};`)}
      }
    }
    return;
  }
  for (let b = b0; b < b1; b++) {
    let prev = Y;
    let p0 = yBase + b * yStride;
    for (let u = u0; u < u1; u++) {
      const base = (b * T + ${timeOf(reverse, 'u')}) * n;
      for (let k = 0; k < n; k += ${s}) {
        const blk = (base + k) * ${s};
        ${each(s, (j) => `const q${j} = prev[p0 + k + ${j}];`)}
        ${each(s, (i) => `out[base + k + ${i}] = ${sumAt(i)};`, '\n        ')}
      }
      prev = out;
      p0 = base;
    }
  }
};`;
}

/**
 * Rows [b0, b1), steps [u0, u1) of the scan from a zero state, into out, and the products
 * G_u ⋯ G_{u0} of the steps so far: float64 blocks [n/s, s, s] per step, by time, at
 * Q[((b·Lq + t − tLo)·n + k)·s] (k the block's first state index).
 */
export type LocalScanFn = (
  A: TypedArray,
  c: TypedArray,
  out: TypedArray,
  Q: Float64Array,
  Lq: number,
  tLo: number,
  T: number,
  n: number,
  b0: number,
  b1: number,
  u0: number,
  u1: number,
) => void;

/** Source of the LocalScanFn for one small block size. */
export function localScanSource(s: number, reverse: boolean, f32: boolean): string {
  const ss = s * s;
  const G = (at: string) => each(ss, (q) => `const g${q} = A[${at} + ${gIndex(s, reverse, Math.floor(q / s), q % s)}];`);
  const state = (i: number, at: string) =>
    [`c[${at} + ${i}]`, ...Array.from({ length: s }, (_, j) => `g${i * s + j} * z${j}`)].join(' + ');
  const product = (q: number, p: string) => {
    const [i, j] = [Math.floor(q / s), q % s];
    return Array.from({ length: s }, (_, l) => `g${i * s + l} * ${p}${l * s + j}`).join(' + ');
  };
  return `// local scan s=${s} reverse=${reverse} f32=${f32}
return function localScan(A, c, out, Q, Lq, tLo, T, n, b0, b1, u0, u1) {
  ${ints('Lq', 'tLo', 'T', 'n', 'b0', 'b1', 'u0', 'u1')}
  if (u1 <= u0) return;
  const dE = ${reverse ? '-n' : 'n'};
  const t0 = ${timeOf(reverse, 'u0')};
  if (n === ${s}) {
    for (let b = b0; b < b1; b++) {
      let e = (b * T + t0) * n;
      let qa = (b * Lq + t0 - tLo) * n * ${s};
      ${G(`e * ${s}`)}
      ${each(s, (i) => `let z${i} = c[e + ${i}]; out[e + ${i}] = z${i};`)}
      ${each(ss, (q) => `let p${q} = g${q}; Q[qa + ${q}] = p${q};`)}
      for (let u = u0 + 1; u < u1; u++) {
        e += dE;
        qa += dE * ${s};
        {
          ${G(`e * ${s}`)}
          ${each(s, (i) => `const v${i} = ${round(f32, state(i, 'e'))};`)}
          ${each(ss, (q) => `const w${q} = ${product(q, 'p')};`, '\n          ')}
          ${each(s, (i) => `out[e + ${i}] = v${i}; z${i} = v${i};`)}
          ${each(ss, (q) => `Q[qa + ${q}] = w${q}; p${q} = w${q};`)}
        }
      }
    }
    return;
  }
  for (let b = b0; b < b1; b++) {
    let e = (b * T + t0) * n;
    let qb = (b * Lq + t0 - tLo) * n;
    for (let k = 0; k < n; k += ${s}) {
      const blk = (e + k) * ${s};
      const qk = (qb + k) * ${s};
      ${each(s, (i) => `out[e + k + ${i}] = c[e + k + ${i}];`)}
      ${each(ss, (q) => `Q[qk + ${q}] = A[blk + ${gIndex(s, reverse, Math.floor(q / s), q % s)}];`)}
    }
    for (let u = u0 + 1; u < u1; u++) {
      e += dE;
      qb += dE;
      const pe = e - dE;
      for (let k = 0; k < n; k += ${s}) {
        const blk = (e + k) * ${s};
        const qk = (qb + k) * ${s};
        const qp = qk - dE * ${s};
        ${G('blk')}
        ${each(s, (j) => `const z${j} = out[pe + k + ${j}];`)}
        ${each(ss, (q) => `const p${q} = Q[qp + ${q}];`)}
        ${each(s, (i) => `out[e + k + ${i}] = ${state(i, 'e + k')};`, '\n        ')}
        ${each(ss, (q) => `Q[qk + ${q}] = ${product(q, 'p')};`, '\n        ')}
      }
    }
  }
};`;
}

/**
 * The fix-up of a locally scanned range: out_t += Q_t·y for rows [b0, b1), times [tA, tB) (in
 * any order: no step reads another), y the state before the range at Y[yBase + b·n]. Per row,
 * F[fBase + b] is set to 0 where every result is finite, else NaN (the caller scans such rows
 * again step by step: a product that overflowed gives Inf·0 = NaN where the state is 0).
 */
export type FixScanFn = (
  out: TypedArray,
  Q: Float64Array,
  Lq: number,
  tLo: number,
  Y: TypedArray,
  yBase: number,
  T: number,
  n: number,
  b0: number,
  b1: number,
  tA: number,
  tB: number,
  F: Float64Array,
  fBase: number,
) => void;

/** Source of the FixScanFn for one small block size. */
export function fixScanSource(s: number): string {
  const row = (i: number, at: string) =>
    `{ const r = out[${at} + ${i}] + (${Array.from({ length: s }, (_, j) => `Q[qk + ${i * s + j}] * y${j}`).join(' + ')}); out[${at} + ${i}] = r; bad += r * 0; }`;
  return `// scan fix-up s=${s}
return function fixScan(out, Q, Lq, tLo, Y, yBase, T, n, b0, b1, tA, tB, F, fBase) {
  ${ints('Lq', 'tLo', 'yBase', 'T', 'n', 'b0', 'b1', 'tA', 'tB', 'fBase')}
  for (let b = b0; b < b1; b++) {
    const yb = yBase + b * n;
    let bad = 0;
    if (n === ${s}) {
      ${each(s, (j) => `const y${j} = Y[yb + ${j}];`)}
      for (let t = tA, e = (b * T + tA) * n, qk = (b * Lq + tA - tLo) * n * ${s}; t < tB; t++, e += n, qk += n * ${s}) {
        ${each(s, (i) => row(i, 'e'), '\n        ')}
      }
      F[fBase + b] = bad;
      continue;
    }
    for (let t = tA; t < tB; t++) {
      const base = (b * T + t) * n;
      const qb = (b * Lq + t - tLo) * n;
      for (let k = 0; k < n; k += ${s}) {
        const qk = (qb + k) * ${s};
        ${each(s, (j) => `const y${j} = Y[yb + k + ${j}];`)}
        ${each(s, (i) => row(i, 'base + k'), '\n        ')}
      }
    }
    F[fBase + b] = bad;
  }
};`;
}

const unrolled = new Map<string, RangeScanFn | null>();

/** The scan for one small block size, its s×s block product unrolled; same arithmetic order. */
function unrolledScan(s: number, reverse: boolean, f32: boolean): RangeScanFn | undefined {
  const key = `${s}:${reverse}:${f32}`;
  if (unrolled.has(key)) return unrolled.get(key) ?? undefined;
  let fn: RangeScanFn | null;
  try {
    fn = new Function(rangeScanSource(s, reverse, f32))() as RangeScanFn;
  } catch {
    fn = null; // no eval here (Content-Security-Policy): the plain loops run instead
  }
  unrolled.set(key, fn);
  return fn ?? undefined;
}

type OffsetFn = (F: TypedArray, A: TypedArray, y: TypedArray, out: TypedArray, E: number, n: number) => void;
const unrolledOffsets = new Map<number, OffsetFn | null>();

/** affineOffset for one small block size, the s×s product unrolled; same arithmetic order. */
function unrolledOffset(s: number): OffsetFn | undefined {
  if (unrolledOffsets.has(s)) return unrolledOffsets.get(s) ?? undefined;
  const rows: string[] = [];
  for (let i = 0; i < s; i++) {
    const terms: string[] = [];
    for (let j = 0; j < s; j++) terms.push(`A[blk + ${i * s + j}] * q${j}`);
    rows.push(`out[base + k + ${i}] = F[base + k + ${i}] - (${terms.join(' + ')});`);
  }
  const src = `// affineOffset s=${s}
for (let base = 0; base < E * n; base += n) {
  for (let k = 0; k < n; k += ${s}) {
    const blk = (base + k) * ${s};
    ${Array.from({ length: s }, (_, j) => `const q${j} = y[base + k + ${j}];`).join(' ')}
    ${rows.join('\n    ')}
  }
}`;
  let fn: OffsetFn | null;
  try {
    fn = new Function('F', 'A', 'y', 'out', 'E', 'n', src) as OffsetFn;
  } catch {
    fn = null;
  }
  unrolledOffsets.set(s, fn);
  return fn ?? undefined;
}
