import type { TypedArray } from '@deerjs/core';
import { layoutFor, matvecModule } from './matvec-module.js';

/** The part of the WebAssembly API used here (this package compiles without DOM or Node types). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const wasmApi = () => (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

/** matvecRows' signature, plus `key`: packed W is reused while key and W are the same objects. */
export type MatvecFn = (
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
  key?: unknown,
) => void;

/**
 * A matvecRows (or, transposed, matvecCols) on the SIMD module `bytes` (layout: matvec-module.ts), with its own instance and
 * memory. W is packed into wasm memory on first use of each (key, W, wOff) — the generated kernels
 * pass their P array as key, a new one per call of the backend — and each call copies X in and O out.
 * Self-contained (no free variables): its source is sent to worker threads.
 */
export function makeWasmMatvec(
  bytes: Uint8Array,
  f32: boolean,
  RB: number,
  NE: number,
  transpose: boolean,
): MatvecFn {
  const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
  const { exports } = new WA.Instance(new WA.Module(bytes));
  const mem = exports.mem as WasmMemory;
  const mv = exports.mv as (w: number, x: number, o: number, rp: number, cols: number, ep: number) => void;
  const size = f32 ? 4 : 8;
  const view = () => (f32 ? new Float32Array(mem.buffer) : new Float64Array(mem.buffer));
  let F = view();
  let D = new Float64Array(mem.buffer);
  const ensure = (bytes: number) => {
    const have = mem.buffer.byteLength;
    if (bytes <= have) return;
    mem.grow(Math.ceil((bytes - have) / 65536));
    F = view();
    D = new Float64Array(mem.buffer);
  };
  let key: unknown;
  let W0: TypedArray | undefined;
  const packs = new Map<number, number>();
  let top = 0;
  return function matvecWasm(W, wOff, rows, cols, X, xb, xs, E, O, ob, os, K) {
    if (E <= 0) return;
    if (K !== key || W !== W0) {
      key = K;
      W0 = W;
      packs.clear();
      top = 0;
    }
    // The product's output rows and input columns: W's, or Wᵀ's (its sums also run over W's rows in order).
    const [oRows, iCols] = transpose ? [cols, rows] : [rows, cols];
    const rp = Math.ceil(oRows / RB) * RB;
    let wp = packs.get(wOff);
    if (wp === undefined) {
      wp = top;
      top += rp * iCols * size;
      ensure(top);
      const f = wp / size;
      const [rStride, jStride] = transpose ? [1, cols] : [cols, 1];
      for (let b = 0; b < rp; b += RB) {
        for (let j = 0; j < iCols; j++) {
          const d = f + b * iCols + j * RB;
          for (let r = 0; r < RB; r++) F[d + r] = b + r < oRows ? W[wOff + (b + r) * rStride + j * jStride]! : 0;
        }
      }
      packs.set(wOff, wp);
    }
    const ep = Math.ceil(E / NE) * NE;
    const xo = top;
    const oo = xo + ep * iCols * size;
    ensure(oo + ep * rp * 8);
    const fx = xo / size;
    for (let e = 0; e < E; e++) {
      const src = xb + e * xs;
      const k = e % NE;
      const dst = fx + (e - k) * iCols + k;
      for (let j = 0; j < iCols; j++) F[dst + j * NE] = X[src + j]!;
    }
    // Elements past E (up to ep) read whatever X held before; their sums are not copied out.
    mv(wp, xo, oo, rp, iCols, ep);
    const d = oo / 8;
    if (rp === oRows && os === oRows) O.set(D.subarray(d, d + E * oRows), ob);
    else {
      for (let e = 0; e < E; e++) {
        const s = d + e * rp;
        const t = ob + e * os;
        for (let r = 0; r < oRows; r++) O[t + r] = D[s + r]!;
      }
    }
  };
}

const bytesOf = new Map<boolean, Uint8Array | null>();

/** The module for a lane type, or null where WebAssembly SIMD is unavailable. */
export function matvecBytes(f32: boolean): Uint8Array | null {
  let b = bytesOf.get(f32);
  if (b === undefined) {
    b = matvecModule(layoutFor(f32));
    let ok = false;
    try {
      ok = wasmApi()?.validate(b) === true;
    } catch {
      ok = false;
    }
    if (!ok) b = null;
    bytesOf.set(f32, b);
  }
  return b;
}

/**
 * Source of a function body returning a wasm matvecRows (matvecCols when transposed) for the lane type (`new Function(src)()`,
 * here or in a worker), or undefined where WebAssembly SIMD is unavailable.
 */
export function wasmMatvecSource(f32: boolean, transpose: boolean): string | undefined {
  const bytes = matvecBytes(f32);
  if (!bytes) return undefined;
  const { rowBlock, elemBlock } = layoutFor(f32);
  return `return (${makeWasmMatvec.toString()})(new Uint8Array([${bytes.join(',')}]), ${f32}, ${rowBlock}, ${elemBlock}, ${transpose});`;
}
