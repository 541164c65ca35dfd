import type { TypedArray } from '@deerjs/core';
import { fixScanSource, localScanSource, rangeScanSource, UNROLL_SCAN } from './scan.js';
import { type Call, isShared, type Job, jobFromSource, sharedArray, type ThreadPool } from './threads.js';

/**
 * The linear recurrence split over worker threads: by whole batch rows (the same arithmetic as
 * one thread), or, where that is predicted slower (fewer rows than threads, say), by cutting time
 * in one chunk per thread, in three passes:
 *
 * 1. the first chunk (in scan order) is scanned from the true start; every other chunk is scanned
 *    from zero while the product of its transitions so far is kept (float64, per step);
 * 2. the calling thread walks the chunk boundaries: the state before chunk k + 1 is chunk k's
 *    local end plus its product times the state before chunk k;
 * 3. every step past the first chunk adds its product times its chunk's starting state, split
 *    evenly over the threads;
 * 4. the calling thread scans again, step by step from the state before it, each row's chunk
 *    whose results pass 3 found not finite. A recurrence that expands over a chunk overflows its
 *    product (A = 2 over 1100 steps), and Inf·0 gave NaN where the true state is 0 (a zero
 *    prefix, an unstable fixed point) and NaN where the state is finite: a converged solve on one
 *    thread was a non-finite iterate on two. Where the trajectory itself overflows, this pass
 *    gives the values one thread gives.
 *
 * Pass 3 has no dependency from step to step, so it runs faster than a scan where the scan is
 * bound by the latency of its step-to-step chain (one block per step); pass 1 costs more than a
 * plain scan (the products: s³ multiply-adds per block against s²), so the first chunk is made
 * longer by that ratio, and scans are time-chunked only where the predicted gain is worth it
 * (small blocks, or many threads). Results differ from one thread's by float rounding only: the
 * local states and the products are rounded differently from the states they add up to.
 */

/** Fewest multiply-adds (B·T·n·s) a scan is split over threads for. */
const PARALLEL_MIN = 1 << 16;
/** Fewest steps in a time chunk. */
const CHUNK_MIN = 2048;
/** Float64s of transition products held at once (32 MiB); longer scans go window by window. */
const PRODUCTS_BUDGET = 1 << 22;

interface ScanJobs {
  readonly range: Job;
  readonly local: Job;
  readonly fix: Job;
}
const jobs = new Map<string, ScanJobs | null>();

function scanJobs(s: number, reverse: boolean, f32: boolean): ScanJobs | undefined {
  const key = `${s}:${reverse}:${f32}`;
  if (!jobs.has(key)) {
    let j: ScanJobs | null;
    try {
      j = {
        range: jobFromSource(rangeScanSource(s, reverse, f32)),
        local: jobFromSource(localScanSource(s, reverse, f32)),
        fix: jobFromSource(fixScanSource(s)),
      };
    } catch {
      j = null; // no eval here: one thread scans
    }
    jobs.set(key, j);
  }
  return jobs.get(key) ?? undefined;
}

/**
 * Costs relative to a plain scan step, measured on x86-64 with V8 (float32): ρ, a pass-1 step
 * (local scan and product: the product adds s³ multiply-adds to the scan's s²), and f, a fix-up
 * step. With one block per step (n = s) the plain scan is bound by the latency of its chain, so
 * the product runs beside it nearly free for s ≤ 2 and the fix-up is cheap (ρ 1, 1.2, 4, 9.4 and
 * f 0.43, 0.68, 0.8, 0.92 for s = 1, 2, 4, 8); with several blocks their chains run interleaved
 * and the plain scan is bound by throughput instead (ρ 1.4, 1.6, 2.8, 6.5 and f ≈ 1).
 */
function costs(s: number, oneBlock: boolean): { rho: number; fix: number } {
  if (oneBlock) return { rho: s <= 2 ? 1 + 0.2 * (s - 1) : 1.2 * s - 0.2, fix: Math.min(0.95, 0.3 + 0.13 * s) };
  return { rho: 0.8 * s + 0.6, fix: 1 };
}

/**
 * Speed-up of the time-chunked scan on P threads over one thread: the first chunk is ρ times as
 * long as the others (P − 1 of them, Lk steps each), so pass 1 takes ρ·Lk and pass 3
 * f·(P − 1)·Lk/P, against (ρ + P − 1)·Lk steps on one thread.
 */
const gain = (rho: number, fix: number, P: number) => (rho + P - 1) / (rho + (fix * (P - 1)) / P);

/** Smallest predicted speed-up a time-chunked scan is run for. */
const MIN_GAIN = 1.25;

/** Splits [0, N) in `parts` ranges as even as possible. */
const split = (N: number, parts: number) =>
  Array.from({ length: parts + 1 }, (_, i) => Math.round((i * N) / parts));

export class ThreadedScan {
  /** Shared scratch of transition products, grown as needed (at most PRODUCTS_BUDGET). */
  private products?: Float64Array;

  /**
   * `getPool` is called only for scans that will be split (it may start the workers). Tests lower
   * `productsBudget` (float64s) to exercise windows, and `minGain` to split every scan they can.
   */
  constructor(
    private readonly getPool: () => ThreadPool,
    private readonly tuning: { readonly productsBudget?: number; readonly minGain?: number } = {},
  ) {}

  private get pool(): ThreadPool {
    return this.getPool();
  }

  /** Drops the products scratch (the backend's destroy). */
  clear(): void {
    this.products = undefined;
  }

  /**
   * The scan of `scanFast` over the pool's threads; false (nothing done) when it is too small to
   * pay, its blocks are larger than UNROLL_SCAN, or an array the workers need is not shared.
   * `threads` is the pool's size.
   */
  run(
    A: TypedArray,
    c: TypedArray,
    y0: TypedArray,
    out: TypedArray,
    B: number,
    T: number,
    n: number,
    s: number,
    reverse: boolean,
    threads: number,
  ): boolean {
    const P = threads;
    if (P < 2 || s > UNROLL_SCAN || B * T * n * s < PARALLEL_MIN) return false;
    if (![A, c, out].every(isShared)) return false;
    // Whole rows per thread (no extra work, but as many rows as the busiest thread gets), or time
    // chunks, whichever is predicted faster.
    const { rho, fix } = costs(s, n === s);
    const byRowsGain = B / Math.ceil(B / P);
    const byTimeGain = T >= P * CHUNK_MIN ? gain(rho, fix, P) : 0;
    const best = Math.max(byRowsGain, byTimeGain);
    if (best <= 1 || best < (this.tuning.minGain ?? MIN_GAIN)) return false;
    const byRows = byRowsGain >= byTimeGain;
    const j = scanJobs(s, reverse, out instanceof Float32Array);
    if (!j || this.pool.size !== P) return false;
    if (byRows) {
      const rows = split(B, P);
      this.pool.calls(
        Array.from({ length: P }, (_, i): Call[] =>
          rows[i + 1]! > rows[i]! ? [[j.range, [A, c, out, y0, 0, n, T, n, rows[i], rows[i + 1], 0, T]]] : [],
        ),
      );
      return true;
    }
    // Window length: its products (all chunks but the first) within the budget.
    const budget = this.tuning.productsBudget ?? PRODUCTS_BUDGET;
    const perStep = B * n * s;
    const W = Math.max(P * CHUNK_MIN, Math.floor((Math.floor(budget / perStep) * (rho + P - 1)) / (P - 1)));
    const Arr = out instanceof Float32Array ? Float32Array : Float64Array;
    const starts = sharedArray(Arr, P * B * n);
    for (let w0 = 0; w0 < T; ) {
      const L = Math.min(W, T - w0);
      // The state before step w0: y0, or the previous window's last step.
      const tPrev = reverse ? T - w0 : w0 - 1;
      const [Y, yBase, yStride] = w0 === 0 ? [y0, 0, n] : [out, tPrev * n, T * n];
      if (L < P * CHUNK_MIN) {
        j.range.fn(A, c, out, Y, yBase, yStride, T, n, 0, B, w0, w0 + L);
      } else {
        this.window(j, A, c, out, Y, yBase, yStride, starts, B, T, n, s, reverse, w0, L, rho);
      }
      w0 += L;
    }
    return true;
  }

  /** Steps [w0, w0 + L) in P chunks, by the three passes. */
  private window(
    j: ScanJobs,
    A: TypedArray,
    c: TypedArray,
    out: TypedArray,
    Y: TypedArray,
    yBase: number,
    yStride: number,
    starts: TypedArray,
    B: number,
    T: number,
    n: number,
    s: number,
    reverse: boolean,
    w0: number,
    L: number,
    rho: number,
  ): void {
    const P = this.pool.size;
    const Lk = Math.max(1, Math.floor(L / (rho + P - 1)));
    // Chunk k is steps [ub[k], ub[k + 1]); the first is the long one.
    const ub = Array.from({ length: P + 1 }, (_, k) => (k === 0 ? w0 : w0 + L - (P - k) * Lk));
    // Products of the steps past the first chunk, by time from tLo.
    const q0 = ub[1]!;
    const Lq = w0 + L - q0;
    const tLo = reverse ? T - q0 - Lq : q0;
    const need = B * Lq * n * s;
    if (!this.products || this.products.length < need) {
      this.products = sharedArray(Float64Array, need) as Float64Array;
    }
    const Q = this.products;
    const local = (k: number): Call =>
      k === 0
        ? [j.range, [A, c, out, Y, yBase, yStride, T, n, 0, B, ub[0], ub[1]]]
        : [j.local, [A, c, out, Q, Lq, tLo, T, n, 0, B, ub[k], ub[k + 1]]];
    this.pool.calls(Array.from({ length: P }, (_, k) => [local(k)]));
    boundaries(out, Q, Lq, tLo, starts, ub, B, T, n, s, reverse);
    // Pass 3: steps [q0, w0 + L) evenly over the threads, each share cut at chunk boundaries.
    const cut = split(Lq, P).map((v) => q0 + v);
    // Per (share i, chunk k, row b): 0 where the fix-up's results were finite, else NaN.
    const flags = sharedArray(Float64Array, P * P * B) as Float64Array;
    const fix: Call[][] = [];
    for (let i = 0; i < P; i++) {
      const calls: Call[] = [];
      for (let k = 1; k < P; k++) {
        const from = Math.max(cut[i]!, ub[k]!);
        const to = Math.min(cut[i + 1]!, ub[k + 1]!);
        if (to <= from) continue;
        const [tA, tB] = reverse ? [T - to, T - from] : [from, to];
        calls.push([j.fix, [out, Q, Lq, tLo, starts, k * B * n, T, n, 0, B, tA, tB, flags, (i * P + k) * B]]);
      }
      fix.push(calls);
    }
    this.pool.calls(fix);
    // Pass 4, in scan order, so that a chunk scanned again starts from final values.
    for (let b = 0; b < B; b++)
      for (let k = 1; k < P; k++) {
        let finite = true;
        for (let i = 0; i < P; i++) if (flags[(i * P + k) * B + b] !== 0) finite = false;
        if (finite) continue;
        const before = reverse ? T - ub[k]! : ub[k]! - 1;
        j.range.fn(A, c, out, out, before * n, T * n, T, n, b, b + 1, ub[k], ub[k + 1]);
      }
  }
}

/**
 * Pass 2: the state before each chunk k ≥ 1, into starts[(k·B + b)·n]: for k = 1 the first
 * chunk's last state (final after pass 1); after that, the previous chunk's last local state plus
 * its last product times the previous start, rounded as `out` stores it and summed in the order
 * of the fix-up pass, so that both agree.
 */
function boundaries(
  out: TypedArray,
  Q: Float64Array,
  Lq: number,
  tLo: number,
  starts: TypedArray,
  ub: readonly number[],
  B: number,
  T: number,
  n: number,
  s: number,
  reverse: boolean,
): void {
  const P = ub.length - 1;
  const time = (u: number) => (reverse ? T - 1 - u : u);
  for (let b = 0; b < B; b++) {
    const e = (b * T + time(ub[1]! - 1)) * n;
    starts.set(out.subarray(e, e + n), (B + b) * n);
    for (let k = 2; k < P; k++) {
      const t = time(ub[k]! - 1);
      const base = (b * T + t) * n;
      const prev = ((k - 1) * B + b) * n;
      const next = (k * B + b) * n;
      const qb = (b * Lq + t - tLo) * n;
      for (let blk = 0; blk < n; blk += s) {
        const qk = (qb + blk) * s;
        for (let i = 0; i < s; i++) {
          let acc = Q[qk + i * s]! * starts[prev + blk]!;
          for (let jj = 1; jj < s; jj++) acc += Q[qk + i * s + jj]! * starts[prev + blk + jj]!;
          starts[next + blk + i] = out[base + blk + i]! + acc;
        }
      }
    }
  }
}
