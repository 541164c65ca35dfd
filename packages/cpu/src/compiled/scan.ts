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
  const fn = s <= UNROLL_SCAN ? unrolledScan(s, reverse) : undefined;
  if (fn) {
    fn(A, c, y0, out, B, T, n);
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
const UNROLL_SCAN = 8;
type ScanFn = (
  A: TypedArray,
  c: TypedArray,
  y0: TypedArray,
  out: TypedArray,
  B: number,
  T: number,
  n: number,
) => void;
const unrolled = new Map<string, ScanFn | null>();

/** The scan for one small block size, its s×s block product unrolled; same arithmetic order. */
function unrolledScan(s: number, reverse: boolean): ScanFn | undefined {
  const key = `${s}:${reverse}`;
  if (unrolled.has(key)) return unrolled.get(key) ?? undefined;
  let fn: ScanFn | null;
  const body: string[] = [];
  for (let i = 0; i < s; i++) {
    const terms = [`c[base + k + ${i}]`];
    for (let j = 0; j < s; j++) terms.push(`A[blk + ${reverse ? j * s + i : i * s + j}] * q${j}`);
    body.push(`out[base + k + ${i}] = ${terms.join(' + ')};`);
  }
  const src = `// scan s=${s} reverse=${reverse}
for (let b = 0; b < B; b++) {
  let prev = y0;
  let p0 = b * n;
  for (let step = 0; step < T; step++) {
    const t = ${reverse ? 'T - 1 - step' : 'step'};
    const base = (b * T + t) * n;
    for (let k = 0; k < n; k += ${s}) {
      const blk = (base + k) * ${s};
      ${Array.from({ length: s }, (_, j) => `const q${j} = prev[p0 + k + ${j}];`).join(' ')}
      ${body.join('\n      ')}
    }
    prev = out;
    p0 = base;
  }
}`;
  try {
    fn = new Function('A', 'c', 'y0', 'out', 'B', 'T', 'n', src) as ScanFn;
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
