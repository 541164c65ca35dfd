import type { Graph, MatExpr, NewtonUpdateOptions, NodeId, RowUpdate, TypedArray } from '@deerjs/core';
import { type Job, jobFromSource, sharedArray, type ThreadPool } from './threads.js';
import { Unsupported } from './unsupported.js';
import { wasmInstance } from './wasm/instance.js';
import { type ModuleLayout, moduleLayout } from './wasm/kernel-module.js';
import { SCAN_UPDATE_MAX, STATE, scanUpdateBody } from './wasm/scan-update.js';
import { compiledKernels } from './wasm-seq-plan.js';
import { stepSpecs } from './wasm-step-plan.js';

/**
 * Core's optional `Backend.deerStep` in float32 on one WebAssembly SIMD module: residual,
 * Jacobian, δ_t = J_t δ_{t−1} + r_t and the Newton update without the Jacobian, r or δ in the
 * tensors. Four batch rows go together, one per f32x4 lane (a last partial group computes padding
 * lanes that are never read), serial over time in chunks that stay in cache: per chunk, kernel `h`
 * (input-only part, absent when nothing is hoisted) fills the hoisted values, kernel `k` writes the
 * chunk's r and J blocks interleaved (groups are time steps, lanes the rows), and `su`
 * (wasm/scan-update.ts) runs the recurrence and the update over it, carrying δ and the measures on
 * to the next chunk. Hoisted values are kept for all (row group, step) while the caller's token
 * (input and params) is the same, as runStep keeps them. Row groups are independent: with a pool,
 * each thread takes a range of them (the runner is a job whose source embeds the module bytes, one
 * instance and hoisted cache per thread), with values identical to one thread's.
 */
export interface WasmDeerStep {
  /** Bytes the hoisted values of B rows × T steps take in memory. */
  hoistBytes(B: number, T: number): number;
  /**
   * One DEER step at the iterate `prev` ([B, T, n]) from `y0` ([B, n]) into `out`: params P (graph
   * order), the input x ([B, T, m]); the measures of hostNewtonUpdate with `delta`.
   */
  run(
    P: readonly TypedArray[],
    B: number,
    T: number,
    x: TypedArray,
    y0: TypedArray,
    prev: TypedArray,
    out: TypedArray,
    token: object | undefined,
    opts: NewtonUpdateOptions,
    pool?: ThreadPool,
  ): { maxAbsDiff: number; rows: RowUpdate };
}

/**
 * Bytes of a chunk's working set (its rows, r, J, scratch): within L2. Measured (GRU, B = 16,
 * T = 1e4, 2 MiB L2): 512 KiB took ~0.9× the time of 192 KiB at n = 8, as fast at n = 1, 64.
 */
const CHUNK_BYTES = 512 * 1024;

/**
 * The fused step of a residual program (one output, a Jacobian) split by `splitInputOnly`, or
 * undefined where the generator does not know an op or the runtime lacks WebAssembly SIMD.
 * Throws Unsupported for shapes it does not fuse (recurrences of more than SCAN_UPDATE_MAX
 * multiply-adds per step).
 */
export function wasmDeerStep(
  g: Graph,
  hoisted: readonly NodeId[],
  frontier: readonly NodeId[],
  rest: readonly NodeId[],
  outputs: readonly NodeId[],
  jacobian: { readonly expr: MatExpr; readonly blockSize: number },
): WasmDeerStep | undefined {
  const n = g.stateSize;
  const s = jacobian.blockSize;
  if (outputs.length !== 1 || g.nodes[outputs[0]!]!.size !== n) throw new Unsupported('deerStep: one residual');
  if (n * s > SCAN_UPDATE_MAX) throw new Unsupported('deerStep: a dense Jacobian this large');
  const split = stepSpecs(g, hoisted, frontier, rest, outputs, 'vec', jacobian);
  if (!split) return undefined;
  const { specs, leaves, hN } = split;
  const k = compiledKernels(g, specs, [{ name: 'su', body: scanUpdateBody(n, s) }]);
  if (!k) return undefined;
  const meta: DeerRowsMeta = {
    ...moduleLayout(k, frontier.length > 0),
    leafOps: leaves.map((id) => g.nodes[id]!.op as 'state' | 'cotangent' | 'input'),
    hN,
    n,
    s,
    m: g.inputSize,
    fSizes: frontier.map((id) => g.nodes[id]!.size),
    chunkBytes: CHUNK_BYTES,
    state: STATE,
  };
  const job = jobFromSource(
    `return (${deerRows.toString()})(new Uint8Array([${k.bytes.join(',')}]), ${JSON.stringify(meta)}, (${wasmInstance.toString()}));`,
  );
  return wasmDeerStepOf(job, meta);
}

/** What the row runner needs to know of its module besides the bytes. */
interface DeerRowsMeta extends ModuleLayout {
  readonly leafOps: readonly ('state' | 'cotangent' | 'input')[];
  /** Externals of `h` (each the input). */
  readonly hN: number;
  readonly n: number;
  readonly s: number;
  readonly m: number;
  readonly fSizes: readonly number[];
  readonly chunkBytes: number;
  readonly state: typeof STATE;
}

/** Per row of the runner's results: max |Δ|, NaN met, max scaled, replaced, clipped, settled. */
const RES = 6;

/** Ids of tokens (threads cannot share objects): the id names the token's hoisted values. */
const tokenIds = new WeakMap<object, number>();
let lastTokenId = 0;

function wasmDeerStepOf(job: Job, meta: DeerRowsMeta): WasmDeerStep {
  const { n } = meta;
  const fTot = meta.fSizes.reduce((a, b) => a + b, 0);
  return {
    hoistBytes: (B, T) => Math.ceil(B / 4) * T * 16 * fTot,
    run(P, B, T, x, y0, prev, out, token, opts, pool) {
      let id = 0;
      if (token) {
        id = tokenIds.get(token) ?? ++lastTokenId;
        tokenIds.set(token, id);
      }
      // The least float32 ≥ clip: v ≥ it exactly when v ≥ clip, for float32 v.
      let clipHi = Math.fround(opts.clip);
      if (clipHi < opts.clip) {
        const u = new Uint32Array(new Float32Array([clipHi]).buffer);
        u[0] = clipHi >= 0 ? u[0]! + 1 : u[0]! - 1;
        clipHi = new Float32Array(u.buffer)[0]!;
      }
      const active = opts.active ?? null;
      const o = [opts.atol, opts.rtol, opts.clip, clipHi];
      // Row groups in ranges of whole groups, one per thread.
      const Bq = Math.ceil(B / 4);
      const parts = pool ? Math.min(pool.size, Bq) : 1;
      const res = parts > 1 ? (sharedArray(Float64Array, RES * B) as Float64Array) : new Float64Array(RES * B);
      const cuts = Array.from({ length: parts + 1 }, (_, i) => Math.min(B, 4 * Math.round((i * Bq) / parts)));
      const call = (i: number) => [P, cuts[i], cuts[i + 1], B, T, x, y0, prev, out, id, o, active, res] as const;
      if (pool && parts > 1) pool.calls(cuts.slice(0, -1).map((b0, i) => (cuts[i + 1]! > b0 ? [[job, call(i)]] : [])));
      else job.fn(...call(0));
      const rows: RowUpdate = {
        maxScaledDiff: new Float64Array(B),
        replaced: new Uint32Array(B),
        clipped: new Uint32Array(B),
        settled: new Uint32Array(B),
      };
      // Held rows: the iterate as it was, nothing counted. max |Δ| folds over rows in order.
      let maxAbs = 0;
      for (let b = 0; b < B; b++) {
        if (active && !active[b]) {
          out.set(prev.subarray(b * T * n, (b + 1) * T * n), b * T * n);
          continue;
        }
        const r = res[RES * b]!;
        if (res[RES * b + 1] || !(r <= maxAbs)) maxAbs = r;
        rows.maxScaledDiff[b] = res[RES * b + 2]!;
        rows.replaced[b] = res[RES * b + 3]!;
        rows.clipped[b] = res[RES * b + 4]!;
        rows.settled[b] = res[RES * b + 5]!;
      }
      return { maxAbsDiff: maxAbs, rows };
    },
  };
}

/**
 * The runner of rows [b0, b1) (b0 a multiple of 4) on its own instance of the module: writes their
 * new iterate into `out` (active rows only) and RES values per row into `res`. o: atol, rtol, clip,
 * the least float32 ≥ clip. `id` names the input and params whose hoisted values it keeps (0:
 * none, computed per chunk). Self-contained (no free variables; `instantiate` is wasmInstance): its
 * source runs in worker threads.
 */
function deerRows(bytes: Uint8Array, meta: DeerRowsMeta, instantiate: typeof wasmInstance) {
  type Fn = (...args: number[]) => void;
  const inst = instantiate({ bytes, consts: meta.consts, dataEnd: meta.dataEnd });
  const { mem } = inst;
  const h = inst.exports.h as Fn | undefined;
  const kk = inst.exports.k as Fn;
  const su = inst.exports.su as Fn;
  let F = inst.F;
  const { leafOps, hN, n, s, m, fSizes, hBytes, kBytes, state: ST } = meta;
  let fTot = 0;
  for (const f of fSizes) fTot += f;
  const nF = fSizes.length;
  const readsX = hN > 0 || leafOps.includes('input');
  const hArgs: number[] = new Array(2 + 3 * (hN + nF)).fill(0);
  const kArgs: number[] = new Array(2 + 3 * (leafOps.length + nF + 2)).fill(0);
  /** What the cache region holds: token id, B, T, rows. */
  let held = '';

  return function rows(
    P: readonly TypedArray[],
    b0: number,
    b1: number,
    B: number,
    T: number,
    x: TypedArray,
    y0: TypedArray,
    prev: TypedArray,
    out: TypedArray,
    id: number,
    o: readonly number[],
    active: Uint8Array | null,
    res: Float64Array,
  ): void {
    for (const p of meta.params) F.set(P[p.index]!.subarray(0, p.size), p.offset / 4);
    const Bq = Math.ceil((b1 - b0) / 4);
    const cached = h !== undefined && id !== 0;
    // A chunk of L steps: four rows of the iterate (one step more) and input, r, J, scratch.
    let per = kBytes + 16 * n + 16 * n * s + 16 * n + (readsX ? 16 * m : 0);
    if (h && !cached) per += hBytes + 16 * fTot;
    const L = Math.max(1, Math.min(T, Math.floor(meta.chunkBytes / per)));
    // Memory: params | hoisted values ([Bq][T] groups when cached, else a chunk's) | X | Y | R | J
    // | scratch of h, k | the lanes' running state.
    let at = meta.dataEnd;
    const fAll: number[] = [];
    for (let q = 0; q < nF; q++) {
      fAll.push(at);
      at += 16 * fSizes[q]! * (cached ? Bq * T : L);
    }
    const xls = 4 * L * m;
    const X = at;
    at += readsX ? 4 * xls : 0;
    const yls = 4 * (L + 1) * n;
    const Y = at;
    at += 4 * yls;
    const R = at;
    at += 16 * n * L;
    const J = at;
    at += 16 * n * s * L;
    const hsp = at;
    at += h ? L * hBytes : 0;
    const ksp = at;
    at += L * kBytes;
    const S = at;
    at += 16 * n + ST.bytes;
    inst.ensure(at); // growing keeps the memory's contents: held values stay valid
    F = inst.F;
    const Xf = X / 4;
    const Yf = Y / 4;
    /** The four rows' inputs of steps [t0, t0 + Lc) into X (padding lanes zero). */
    const inputIn = (q: number, t0: number, Lc: number) => {
      for (let l = 0; l < 4; l++) {
        const b = b0 + 4 * q + l;
        const to = Xf + (l * xls) / 4;
        if (b < b1) F.set(x.subarray((b * T + t0) * m, (b * T + t0 + Lc) * m), to);
        else F.fill(0, to, to + Lc * m);
      }
    };
    const hoist = (Lc: number, fAt: (q: number) => number) => {
      hArgs[0] = Lc;
      hArgs[1] = hsp;
      let a = 2;
      for (let j = 0; j < hN; j++) {
        hArgs[a++] = X;
        hArgs[a++] = 4 * m;
        hArgs[a++] = xls;
      }
      for (let j = 0; j < nF; j++) {
        hArgs[a++] = fAt(j);
        hArgs[a++] = 16 * fSizes[j]!;
        hArgs[a++] = 0;
      }
      h!(...hArgs);
    };
    const key = `${id}|${B}|${T}|${b0}|${b1}`;
    if (cached && held !== key) {
      held = '';
      for (let q = 0; q < Bq; q++) {
        for (let t0 = 0; t0 < T; t0 += L) {
          const Lc = Math.min(L, T - t0);
          inputIn(q, t0, Lc);
          hoist(Lc, (j) => fAll[j]! + (q * T + t0) * 16 * fSizes[j]!);
        }
      }
      held = key;
    } else if (!cached) held = '';

    for (let q = 0; q < Bq; q++) {
      const live = [0, 1, 2, 3].filter((l) => b0 + 4 * q + l < b1 && (!active || active[b0 + 4 * q + l]));
      if (live.length === 0) continue;
      // Running state: δ = 0, measures 0, no bad step yet; the options.
      const S4 = S / 4;
      const st = S + 16 * n;
      F.fill(0, S4, S4 + 4 * n + ST.firstBad / 4);
      new Int32Array(mem.buffer, st + ST.firstBad, 4).fill(-1);
      new Float64Array(mem.buffer, st + ST.atol, 4).set([o[0]!, o[0]!, o[1]!, o[1]!]);
      F.fill(o[3]!, (st + ST.clipHi) / 4, (st + ST.clipHi) / 4 + 4);
      F.fill(o[2]!, (st + ST.clipStore) / 4, (st + ST.clipStore) / 4 + 4);
      for (let t0 = 0; t0 < T; t0 += L) {
        const Lc = Math.min(L, T - t0);
        // The iterate of steps [t0 − 1, t0 + Lc) (y0 before the first), per lane.
        for (let l = 0; l < 4; l++) {
          const b = b0 + 4 * q + l;
          const to = Yf + (l * yls) / 4;
          if (b >= b1) {
            F.fill(0, to, to + (Lc + 1) * n);
            continue;
          }
          if (t0 === 0) {
            F.set(y0.subarray(b * n, (b + 1) * n), to);
            F.set(prev.subarray(b * T * n, (b * T + Lc) * n), to + n);
          } else F.set(prev.subarray((b * T + t0 - 1) * n, (b * T + t0 + Lc) * n), to);
        }
        if (readsX && (!cached || leafOps.includes('input'))) inputIn(q, t0, Lc);
        if (h && !cached) hoist(Lc, (j) => fAll[j]!);
        kArgs[0] = Lc;
        kArgs[1] = ksp;
        let a = 2;
        for (const op of leafOps) {
          if (op === 'input') {
            kArgs[a++] = X;
            kArgs[a++] = 4 * m;
            kArgs[a++] = xls;
          } else {
            kArgs[a++] = op === 'state' ? Y : Y + 4 * n;
            kArgs[a++] = 4 * n;
            kArgs[a++] = yls;
          }
        }
        for (let j = 0; j < nF; j++) {
          kArgs[a++] = fAll[j]! + (cached ? (q * T + t0) * 16 * fSizes[j]! : 0);
          kArgs[a++] = 16 * fSizes[j]!;
          kArgs[a++] = 0;
        }
        kArgs[a++] = R;
        kArgs[a++] = 16 * n;
        kArgs[a++] = 0;
        kArgs[a++] = J;
        kArgs[a++] = 16 * n * s;
        kArgs[a++] = 0;
        kk(...kArgs);
        su(Lc, t0, R, J, Y, yls, S);
        for (const l of live) {
          const b = b0 + 4 * q + l;
          const from = Yf + (l * yls) / 4 + n;
          out.set(F.subarray(from, from + Lc * n), (b * T + t0) * n);
        }
      }
      // f64 pairs: max |Δ| (lanes 0, 1 | 2, 3), then (past the NaN masks) max scaled; i32 lanes.
      const f64 = new Float64Array(mem.buffer, st, 12);
      const i32 = new Int32Array(mem.buffer, st + ST.replaced, 12);
      const nanMask = new Int32Array(mem.buffer, st + ST.nan, 4);
      for (const l of live) {
        const r = 6 * (b0 + 4 * q + l);
        const fl = 2 * (l >> 1) + (l & 1);
        res[r] = f64[fl]!;
        res[r + 1] = nanMask[l] ? 1 : 0;
        res[r + 2] = f64[8 + fl]!;
        res[r + 3] = i32[l]!;
        res[r + 4] = i32[4 + l]!;
        res[r + 5] = i32[8 + l] === -1 ? T : i32[8 + l]!;
      }
    }
  };
}
