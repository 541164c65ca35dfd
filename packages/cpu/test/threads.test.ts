import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type Cell, cells, deer, hostNewtonUpdate, Rng, type Tensor } from '@deerjs/core';
import { afterAll, describe, expect, it } from 'vitest';
import { scanFast } from '../src/compiled/scan.js';
import { ThreadedScan } from '../src/compiled/scan-threads.js';
import { availableThreads, type Call, jobFromFunction, sharedArray, ThreadPool } from '../src/compiled/threads.js';
import { threadedNewtonUpdate } from '../src/compiled/update.js';
import { FastCpuBackend } from '../src/index.js';

const rng = new Rng(3);

/**
 * The first few entries where two arrays differ (Object.is, as toEqual compares numbers), and a
 * length mismatch: one assertion instead of toEqual's deep walk of 10⁵–10⁶ entries.
 */
function mismatches(got: ArrayLike<number>, want: ArrayLike<number>): string[] {
  const out: string[] = [];
  if (got.length !== want.length) out.push(`length ${got.length} vs ${want.length}`);
  for (let i = 0; i < Math.min(got.length, want.length) && out.length < 5; i++)
    if (!Object.is(got[i], want[i])) out.push(`[${i}] ${got[i]} vs ${want[i]}`);
  return out;
}

describe('worker threads', () => {
  it('give the same runStep outputs and Jacobians as one thread, bit for bit', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
    const params = cell.init({ seed: 2 });
    const B = 2;
    const T = 3001;
    const x = rng.normalArray(B * T * 3, 1);
    const y = rng.normalArray(B * T * 4, 0.5);
    const results: Float64Array[][] = [];
    for (const threads of [1, 2, 3]) {
      for (const dtype of ['float64', 'float32'] as const) {
        const be = new FastCpuBackend({ threads, dtype });
        const p: Record<string, Tensor> = {};
        for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
        const xt = be.tensor(x, [B, T, 3]);
        const got: Float64Array[] = [];
        for (const s of [1, 4]) {
          // Twice: the second call reads the hoisted input work kept from the first.
          for (let r = 0; r < 2; r++) {
            const out = be.runStep(cell.linearizeProgram(s), {
              state: be.tensor(y, [B, T, 4]),
              input: xt,
              params: p,
            });
            got.push(
              Float64Array.from(await be.read(out.outputs[0]!)),
              Float64Array.from(await be.read(out.jacobian!)),
            );
          }
        }
        const d = await deer(be, cell, p, xt);
        got.push(Float64Array.from(await be.read(d.y)));
        // The pool exists exactly when more than one thread is available and asked for (two rows are
        // too few for the fused step: the composed one's scan and update split over the threads).
        expect((be as unknown as { pool?: unknown }).pool !== undefined).toBe(be.threads > 1);
        be.destroy();
        results.push(got);
      }
    }
    for (let k = 2; k < results.length; k++) {
      const a = results[k % 2]!;
      const b = results[k]!;
      expect(b.length).toBe(a.length);
      for (let i = 0; i < b.length; i++) expect(mismatches(b[i]!, a[i]!), `result ${k}, output ${i}`).toEqual([]);
    }
  });

  it('split float32 WebAssembly runStep by groups of elements, bit for bit with one thread', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
    const params = cell.init({ seed: 6 });
    // B·T·n = 72 012 ≥ 2^16: the threaded path; E = 18 003, a partial last group.
    const B = 3;
    const T = 6001;
    const x = rng.normalArray(B * T * 3, 1);
    const y = rng.normalArray(B * T * 4, 0.5);
    const results: Float32Array[][] = [];
    for (const threads of [1, 2, 3]) {
      const be = new FastCpuBackend({ threads, dtype: 'float32' });
      const p: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
      const xt = be.tensor(x, [B, T, 3]);
      const got: Float32Array[] = [];
      for (const s of [1, 2, 4]) {
        // Twice: the second call reads each thread's hoisted values kept from the first.
        for (let r = 0; r < 2; r++) {
          const out = be.runStep(cell.linearizeProgram(s), { state: be.tensor(y, [B, T, 4]), input: xt, params: p });
          got.push(Float32Array.from(await be.read(out.outputs[0]!)), Float32Array.from(await be.read(out.jacobian!)));
        }
      }
      // runStep alone started the pool (nothing else ran).
      expect((be as unknown as { pool?: unknown }).pool !== undefined).toBe(be.threads > 1);
      be.destroy();
      results.push(got);
    }
    for (let k = 1; k < results.length; k++) {
      const a = results[0]!;
      const b = results[k]!;
      expect(b.length).toBe(a.length);
      for (let i = 0; i < b.length; i++) {
        const eq = b[i]!.every((v, j) => Object.is(v, a[i]![j]));
        expect(eq).toBe(true);
      }
    }
  });
});

/** A shared copy of `data` (the threaded passes need SharedArrayBuffer-backed arrays). */
const shared = (Arr: Float64ArrayConstructor | Float32ArrayConstructor, data: ArrayLike<number>) =>
  sharedArray(Arr, data.length, Arr.from(data));

describe('threaded scan', () => {
  // Blocks with entries |a| ≤ 0.9/s: row and column sums ≤ 0.9, so forward (A) and reverse (Aᵀ)
  // transitions are contractions with ρ = 0.9 in the ∞-norm. One thread rounds each state once;
  // the time-chunked scan rounds each local state once (|z| ≤ 2M, M = max |y|), then the fix-up
  // once, and the products in float64. A rounding error made at one step shrinks by ρ per step, so
  // the two differ by at most (1 + 2 + 1)·ε·M/(1 − ρ) = 40·ε·M.
  const pools = [2, 3].map((size) => new ThreadPool(size));
  afterAll(() => {
    for (const p of pools) p.destroy();
  });
  // Lengths prime or odd (not divisible by the chunk counts); split by rows, and by time with one
  // row or several (B = 3 on 2 threads, B = 2 on 3); too short for a chunk per thread with one row
  // (one thread scans).
  const cases: [B: number, T: number, n: number, s: number][] = [
    [1, 70001, 1, 1],
    [1, 22003, 3, 1],
    [1, 9001, 4, 2],
    [1, 6151, 8, 4],
    [1, 6301, 8, 8],
    [3, 11001, 2, 1],
    [3, 22001, 1, 1],
    [3, 6301, 4, 2],
    [2, 20000, 2, 1],
    [2, 40000, 1, 1],
    [6, 4001, 2, 2],
    [5, 3001, 8, 1],
    [1, 2, 32768, 1],
  ];
  for (const pool of pools)
    for (const [B, T, n, s] of cases)
      for (const reverse of [false, true])
        for (const dtype of ['float64', 'float32'] as const) {
          it(`${pool.size} threads, B=${B} T=${T} n=${n} s=${s}${reverse ? ' reversed' : ''} ${dtype}`, () => {
            const Arr = dtype === 'float32' ? Float32Array : Float64Array;
            const A = shared(
              Arr,
              rng.normalArray(B * T * n * s, 1).map((v) => (0.9 * Math.tanh(v)) / s),
            );
            const c = shared(Arr, rng.normalArray(B * T * n, 1));
            const y0 = Arr.from(rng.normalArray(B * n, 1));
            const want = new Arr(B * T * n);
            scanFast(A, c, y0, want, B, T, n, s, reverse);
            // A small products budget: long scans go window by window.
            for (const budget of [1 << 22, 3000]) {
              const got = sharedArray(Arr, B * T * n);
              const split = new ThreadedScan(() => pool, { productsBudget: budget, minGain: 0 }).run(
                A,
                c,
                y0,
                got,
                B,
                T,
                n,
                s,
                reverse,
                pool.size,
              );
              // Split by rows with two or more, else by time with a chunk (2048 steps) per thread.
              expect(split).toBe(B >= 2 || T >= pool.size * 2048);
              if (!split) continue;
              let M = 0;
              for (const v of want) M = Math.max(M, Math.abs(v));
              const eps = dtype === 'float32' ? 2 ** -24 : 2 ** -53;
              let worst = 0;
              for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
              expect(worst).toBeLessThanOrEqual(40 * eps * M);
            }
          });
        }

  // Transitions 2·I: the chunks' products overflow within ~1100 steps (float64; 128 in float32).
  // From the zero state, or the unstable fixed point y = −c, the states stay exactly where they
  // are, and where they do grow they overflow as one thread's do: every entry as one thread's.
  // The fix-up had given Inf·0 = NaN from the second chunk on.
  for (const pool of pools)
    for (const [B, T, n, s] of [
      [1, 70001, 1, 1],
      [3, 22003, 1, 1],
      [1, 17011, 2, 2],
      [1, 9001, 4, 2],
    ] as const)
      for (const start of ['zero', 'fixed point', 'growing'] as const)
        for (const reverse of [false, true])
          for (const dtype of ['float64', 'float32'] as const)
            it(`${pool.size} threads, B=${B} T=${T} n=${n} s=${s}, expanding from the ${start}${reverse ? ' reversed' : ''} ${dtype}: as one thread`, () => {
              const Arr = dtype === 'float32' ? Float32Array : Float64Array;
              const eye2 = Array.from({ length: s * s }, (_, q) => (q % (s + 1) === 0 ? 2 : 0));
              const A = shared(Arr, Array.from({ length: B * T * n * s }, (_, i) => eye2[i % (s * s)]!));
              const cv = start === 'fixed point' ? 1 : 0;
              const c = shared(Arr, new Array(B * T * n).fill(cv));
              const y0 = new Arr(B * n).fill(start === 'zero' ? 0 : start === 'fixed point' ? -1 : 1);
              const want = new Arr(B * T * n);
              scanFast(A, c, y0, want, B, T, n, s, reverse);
              const got = sharedArray(Arr, B * T * n);
              const split = new ThreadedScan(() => pool, { minGain: 0 }).run(A, c, y0, got, B, T, n, s, reverse, pool.size);
              expect(split).toBe(true);
              expect(mismatches(got, want)).toEqual([]);
              if (start !== 'growing') expect(want.every((v) => v === (start === 'zero' ? 0 : -1))).toBe(true);
            });

  it('runs on one thread where it does not pay or cannot', () => {
    const pool = pools[0]!;
    const sc = new ThreadedScan(() => pool);
    const A = sharedArray(Float64Array, 100 * 4, new Float64Array(400).fill(0.5));
    const c = sharedArray(Float64Array, 400);
    const out = sharedArray(Float64Array, 400);
    // Too small, blocks too large, not shared.
    expect(sc.run(A, c, new Float64Array(4), out, 1, 100, 4, 1, false, 2)).toBe(false);
    const big = 1 << 16;
    const Ab = sharedArray(Float64Array, big * 16 * 16);
    expect(sc.run(Ab, sharedArray(Float64Array, big * 16), new Float64Array(16), sharedArray(Float64Array, big * 16), 1, big, 16, 16, false, 2)).toBe(false);
    expect(sc.run(new Float64Array(big), new Float64Array(big), new Float64Array(1), sharedArray(Float64Array, big), 1, big, 1, 1, false, 2)).toBe(false);
  });
});

describe('threaded Newton update', () => {
  const pools = [2, 3].map((size) => new ThreadPool(size));
  afterAll(() => {
    for (const p of pools) p.destroy();
  });
  // Exactly core's hostNewtonUpdate: the same stored values, the same maxima, counts and settled
  // fronts, NaNs included (each range's measures are merged in element order).
  const cases: [B: number, T: number, inner: number][] = [
    [1, 70001, 1],
    [1, 33335, 3],
    [3, 30001, 1],
    [5, 9001, 2],
  ];
  for (const pool of pools)
    for (const [B, T, inner] of cases)
      for (const dtype of ['float64', 'float32'] as const)
        for (const delta of [false, true])
          for (const held of [false, true]) {
            it(`${pool.size} threads, B=${B} T=${T} inner=${inner} ${dtype}${delta ? ' delta' : ''}${held ? ' row 0 held' : ''}`, () => {
              const Arr = dtype === 'float32' ? Float32Array : Float64Array;
              const E = B * T * inner;
              const raw = Float64Array.from(rng.normalArray(E, 1));
              const old = Float64Array.from(rng.normalArray(E, 1));
              // Non-finite and huge entries (replaced and clipped), exact zeros (no change), a NaN
              // in the old iterate, all at spread-out places.
              for (let k = 0; k < 40; k++) {
                const i = Math.floor(((k * 7919) % 997) * (E / 997)) + (k % 3);
                if (i >= E) continue;
                const v = [Number.NaN, Number.POSITIVE_INFINITY, -1e9, 1e9, 0][k % 5]!;
                raw[i] = v;
                if (v === 0) raw[i] = delta ? 0 : old[i]!;
              }
              old[Math.floor(E / 2) + 1] = Number.NaN;
              const rawS = shared(Arr, raw);
              const oldS = shared(Arr, old);
              const active = held ? Uint8Array.from({ length: B }, (_, b) => (b === 0 ? 0 : 1)) : undefined;
              const opts = { atol: 1e-3, rtol: 1e-3, clip: 1e6, delta, ...(active ? { active } : {}) };
              const want = new Arr(E);
              const w = hostNewtonUpdate(rawS, oldS, want, B, T, opts);
              const got = sharedArray(Arr, E);
              const g = threadedNewtonUpdate(pool, rawS, oldS, got, B, T, opts);
              expect(Array.from(got)).toEqual(Array.from(want));
              expect(g.maxAbsDiff).toEqual(w.maxAbsDiff);
              expect(Array.from(g.rows.maxScaledDiff)).toEqual(Array.from(w.rows.maxScaledDiff));
              expect(Array.from(g.rows.replaced)).toEqual(Array.from(w.rows.replaced));
              expect(Array.from(g.rows.clipped)).toEqual(Array.from(w.rows.clipped));
              expect(Array.from(g.rows.settled)).toEqual(Array.from(w.rows.settled));
            });
          }
});

describe('threaded shiftTime', () => {
  // Large enough to be split over the threads (COPY_PARALLEL_MIN elements), one row or several,
  // with the boundary state or zeros in the free step: exactly one thread's copy.
  const backends = [1, 2, 3].map((threads) => new FastCpuBackend({ threads, dtype: 'float32' }));
  afterAll(() => {
    for (const be of backends) be.destroy();
  });
  const cases: [B: number, T: number, inner: number][] = [
    [1, 300001, 1],
    [3, 100003, 2],
    [7, 40000, 1],
  ];
  for (const [B, T, inner] of cases)
    for (const dir of [1, -1] as const)
      for (const withFill of [true, false])
        it(`B=${B} T=${T} inner=${inner} dir ${dir}${withFill ? ' with fill' : ''}: 2 and 3 threads as one`, async () => {
          const x = rng.normalArray(B * T * inner, 1);
          const fill = rng.normalArray(B * inner, 1);
          const results: ArrayLike<number>[] = [];
          for (const be of backends) {
            const xt = be.tensor(x, [B, T, inner]);
            const ft = withFill ? be.tensor(fill, [B, inner]) : null;
            const out = be.shiftTime(xt, ft, dir);
            results.push(await be.read(out));
            for (const t of [xt, ft, out]) if (t) be.dispose(t);
          }
          // One thread against the definition, then the others against one thread.
          const want = results[0]!;
          const at = (b: number, t: number, j: number) => want[(b * T + t) * inner + j]!;
          for (const b of [0, B - 1])
            for (let j = 0; j < inner; j++) {
              const edge = dir === 1 ? 0 : T - 1;
              expect(at(b, edge, j)).toBe(withFill ? Math.fround(fill[b * inner + j]!) : 0);
              expect(at(b, T >> 1, j)).toBe(Math.fround(x[(b * T + (T >> 1) - dir) * inner + j]!));
            }
          for (const got of results.slice(1)) expect(mismatches(got, want)).toEqual([]);
        });
});

describe('threads in a solve', () => {
  it('outputs do not depend on what a reused buffer held', async () => {
    const cell = cells.gru({ inputSize: 1, hiddenSize: 2 });
    const params = cell.init({ seed: 5 });
    const T = 40_000;
    const x = rng.normalArray(T, 1);
    const y = rng.normalArray(T * 2, 0.5);
    const a = rng.normalArray(T * 2, 0.5);
    const results: Float64Array[][] = [];
    for (const threads of [1, 2]) {
      const be = new FastCpuBackend({ threads, dtype: 'float32' });
      // NaN-filled buffers of every size below, disposed: the threaded backend reuses them.
      const poisoned = [T, T * 2, T * 4].flatMap((size) =>
        Array.from({ length: 12 }, () => be.tensor(new Float64Array(size).fill(Number.NaN), [size])),
      );
      for (const t of poisoned) be.dispose(t);
      const p: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
      const xt = be.tensor(x, [1, T, 1]);
      const yt = be.tensor(y, [1, T, 2]);
      const at = be.tensor(a, [1, T, 2, 1, 1]);
      const got: Float64Array[] = [];
      const read = async (t: Tensor) => got.push(Float64Array.from(await be.read(t)));
      await read(be.shiftTime(yt, null, 1));
      await read(be.shiftTime(yt, null, -1));
      await read(be.runSequential(cell.stepProgram(), { input: xt, y0: be.zeros([1, 2]), params: p }));
      await read(be.affineOffset(yt, at, yt, 1));
      const lin = be.runStep(cell.linearizeProgram(2), { state: yt, input: xt, params: p });
      await read(lin.outputs[0]!);
      await read(lin.jacobian!);
      for (const reverse of [false, true]) {
        await read(be.scan({ A: at, c: yt, y0: be.zeros([1, 2]), blockSize: 1, reverse }));
      }
      const u = be.newtonUpdateSync(yt, be.tensor(a, [1, T, 2]), { atol: 1e-4, rtol: 1e-4, clip: 1e6, delta: true });
      await read(u.y);
      got.push(Float64Array.of(u.maxAbsDiff, u.maxScaledDiff, u.replaced, u.clipped, u.rows.settled[0]!));
      const d = await deer(be, cell, p, xt);
      await read(d.y);
      be.destroy();
      results.push(got);
    }
    const [one, two] = results as [Float64Array[], Float64Array[]];
    for (let k = 0; k < one.length; k++) {
      // The time-chunked scans (and the solve through them) round differently: see 'threaded scan'.
      const tol = k >= 6 && k <= 7 ? 1e-5 : k === one.length - 1 ? 1e-4 : 0;
      let worst = 0;
      for (let i = 0; i < one[k]!.length; i++) worst = Math.max(worst, Math.abs(one[k]![i]! - two[k]![i]!));
      expect(worst, `output ${k}`).toBeLessThanOrEqual(tol);
    }
  });

  it('DEER on one long sequence (threaded scan and update) agrees with one thread', async () => {
    const cell = cells.gru({ inputSize: 1, hiddenSize: 2 });
    const params = cell.init({ seed: 4 });
    const T = 50_001;
    const x = rng.normalArray(T, 1);
    const ys: Float64Array[] = [];
    for (const threads of [1, 2]) {
      const be = new FastCpuBackend({ threads, dtype: 'float32' });
      const p: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
      const d = await deer(be, cell, p, be.tensor(x, [1, T, 1]), { atol: 1e-5, rtol: 1e-5 });
      expect(d.stats.converged).toBe(true);
      ys.push(Float64Array.from(await be.read(d.y)));
      be.destroy();
      expect((be as unknown as { pool?: unknown }).pool).toBeUndefined();
    }
    // Both converged to within atol + rtol·|y| of the fixed point.
    let worst = 0;
    for (let i = 0; i < T * 2; i++) worst = Math.max(worst, Math.abs(ys[0]![i]! - ys[1]![i]!));
    expect(worst).toBeLessThan(1e-4);
  });
});

describe('what the workers hold', () => {
  const one = availableThreads() < 2;
  /** A new job (a new uid) writing v at out[i]. */
  const writer = () =>
    jobFromFunction((out: Int32Array, i: number, v: number) => {
      out[i] = v;
    });
  /** Calls for the pool's one worker only. */
  const onWorker = (calls: Call[]): Call[][] => [[], calls];

  it.skipIf(one)('is at most maxEntries kernels and jobs, an evicted one sent again when used again', () => {
    const pool = new ThreadPool(2, 4);
    const out = new Int32Array(new SharedArrayBuffer(4 * 64));
    const jobs = Array.from({ length: 20 }, writer);
    try {
      jobs.forEach((job, k) => {
        pool.calls(onWorker([[job, [out, k, k + 1]]]));
        expect(pool.entries()).toEqual([Math.min(k + 1, 4)]);
      });
      expect(Array.from(out.subarray(0, 20))).toEqual(jobs.map((_, k) => k + 1));
      // The first one was forgotten long ago: used again, it is sent again.
      pool.calls(onWorker([[jobs[0]!, [out, 0, 100]]]));
      expect(out[0]).toBe(100);
      expect(pool.entries()).toEqual([4]);
      // A dispatch reading more jobs than the bound keeps them all while it runs; the next one trims.
      const many = Array.from({ length: 7 }, writer);
      pool.calls(onWorker(many.map((job, k): Call => [job, [out, 30 + k, 7]])));
      expect(Array.from(out.subarray(30, 37))).toEqual(new Array(7).fill(7));
      expect(pool.entries()).toEqual([7]);
      pool.calls(onWorker([[many[6]!, [out, 36, 8]]]));
      expect(out[36]).toBe(8);
      expect(pool.entries()).toEqual([4]);
    } finally {
      pool.destroy();
    }
  });

  it.skipIf(one)('a solve gives the values of one thread when the workers keep forgetting', async () => {
    // Three cells in turn, twice, on workers that hold three entries: every solve's kernels and
    // jobs evict the previous cell's and are sent again on its second turn. Float64 runs the
    // JavaScript kernels (pool.run, pool.rows), float32 the WebAssembly jobs (pool.calls).
    const [B, T, m] = [8, 2048, 2];
    const x = rng.normalArray(B * T * m, 1);
    const list: Cell[] = [
      cells.gru({ inputSize: m, hiddenSize: 4 }),
      cells.lstm({ inputSize: m, hiddenSize: 4 }),
      cells.gru({ inputSize: m, hiddenSize: 4 }),
    ];
    for (const dtype of ['float64', 'float32'] as const) {
      const results: Float64Array[][] = [];
      for (const threads of [1, 2]) {
        const be = new FastCpuBackend({ threads, dtype });
        const pool = threads > 1 ? new ThreadPool(threads, 3) : undefined;
        (be as unknown as { pool?: ThreadPool }).pool = pool;
        // Count what the pool tells its worker: entries sent and forgotten.
        const sent = { kernel: 0, job: 0, forget: 0 };
        for (const w of (pool as unknown as { workers: { postMessage(m: { kind: string }): void }[] } | undefined)?.workers ?? []) {
          const post = w.postMessage.bind(w);
          w.postMessage = (msg) => {
            if (msg.kind in sent) sent[msg.kind as keyof typeof sent]++;
            post(msg);
          };
        }
        const xt = be.tensor(x, [B, T, m]);
        const got: Float64Array[] = [];
        for (let round = 0; round < 2; round++) {
          for (const [k, cell] of list.entries()) {
            const p: Record<string, Tensor> = {};
            for (const [name, v] of Object.entries(cell.init({ seed: k }))) p[name] = be.tensor(v, [v.length]);
            const d = await deer(be, cell, p, xt);
            got.push(Float64Array.from(await be.read(d.y)));
            const y0 = be.zeros([B, cell.stateSize]);
            got.push(Float64Array.from(await be.read(be.runSequential(cell.stepProgram(), { input: xt, y0, params: p }))));
            if (pool) expect(Math.max(...pool.entries())).toBeLessThanOrEqual(3);
          }
        }
        be.destroy();
        results.push(got);
        if (pool) {
          // Sent again on each cell's second turn, and forgotten in between.
          expect(sent.forget, dtype).toBeGreaterThan(0);
          expect(dtype === 'float64' ? sent.kernel : sent.job, dtype).toBeGreaterThan(6);
        }
      }
      const [a, b] = results as [Float64Array[], Float64Array[]];
      for (let k = 0; k < a.length; k++) expect(mismatches(b[k]!, a[k]!), `${dtype}, result ${k}`).toEqual([]);
    }
  });

  it.skipIf(one)('are forgotten once the kernel or job they were made from is collected here', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const pool = new ThreadPool(2);
    const out = new Int32Array(new SharedArrayBuffer(4 * 10));
    try {
      // Jobs nothing here keeps.
      for (let k = 0; k < 10; k++) pool.calls(onWorker([[writer(), [out, k, 1]]]));
      expect(pool.entries()).toEqual([10]);
      for (let tries = 0; tries < 100 && pool.entries()[0]! > 0; tries++) {
        gc();
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(pool.entries()).toEqual([0]);
    } finally {
      pool.destroy();
    }
  });
});
