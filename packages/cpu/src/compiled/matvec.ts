import type { TypedArray } from '@deerjs/core';

/**
 * Batched matrix–vector products over E elements: O[e] = W·X[e] for one dense block
 * W[rows, cols] at wOff (row-major). Element e's vector starts at xb + e·xs, its result at
 * ob + e·os. Two elements × four rows per pass share every load of W and X; each row's sum runs
 * over j in order, as the reference's does.
 */
export function matvecRows(
  W: TypedArray,
  wOff: number,
  rows: number,
  cols: number,
  X: TypedArray,
  xb: number,
  xs: number,
  E: number,
  O: TypedArray,
  ob: number,
  os: number,
): void {
  // Elements go in pairs; an odd last one is paired with itself (same values written twice), so
  // that no loop first runs after V8 has optimised this function (a deopt each time it does).
  for (let e = 0; e < E; e += 2) {
    const x0 = xb + e * xs;
    const x1 = e + 1 < E ? x0 + xs : x0;
    const o0 = ob + e * os;
    const o1 = e + 1 < E ? o0 + os : o0;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const w0 = wOff + r * cols;
      const w1 = w0 + cols;
      const w2 = w1 + cols;
      const w3 = w2 + cols;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let j = 0; j < cols; j++) {
        const u = X[x0 + j]!;
        const v = X[x1 + j]!;
        const p0 = W[w0 + j]!;
        const p1 = W[w1 + j]!;
        const p2 = W[w2 + j]!;
        const p3 = W[w3 + j]!;
        a0 += p0 * u;
        a1 += p1 * u;
        a2 += p2 * u;
        a3 += p3 * u;
        b0 += p0 * v;
        b1 += p1 * v;
        b2 += p2 * v;
        b3 += p3 * v;
      }
      O[o0 + r] = a0;
      O[o0 + r + 1] = a1;
      O[o0 + r + 2] = a2;
      O[o0 + r + 3] = a3;
      O[o1 + r] = b0;
      O[o1 + r + 1] = b1;
      O[o1 + r + 2] = b2;
      O[o1 + r + 3] = b3;
    }
    for (; r < rows; r++) {
      const w0 = wOff + r * cols;
      let a0 = 0;
      let b0 = 0;
      for (let j = 0; j < cols; j++) {
        const p = W[w0 + j]!;
        a0 += p * X[x0 + j]!;
        b0 += p * X[x1 + j]!;
      }
      O[o0 + r] = a0;
      O[o1 + r] = b0;
    }
  }
}

/** O[e] = Wᵀ·X[e] for one dense block W[rows, cols]: X[e] has rows entries, O[e] has cols. */
export function matvecCols(
  W: TypedArray,
  wOff: number,
  rows: number,
  cols: number,
  X: TypedArray,
  xb: number,
  xs: number,
  E: number,
  O: TypedArray,
  ob: number,
  os: number,
): void {
  for (let e = 0; e < E; e++) {
    const x0 = xb + e * xs;
    const o0 = ob + e * os;
    for (let j = 0; j < cols; j++) O[o0 + j] = 0;
    for (let i = 0; i < rows; i++) {
      const xi = X[x0 + i]!;
      const w0 = wOff + i * cols;
      for (let j = 0; j < cols; j++) O[o0 + j]! += W[w0 + j]! * xi;
    }
  }
}

/**
 * matvecRows for float32 programs: each sum runs in float64 (as the reference interpreter's does)
 * and its result is rounded to float32 (Math.fround), the value the interpreter stores. A copy, not
 * a flag: matvecRows rounding through a per-site `f32` argument measured 1.2–1.5× slower at
 * nh = 8–64 (GRU, B = 16, T = 1e4, simd off) than this copy.
 */
export function matvecRowsF32(
  W: TypedArray,
  wOff: number,
  rows: number,
  cols: number,
  X: TypedArray,
  xb: number,
  xs: number,
  E: number,
  O: TypedArray,
  ob: number,
  os: number,
): void {
  // Elements go in pairs; an odd last one is paired with itself (same values written twice), so
  // that no loop first runs after V8 has optimised this function (a deopt each time it does).
  for (let e = 0; e < E; e += 2) {
    const x0 = xb + e * xs;
    const x1 = e + 1 < E ? x0 + xs : x0;
    const o0 = ob + e * os;
    const o1 = e + 1 < E ? o0 + os : o0;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const w0 = wOff + r * cols;
      const w1 = w0 + cols;
      const w2 = w1 + cols;
      const w3 = w2 + cols;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let j = 0; j < cols; j++) {
        const u = X[x0 + j]!;
        const v = X[x1 + j]!;
        const p0 = W[w0 + j]!;
        const p1 = W[w1 + j]!;
        const p2 = W[w2 + j]!;
        const p3 = W[w3 + j]!;
        a0 += p0 * u;
        a1 += p1 * u;
        a2 += p2 * u;
        a3 += p3 * u;
        b0 += p0 * v;
        b1 += p1 * v;
        b2 += p2 * v;
        b3 += p3 * v;
      }
      O[o0 + r] = Math.fround(a0);
      O[o0 + r + 1] = Math.fround(a1);
      O[o0 + r + 2] = Math.fround(a2);
      O[o0 + r + 3] = Math.fround(a3);
      O[o1 + r] = Math.fround(b0);
      O[o1 + r + 1] = Math.fround(b1);
      O[o1 + r + 2] = Math.fround(b2);
      O[o1 + r + 3] = Math.fround(b3);
    }
    for (; r < rows; r++) {
      const w0 = wOff + r * cols;
      let a0 = 0;
      let b0 = 0;
      for (let j = 0; j < cols; j++) {
        const p = W[w0 + j]!;
        a0 += p * X[x0 + j]!;
        b0 += p * X[x1 + j]!;
      }
      O[o0 + r] = Math.fround(a0);
      O[o1 + r] = Math.fround(b0);
    }
  }
}

/**
 * matvecCols for float32 programs: every partial sum rounded to float32, as the reference
 * interpreter's transposed product accumulates in its float32 output.
 */
export function matvecColsF32(
  W: TypedArray,
  wOff: number,
  rows: number,
  cols: number,
  X: TypedArray,
  xb: number,
  xs: number,
  E: number,
  O: TypedArray,
  ob: number,
  os: number,
): void {
  for (let e = 0; e < E; e++) {
    const x0 = xb + e * xs;
    const o0 = ob + e * os;
    for (let j = 0; j < cols; j++) O[o0 + j] = 0;
    for (let i = 0; i < rows; i++) {
      const xi = X[x0 + i]!;
      const w0 = wOff + i * cols;
      for (let j = 0; j < cols; j++) O[o0 + j] = Math.fround(O[o0 + j]! + W[w0 + j]! * xi);
    }
  }
}
