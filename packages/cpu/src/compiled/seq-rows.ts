import type { TypedArray } from '@deerjs/core';
import type { KernelFn } from './codegen.js';

/**
 * Sequential evaluation of batch rows [b0, b1) over all T steps: y[b, t] = f(y[b, t − 1], x[b, t])
 * with y[b, −1] = y0[b]. Time goes in chunks of Tc steps: the hoisted kernel (input-only nodes, when
 * there are any) fills F for the chunk — element (b, t) reads x[b, tc0 + t] and writes
 * F[k][(t·R + b − b0)·size], R = b1 − b0 — then the step kernel runs once per step over the R
 * rows. `hN` is the hoisted kernel's number of externals (each of them the input).
 *
 * Rows are independent (every kernel computes each element from that element's values only), so
 * any split of the rows gives the same values as one call over all of them: the backend runs this
 * on the calling thread for every row, or on the pool's threads for a contiguous range each.
 * Self-contained (no free variables): its source runs in the worker threads too.
 */
export function runRows(
  step: KernelFn,
  S: readonly Float64Array[],
  hoist: KernelFn | undefined,
  hS: readonly Float64Array[] | undefined,
  hTile: number,
  b0: number,
  b1: number,
  T: number,
  n: number,
  m: number,
  P: readonly TypedArray[],
  hP: readonly TypedArray[] | undefined,
  hN: number,
  x: TypedArray | undefined,
  y0: TypedArray,
  y: TypedArray,
  fSizes: readonly number[],
  hasState: boolean,
  budget: number,
): void {
  const R = b1 - b0;
  let fTotal = 0;
  for (let k = 0; k < fSizes.length; k++) fTotal += fSizes[k]!;
  // Doubles of hoisted values held at once: at most `budget`, at least one step's.
  const Tc = Math.max(1, Math.min(T, Math.floor(budget / Math.max(1, R * fTotal))));
  const F = fSizes.map((sz) => new Float64Array(Tc * R * sz));

  // The hoisted kernel's externals (hN of them) all read the input (the caller checks).
  const hX: TypedArray[] = [];
  if (x) for (let k = 0; k < hN; k++) hX.push(x);
  const hXB = hX.map(() => 0);
  const hXS = hX.map(() => m);
  const hOS = fSizes.map((sz) => R * sz);
  const hOB = fSizes.map(() => 0);

  const off = hasState ? 1 : 0;
  const X: TypedArray[] = hasState ? [y0, ...F] : [...F];
  const XB = X.map(() => 0);
  const XS = hasState ? [n, ...fSizes] : [...fSizes];
  if (hasState) XB[0] = b0 * n;
  const O = [y];
  const OB = [0];
  const OS = [T * n];
  for (let tc0 = 0; tc0 < T; tc0 += Tc) {
    const L = Math.min(Tc, T - tc0);
    if (hoist && hP && hS) {
      for (let b = b0; b < b1; b++) {
        for (let t0 = 0; t0 < L; t0 += hTile) {
          const Et = Math.min(hTile, L - t0);
          for (let k = 0; k < hXB.length; k++) hXB[k] = (b * T + tc0 + t0) * m;
          for (let k = 0; k < hOB.length; k++) hOB[k] = (t0 * R + b - b0) * fSizes[k]!;
          hoist(Et, hP, hX, hXB, hXS, F, hOB, hOS, undefined, 0, hS);
        }
      }
    }
    for (let t = tc0; t < tc0 + L; t++) {
      if (hasState && t > 0) {
        X[0] = y;
        XB[0] = (b0 * T + t - 1) * n;
        XS[0] = T * n;
      }
      for (let k = 0; k < fSizes.length; k++) XB[k + off] = (t - tc0) * R * fSizes[k]!;
      OB[0] = (b0 * T + t) * n;
      step(R, P, X, XB, XS, O, OB, OS, undefined, 0, S);
    }
  }
}
