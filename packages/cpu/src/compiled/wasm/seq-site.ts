import type { TypedArray } from '@deerjs/core';
import { wasmInstance } from './instance.js';
import type { ModuleLayout } from './kernel-module.js';

/** What the sequential runner needs to know of its module besides the bytes (kBytes: the step kernel `s`). */
export interface WasmSeqMeta extends ModuleLayout {
  /** Externals of `h` (each the input). */
  readonly hN: number;
  /** Sizes of the hoisted values the step reads (externals of `s` after the state). */
  readonly fSizes: readonly number[];
  readonly n: number;
  readonly m: number;
  readonly hasState: boolean;
}

/** Runs float32 sequential evaluation of batch rows [b0, b1) (see makeWasmSeq). */
export type WasmSeqFn = (
  P: readonly TypedArray[],
  b0: number,
  b1: number,
  T: number,
  x: TypedArray | undefined,
  y0: TypedArray,
  y: TypedArray,
  budget: number,
) => void;

/**
 * Sequential evaluation on a module from `wasmKernels` with kernels `h` (the input-only part,
 * absent when nothing is hoisted) and `s` (one step), own instance and memory. Rows [b0, b1) go
 * in groups of four (the f32x4 lanes; a last partial group computes padding rows that are never
 * copied out). Time goes in chunks of L steps holding about `budget` bytes: the rows' inputs are
 * copied in (one copy per row), `h` fills the hoisted values of the chunk, interleaved by group
 * (F[g][t][size]), then `s` runs once per step over all groups, reading the previous step's
 * outputs in place (Y[row][1 + t][n], slot 0 the state before the chunk) and writing the next;
 * each row's chunk of outputs is copied out in one piece.
 * Rows are independent, so any split of the rows gives the same values.
 * Self-contained (no free variables; `instantiate` is wasmInstance): its source runs in worker
 * threads too.
 */
export function makeWasmSeq(bytes: Uint8Array, meta: WasmSeqMeta, instantiate: typeof wasmInstance): WasmSeqFn {
  type Fn = (...args: number[]) => void;
  const inst = instantiate({ bytes, consts: meta.consts, dataEnd: meta.dataEnd });
  const h = inst.exports.h as Fn | undefined;
  const s = inst.exports.s as Fn;
  let F = inst.F;
  const ensure = (b: number) => {
    inst.ensure(b);
    F = inst.F;
  };
  const { n, m, fSizes, hN, hasState, hBytes, kBytes } = meta;
  const nF = fSizes.length;
  let fTot = 0;
  for (let k = 0; k < nF; k++) fTot += fSizes[k]!;
  const sArgs: number[] = new Array(2 + 3 * ((hasState ? 1 : 0) + nF + 1)).fill(0);
  const hArgs: number[] = new Array(2 + 3 * (hN + nF)).fill(0);

  return function seqRows(P, b0, b1, T, x, y0, y, budget) {
    for (const p of meta.params) F.set(P[p.index]!.subarray(0, p.size), p.offset / 4);
    const R = b1 - b0;
    const G = Math.ceil(R / 4);
    const R4 = 4 * G;
    const perStep = (h ? R4 * m * 4 + G * fTot * 16 : 0) + R4 * n * 4;
    const L = Math.max(1, Math.min(T, Math.floor(budget / perStep)));
    const Lp = L + 1;
    const hT = h ? Math.max(1, Math.min(L, Math.floor(131072 / hBytes))) : 0;
    // Memory: inputs [R4][L][m], hoisted F_k [G][L][size_k], outputs [R4][L + 1][n], scratch.
    const xc = meta.dataEnd;
    const fOff: number[] = [];
    let at = xc + (h ? R4 * L * m * 4 : 0);
    for (let k = 0; k < nF; k++) {
      fOff.push(at);
      at += G * L * fSizes[k]! * 16;
    }
    const Y = at;
    at += R4 * Lp * n * 4;
    const hsp = at;
    at += hT * hBytes;
    const ssp = at;
    at += G * kBytes;
    ensure(at);
    const Yf = Y / 4;
    for (let r = 0; r < R4; r++) {
      if (r < R) F.set(y0.subarray((b0 + r) * n, (b0 + r + 1) * n), Yf + r * Lp * n);
      else F.fill(0, Yf + r * Lp * n, Yf + r * Lp * n + n);
    }
    const yls = Lp * n * 4;
    for (let tc0 = 0; tc0 < T; tc0 += L) {
      const Lc = Math.min(L, T - tc0);
      if (h && x) {
        for (let r = 0; r < R; r++) {
          const src = ((b0 + r) * T + tc0) * m;
          F.set(x.subarray(src, src + Lc * m), xc / 4 + r * L * m);
        }
        for (let g = 0; g < G; g++) {
          for (let t0 = 0; t0 < Lc; t0 += hT) {
            hArgs[0] = Math.min(hT, Lc - t0);
            hArgs[1] = hsp;
            let a = 2;
            for (let k = 0; k < hN; k++) {
              hArgs[a++] = xc + (4 * g * L + t0) * m * 4;
              hArgs[a++] = m * 4;
              hArgs[a++] = L * m * 4;
            }
            for (let k = 0; k < nF; k++) {
              hArgs[a++] = fOff[k]! + (g * L + t0) * fSizes[k]! * 16;
              hArgs[a++] = fSizes[k]! * 16;
              hArgs[a++] = 0;
            }
            h(...hArgs);
          }
        }
      }
      sArgs[0] = G;
      sArgs[1] = ssp;
      for (let t = 0; t < Lc; t++) {
        let a = 2;
        if (hasState) {
          sArgs[a++] = Y + t * n * 4;
          sArgs[a++] = 4 * yls;
          sArgs[a++] = yls;
        }
        for (let k = 0; k < nF; k++) {
          sArgs[a++] = fOff[k]! + t * fSizes[k]! * 16;
          sArgs[a++] = L * fSizes[k]! * 16;
          sArgs[a++] = 0;
        }
        sArgs[a++] = Y + (t + 1) * n * 4;
        sArgs[a++] = 4 * yls;
        sArgs[a++] = yls;
        s(...sArgs);
      }
      for (let r = 0; r < R4; r++) {
        const row = Yf + r * Lp * n;
        if (r < R) y.set(F.subarray(row + n, row + (Lc + 1) * n), ((b0 + r) * T + tc0) * n);
        F.copyWithin(row, row + Lc * n, row + (Lc + 1) * n);
      }
    }
  };
}

/** Source of a function body returning makeWasmSeq's runner for these bytes (`new Function(src)()`). */
export function wasmSeqSource(bytes: Uint8Array, meta: WasmSeqMeta): string {
  return `return (${makeWasmSeq.toString()})(new Uint8Array([${bytes.join(',')}]), ${JSON.stringify(meta)}, (${wasmInstance.toString()}));`;
}
