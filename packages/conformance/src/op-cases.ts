import { cells, InvalidArgumentError, Rng, ShapeError, scanThenUpdate, type Tensor, TensorStateError } from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { maxAbsDiff } from './fixtures.js';
import { firstMismatch, overflowingScan, serialScan } from './overflow-scan.js';

/** Backend primitives against direct host computations. */
export function defineOpCases(ctx: SuiteContext): void {
  const tol = ctx.dtype === 'float64' ? 1e-12 : 1e-5;

  for (const [B, T, n, s] of [
    [2, 1, 3, 3],
    [2, 257, 4, 4],
    [1, 1000, 6, 2],
    [3, 300, 5, 1],
    [1, 4099, 2, 2],
  ] as const) {
    for (const reverse of [false, true]) {
      ctx.test(`scan/B${B}/T${T}/n${n}/s${s}/${reverse ? 'reverse' : 'forward'}`, async () => {
        const backend = ctx.backend();
        const rng = new Rng(B * 1000 + T + n + s);
        // Contractive blocks (scaled by 0.9/s) keep long products bounded.
        const A = rng.uniformArray(B * T * n * s, -0.9 / s, 0.9 / s).map((v) => (ctx.dtype === 'float32' ? Math.fround(v) : v));
        const c = rng.normalArray(B * T * n).map((v) => (ctx.dtype === 'float32' ? Math.fround(v) : v));
        const y0 = rng.normalArray(B * n).map((v) => (ctx.dtype === 'float32' ? Math.fround(v) : v));
        const expected = serialScan(A, c, y0, [B, T, n, s], reverse);
        const tA = backend.tensor(A, [B, T, n / s, s, s], ctx.dtype);
        const tc = backend.tensor(c, [B, T, n], ctx.dtype);
        const ty0 = backend.tensor(y0, [B, n], ctx.dtype);
        const out = backend.scan({ A: tA, c: tc, y0: ty0, blockSize: s, reverse });
        const got = await backend.read(out);
        for (const t of [tA, tc, ty0, out]) backend.dispose(t);
        expect(maxAbsDiff(got, expected)).toBeLessThanOrEqual(tol * 10);
      });
    }
  }

  ctx.test('ops/scan-where-products-overflow', async () => {
    // A parallel scan composes products of transitions that overflow where the recurrence expands,
    // although the answer stays finite (from 0, or at a fixed point): whatever chunks or tiles a
    // backend cuts time into, every entry is what a serial pass gives, in the scan and in the scan
    // fused with the Newton update.
    const backend = ctx.backend();
    const T = 3000;
    for (const [n, s] of [[1, 1], [3, 1], [4, 2], [8, 8]] as const)
      for (const reverse of [false, true]) {
        const label = `n = ${n}, s = ${s}${reverse ? ', reverse' : ''}`;
        const d = overflowingScan(T, n, s, reverse, ctx.dtype);
        const t = {
          A: backend.tensor(d.A, [d.B, T, n / s, s, s], ctx.dtype),
          c: backend.tensor(d.c, [d.B, T, n], ctx.dtype),
          y0: backend.tensor(d.y0, [d.B, n], ctx.dtype),
          old: backend.zeros([d.B, T, n], ctx.dtype),
        };
        try {
          const args = { A: t.A, c: t.c, y0: t.y0, blockSize: s, reverse };
          const y = backend.scan(args);
          const got = await backend.read(y);
          backend.dispose(y);
          // Rows 0 and 2 only: row 1, held at a fixed point its map leaves, cancels 256^m against
          // 256^m − 1 in any composition of m < 16 steps, which a GPU's tiles of 32 steps make (the
          // webgpu tests hold its chunked scan, which walks every step, to row 1 as well).
          const rows = T * n;
          for (const r of [0, 2]) {
            const at = (v: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> }) => v.subarray(r * rows, (r + 1) * rows);
            expect(firstMismatch(at(got), at(d.expected), tol), `${label}, row ${r}`).toBeNull();
          }
          if (reverse) continue;
          // From a zero iterate the update's new iterate is the scan's δ, where δ is finite.
          const opts = { atol: 1e-6, rtol: 1e-6, clip: 1e300, active: Uint8Array.from([1, 1, 1]) };
          const u = backend.scanUpdate ? await backend.scanUpdate(args, t.old, opts) : await scanThenUpdate(backend, args, t.old, opts);
          const fused = await backend.read(u.y);
          backend.dispose(u.y);
          expect(firstMismatch(fused.subarray(0, rows), d.expected.subarray(0, rows), tol), `${label}, scanUpdate`).toBeNull();
          expect(u.rows.replaced[0], `${label}, scanUpdate`).toBe(0);
          expect(u.rows.replaced[2], `${label}, scanUpdate: the overflowing row`).toBeGreaterThan(0);
        } finally {
          for (const x of Object.values(t)) backend.dispose(x);
        }
      }
  });

  ctx.test('ops/time-layout', async () => {
    const backend = ctx.backend();
    const B = 2;
    const T = 4;
    const k = 3;
    const data = Array.from({ length: B * T * k }, (_, i) => i);
    const x = backend.tensor(data, [B, T, k], ctx.dtype);
    const fill = backend.tensor([-1, -2, -3, -4, -5, -6], [B, k], ctx.dtype);
    const at = (b: number, t: number) => data.slice((b * T + t) * k, (b * T + t + 1) * k);
    const results = {
      fwd: backend.shiftTime(x, fill, 1),
      bwd: backend.shiftTime(x, null, -1),
      slice: backend.sliceTime(x, 1, 2),
      step: backend.timeStep(x, 3),
      bcast: backend.broadcastTime(fill, 2),
    };
    const cat = backend.concatTime([results.slice, x]);
    const r = async (t: (typeof results)['fwd']) => Array.from(await backend.read(t));
    expect(await r(results.fwd)).toEqual([-1, -2, -3, ...at(0, 0), ...at(0, 1), ...at(0, 2), -4, -5, -6, ...at(1, 0), ...at(1, 1), ...at(1, 2)]);
    expect(await r(results.bwd)).toEqual([...at(0, 1), ...at(0, 2), ...at(0, 3), 0, 0, 0, ...at(1, 1), ...at(1, 2), ...at(1, 3), 0, 0, 0]);
    expect(await r(results.slice)).toEqual([...at(0, 1), ...at(0, 2), ...at(1, 1), ...at(1, 2)]);
    expect(await r(results.step)).toEqual([...at(0, 3), ...at(1, 3)]);
    expect(await r(results.bcast)).toEqual([-1, -2, -3, -1, -2, -3, -4, -5, -6, -4, -5, -6]);
    expect(cat.shape).toEqual([B, 6, k]);
    expect(Array.from(await backend.read(cat)).slice(0, 18)).toEqual([...at(0, 1), ...at(0, 2), ...data.slice(0, 12)]);
    for (const t of [x, fill, cat, ...Object.values(results)]) backend.dispose(t);
  });

  ctx.test('ops/dispose-twice-does-nothing', async () => {
    // As in tfjs: a second dispose neither throws nor frees another tensor's memory or count; a
    // disposed tensor is still refused by any op.
    const backend = ctx.backend();
    const before = backend.liveTensors();
    const a = backend.tensor([1, 2, 3], [3], ctx.dtype);
    const b = backend.tensor([4, 5, 6], [3], ctx.dtype);
    backend.dispose(a);
    backend.dispose(a);
    expect(backend.liveTensors()).toBe(before + 1);
    expect(Array.from(await backend.read(b))).toEqual([4, 5, 6]);
    await expect(Promise.resolve().then(() => backend.read(a))).rejects.toThrow(TensorStateError);
    backend.dispose(b);
    expect(backend.liveTensors()).toBe(before);
  });

  ctx.test('ops/max-abs-and-find-non-finite-see-nan-and-inf', async () => {
    // Solves learn from maxAbs alone whether a trajectory or a gradient is finite: NaN anywhere
    // (first, last, in a vector tail) must give NaN, ±Inf must give Inf, whatever the size.
    const backend = ctx.backend();
    const big = ctx.dtype === 'float32' ? Math.fround(3e38) : 1e308;
    for (const size of [1, 7, 1000, 100_003]) {
      const base = new Rng(size).normalArray(size).map(ctx.dtype === 'float32' ? Math.fround : (v) => v);
      base[size >> 1] = -big;
      const spots = [...new Set([0, size >> 1, size - 1])];
      const cases: [string, number | undefined, number][] = [['finite', undefined, 0], ...spots.flatMap((at) => [
        ['NaN', at, Number.NaN] as [string, number, number],
        ['+Inf', at, Number.POSITIVE_INFINITY] as [string, number, number],
        ['-Inf', at, Number.NEGATIVE_INFINITY] as [string, number, number],
      ])];
      for (const [what, at, value] of cases) {
        const data = Float64Array.from(base);
        if (at !== undefined) data[at] = value;
        const x = backend.tensor(data, [1, size, 1], ctx.dtype);
        try {
          const got = await backend.maxAbs(x);
          const label = `size ${size}, ${what} at ${at}`;
          if (what === 'finite') expect(got, label).toBe(big);
          else if (what === 'NaN') expect(got, label).toBeNaN();
          else expect(got, label).toBe(Number.POSITIVE_INFINITY);
          expect(await backend.findNonFinite(x), label).toEqual(at === undefined ? null : { index: at, value });
        } finally {
          backend.dispose(x);
        }
      }
      // Several non-finite entries: the first is the one named.
      if (size >= 7) {
        const data = Float64Array.from(base);
        for (const at of [size - 1, size >> 1, 3]) data[at] = Number.NaN;
        data[5] = Number.NEGATIVE_INFINITY;
        const x = backend.tensor(data, [1, size, 1], ctx.dtype);
        try {
          expect(await backend.findNonFinite(x), `size ${size}, several`).toEqual({ index: 3, value: Number.NaN });
        } finally {
          backend.dispose(x);
        }
      }
    }
  });

  ctx.test('ops/reshape', async () => {
    // Time folded into the batch and back ([B, K·L, m] ↔ [B·K, L, m]): the same entries in order.
    const backend = ctx.backend();
    const data = new Rng(6).normalArray(2 * 6 * 3).map(ctx.dtype === 'float32' ? Math.fround : (v) => v);
    const x = backend.tensor(data, [2, 6, 3], ctx.dtype);
    const folded = backend.reshape(x, [4, 3, 3]);
    const back = backend.reshape(folded, [2, 6, 3]);
    const last = backend.timeStep(folded, 2);
    const flat = backend.reshape(last, [2, 2, 3]);
    try {
      expect(folded.shape).toEqual([4, 3, 3]);
      expect(back.shape).toEqual([2, 6, 3]);
      expect(Array.from(await backend.read(folded))).toEqual(Array.from(data));
      expect(Array.from(await backend.read(back))).toEqual(Array.from(data));
      // Each folded row's last step, regrouped per batch row: steps 2 and 5 of every row.
      const want = [0, 1].flatMap((b) => [2, 5].flatMap((t) => Array.from(data.subarray((b * 6 + t) * 3, (b * 6 + t + 1) * 3))));
      expect(Array.from(await backend.read(flat))).toEqual(want);
      expect(() => backend.reshape(x, [5, 7])).toThrow(ShapeError);
      expect(() => backend.reshape(x, [36, -1])).toThrow(ShapeError);
    } finally {
      for (const t of [x, folded, back, last, flat]) backend.dispose(t);
    }
  });

  ctx.test('ops/argument-contracts', async () => {
    // Every bad argument is a ShapeError before anything is made or recorded: no hang (a block size
    // of 0 looped for ever), no untyped error from an engine, no answer read from stale memory, and
    // the backend works on afterwards (a GPU command with a NaN size had broken every later call).
    const backend = ctx.backend();
    const t = (shape: number[]) => backend.tensor(new Float64Array(shape.reduce((a, b) => a * b, 1)).fill(0.5), shape, ctx.dtype);
    const made = {
      A: t([2, 3, 2, 2, 2]),
      c: t([2, 3, 4]),
      c2: t([2, 12]),
      y0: t([2, 4]),
      diag: t([2, 3, 4, 1, 1]),
      flat: t([4]),
      y: t([2, 3, 4]),
      y5: t([2, 3, 5]),
      fill3: t([3, 4]),
      short: t([2, 2, 4]),
      one: t([1, 3, 4]),
    };
    const { A, c, c2, y0, diag, flat, y, y5, fill3, short, one } = made;
    const opts = { atol: 1e-6, rtol: 1e-6, clip: 1e6 };
    const cell = cells.gru({ inputSize: 4, hiddenSize: 4 });
    const init = cell.init({ seed: 1 });
    const params = Object.fromEntries(Object.entries(init).map(([k, v]) => [k, backend.tensor(v, [v.length], ctx.dtype)]));
    const [firstParam] = Object.keys(params) as [string];
    const step = cell.linearizeProgram(4);
    const bad: [string, () => unknown][] = [
      ['runStep state of rank 2', () => backend.runStep(step, { state: y0, input: c, params })],
      ['runStep state size', () => backend.runStep(step, { state: y5, input: c, params })],
      ['runStep no input', () => backend.runStep(step, { state: y, params })],
      ['runStep input time', () => backend.runStep(step, { state: y, input: short, params })],
      ['runStep missing param', () => backend.runStep(step, { state: y, input: c, params: { ...params, [firstParam]: undefined as never } })],
      ['runStep param size', () => backend.runStep(step, { state: y, input: c, params: { ...params, [firstParam]: flat } })],
      ['runSequential y0 size', () => backend.runSequential(cell.stepProgram(), { input: c, y0: fill3, params })],
      ['scan c of rank 2', () => backend.scan({ A, c: c2, y0, blockSize: 2, reverse: false })],
      ...[0, -2, Number.NaN, 1.5, 3].map((s): [string, () => unknown] => [`scan blockSize ${s}`, () => backend.scan({ A, c, y0, blockSize: s, reverse: false })]),
      ['scan y0 shape', () => backend.scan({ A: diag, c, y0: fill3, blockSize: 1, reverse: false })],
      ['affineOffset blockSize 0', () => backend.affineOffset(c, diag, c, 0)],
      ['affineOffset y shape', () => backend.affineOffset(c, diag, y5, 1)],
      ['capTransitions blockSize 0', () => backend.capTransitions(diag, 0, [1, 1])],
      ['capTransitions NaN cap', () => backend.capTransitions(diag, 1, [1, Number.NaN])],
      ['blockMatmul blockSize 0', () => backend.blockMatmul(A, A, 0)],
      ['blockMatvec v shape', () => backend.blockMatvec(A, y5, 2)],
      ['addIdentity blockSize -1', () => backend.addIdentity(A, -1, 1)],
      ['add shapes', () => backend.add(c, c2)],
      ['shiftTime rank 1', () => backend.shiftTime(flat, null, 1)],
      ['shiftTime fill shape', () => backend.shiftTime(c, fill3, 1)],
      ['shiftTime dir', () => backend.shiftTime(c, null, 2 as never)],
      ['timeStep t = T', () => backend.timeStep(c, 3)],
      ['timeStep t = -1', () => backend.timeStep(c, -1)],
      ['sliceTime past T', () => backend.sliceTime(c, 2, 2)],
      ['sliceTime start 1.5', () => backend.sliceTime(c, 1.5, 1)],
      ['broadcastTime T 1.5', () => backend.broadcastTime(y0, 1.5)],
      ['concatTime none', () => backend.concatTime([])],
      ['concatTime rest', () => backend.concatTime([c, y5])],
      ['maskTime length 2.5', () => backend.maskTime(c, [2.5, 1])],
      ['maskTime length NaN', () => backend.maskTime(c, [Number.NaN, 1])],
      ['outerSum blocks 3', () => backend.outerSum(c, c, 3)],
      ['newtonUpdate yOld shape', () => backend.newtonUpdate(c, y5, opts)],
      ['newtonUpdate active length', () => backend.newtonUpdate(c, y, { ...opts, active: new Uint8Array(3) })],
      ['newtonUpdate clip NaN', () => backend.newtonUpdate(c, y, { ...opts, clip: Number.NaN })],
      ['scatterRows src of the right size but shape', () => backend.scatterRows(c, [0, 1], c2)],
    ];
    // The optional fused step has the same contract where a backend offers it (it had copied what
    // it was given: missing rows and steps were the previous call's values).
    const fused = backend.deerStep?.bind(backend);
    if (fused) {
      const residual = cell.residualProgram(4);
      const inputs = { input: c, y0, params };
      bad.push(
        ['deerStep input time', () => fused(residual, { ...inputs, input: short }, y, opts)],
        ['deerStep input rows', () => fused(residual, { ...inputs, input: one }, y, opts)],
        ['deerStep y0 rows', () => fused(residual, { ...inputs, y0: fill3 }, y, opts)],
        ['deerStep previous size', () => fused(residual, inputs, y5, opts)],
        ['deerStep missing param', () => fused(residual, { ...inputs, params: { ...params, [firstParam]: undefined as never } }, y, opts)],
        ['deerStep active length', () => fused(residual, inputs, y, { ...opts, active: new Uint8Array(1) })],
        ['deerStep atol -1', () => fused(residual, inputs, y, { ...opts, atol: -1 })],
      );
    }
    // A disposed tensor is a TensorStateError whatever its shape, on every backend.
    const gone = t([2, 12]);
    backend.dispose(gone);
    let stale: unknown;
    try {
      backend.scan({ A, c: gone, y0, blockSize: 2, reverse: false });
    } catch (err) {
      stale = err;
    }
    expect(stale).toBeInstanceOf(TensorStateError);
    // Something that is no tensor at all is an InvalidArgumentError (it had read "not a … tensor
    // (from 'undefined')", a TensorStateError, on some backends).
    for (const notTensor of [null, undefined, {}, 5, 'y']) {
      const calls: [string, () => unknown][] = [
        ['read', () => backend.read(notTensor as never)],
        ['dispose', () => backend.dispose(notTensor as never)],
        ['add', () => backend.add(c, notTensor as never)],
      ];
      for (const [what, call] of calls) {
        const error = await Promise.resolve()
          .then(call)
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(error, `${what}(${String(notTensor)})`).toBeInstanceOf(InvalidArgumentError);
      }
    }
    try {
      for (const [what, call] of bad) {
        let error: unknown;
        try {
          await call();
        } catch (err) {
          error = err;
        }
        expect(error, what).toBeInstanceOf(ShapeError);
      }
      // Still working, and empty tensors are fine.
      const sum = backend.add(c, y);
      const empty = t([2, 3, 0]);
      const masked = backend.maskTime(empty, [1, 2]);
      const rows = backend.gatherRows(empty, [1, 1, 0]);
      const none = backend.broadcastTime(y0, 0);
      // No time steps: webgpu had divided by T (0/0 entries per step: an untyped TypeError, an
      // OutOfMemoryError for no bytes), cpu's sumBatchTime a ShapeError.
      const noSteps: Tensor[] = [];
      try {
        const keep = <X extends Tensor>(v: X) => (noSteps.push(v), v);
        const shifted = keep(backend.shiftTime(none, null, 1));
        const joined = keep(backend.concatTime([none, c]));
        const summed = keep(backend.sumBatchTime(none));
        const noA = keep(backend.zeros([2, 0, 4, 1, 1], ctx.dtype));
        const scanned = keep(backend.scan({ A: noA, c: none, y0, blockSize: 1, reverse: false }));
        expect(Array.from(await backend.read(sum))).toEqual(new Array(24).fill(1));
        // tfjs had given [2, 1, 4] for no time steps.
        expect([masked.shape, rows.shape, none.shape]).toEqual([[2, 3, 0], [3, 3, 0], [2, 0, 4]]);
        expect([shifted.shape, scanned.shape]).toEqual([[2, 0, 4], [2, 0, 4]]);
        expect(Array.from(await backend.read(joined))).toEqual(new Array(24).fill(0.5));
        expect(Array.from(await backend.read(summed))).toEqual([0, 0, 0, 0]);
      } finally {
        for (const x of [sum, empty, masked, rows, none, ...noSteps]) backend.dispose(x);
      }
    } finally {
      for (const x of [...Object.values(made), ...Object.values(params)]) backend.dispose(x);
    }
  });

  ctx.test('ops/tensor-data', async () => {
    // What a tensor is made of, checked by core's one contract (checkTensorData) on every backend
    // before anything is allocated or counted: a BigInt64Array had been a TypeError on every
    // backend and left webgpu's count one higher, null a TypeError, strings NaN in silence.
    const backend = ctx.backend();
    const sparse = new Array<number>(2);
    const refused: [string, () => unknown, typeof InvalidArgumentError | typeof ShapeError, RegExp][] = [
      ['BigInt64Array', () => backend.tensor(new BigInt64Array(2) as never, [1, 2, 1], ctx.dtype), InvalidArgumentError, /BigInt64Array/],
      ['null', () => backend.tensor(null as never, [2], ctx.dtype), InvalidArgumentError, /got null/],
      ['undefined', () => backend.tensor(undefined as never, [2], ctx.dtype), InvalidArgumentError, /got undefined/],
      ['strings', () => backend.tensor(['a', 'b'] as never, [2], ctx.dtype), InvalidArgumentError, /data\[0\].*"a"/],
      ['a numeric string', () => backend.tensor([1, '2'] as never, [2], ctx.dtype), InvalidArgumentError, /data\[1\].*"2"/],
      ['a string', () => backend.tensor('ab' as never, [2], ctx.dtype), InvalidArgumentError, /"ab"/],
      ['an object', () => backend.tensor({ a: 1 } as never, [1], ctx.dtype), InvalidArgumentError, /not an array/],
      ['a hole', () => backend.tensor(sparse, [2], ctx.dtype), InvalidArgumentError, /data\[0\].*undefined/],
      ['a DataView', () => backend.tensor(new DataView(new ArrayBuffer(8)) as never, [2], ctx.dtype), InvalidArgumentError, /DataView/],
      ['too few values', () => backend.tensor(new Float64Array(3), [2, 2], ctx.dtype), ShapeError, /4 values for \[2, 2\], got 3 values/],
      ['too many values', () => backend.tensor([1, 2, 3], [2], ctx.dtype), ShapeError, /2 values/],
      ['a negative extent', () => backend.tensor([], [2, -1], ctx.dtype), ShapeError, /non-negative integer dims/],
      ['no shape', () => backend.tensor([1], undefined as never, ctx.dtype), ShapeError, /non-negative integer dims/],
      ['zeros of a fractional extent', () => backend.zeros([1.5], ctx.dtype), ShapeError, /non-negative integer dims/],
      ['zeros of no shape', () => backend.zeros(null as never, ctx.dtype), ShapeError, /non-negative integer dims/],
    ];
    const before = backend.liveTensors();
    for (const [what, call, type, message] of refused) {
      let error: unknown;
      try {
        call();
      } catch (err) {
        error = err;
      }
      expect(error, what).toBeInstanceOf(type);
      expect((error as Error).message, what).toMatch(message);
      expect(backend.liveTensors(), `${what}: nothing counted`).toBe(before);
    }
    // Numbers in any numeric array are taken, NaN and ±Infinity included (a tensor may hold them).
    const made = [
      backend.tensor([Number.NaN, Number.POSITIVE_INFINITY, -1.5], [3], ctx.dtype),
      backend.tensor(Int32Array.from([1, -2, 3]), [3], ctx.dtype),
      backend.tensor(Uint8Array.from([0, 7, 255]), [3], ctx.dtype),
      backend.tensor(new Float32Array([0.5, 0.25, -4]), [1, 3, 1], ctx.dtype),
    ];
    try {
      const read = await Promise.all(made.map(async (t) => Array.from(await backend.read(t))));
      expect(read).toEqual([
        [Number.NaN, Number.POSITIVE_INFINITY, -1.5],
        [1, -2, 3],
        [0, 7, 255],
        [0.5, 0.25, -4],
      ]);
    } finally {
      for (const t of made) backend.dispose(t);
    }
  });

  ctx.test('ops/gather-scatter-rows', async () => {
    // A few rows (one copy per row on the GPU) and more than 32 (one listed-rows dispatch there).
    const backend = ctx.backend();
    for (const B of [5, 40]) {
      const row = 2 * 3;
      const round = ctx.dtype === 'float32' ? Math.fround : (v: number) => v;
      const data = new Rng(B).normalArray(B * row).map(round);
      const x = backend.tensor(data, [B, 2, 3], ctx.dtype);
      const picked = B === 5 ? [3, 0, 3] : Array.from({ length: 35 }, (_, k) => (k * 7 + 3) % B);
      const targets = B === 5 ? [4, 1] : Array.from({ length: 33 }, (_, k) => (k * 11 + 5) % B);
      const srcData = new Rng(B + 1).normalArray(targets.length * row).map(round);
      const src = backend.tensor(srcData, [targets.length, 2, 3], ctx.dtype);
      const gathered = backend.gatherRows(x, picked);
      const scattered = backend.scatterRows(x, targets, src);
      try {
        const rowOf = (a: Float64Array, r: number) => Array.from(a.subarray(r * row, (r + 1) * row));
        expect(gathered.shape).toEqual([picked.length, 2, 3]);
        expect(Array.from(await backend.read(gathered))).toEqual(picked.flatMap((r) => rowOf(data, r)));
        const want = Array.from({ length: B }, (_, b) => {
          const k = targets.indexOf(b);
          return k >= 0 ? rowOf(srcData, k) : rowOf(data, b);
        }).flat();
        expect(Array.from(await backend.read(scattered))).toEqual(want);
        expect(Array.from(await backend.read(x)), 'scatterRows leaves its input as it was').toEqual(Array.from(data));
        for (const bad of [[-1], [B], [1.5], [Number.NaN]]) {
          expect(() => backend.gatherRows(x, bad), `gatherRows [${bad}]`).toThrow(ShapeError);
        }
        // Two source rows for one destination row: refused, not left to whichever write lands last.
        const twice = targets.slice(0, -1).concat(targets[0]!);
        expect(() => backend.scatterRows(x, twice, src)).toThrow(ShapeError);
        expect(() => backend.scatterRows(x, targets.slice(1), src), 'src rows ≠ rows listed').toThrow(ShapeError);
        expect(() => backend.scatterRows(x, [...targets.slice(1), B], src)).toThrow(ShapeError);
      } finally {
        for (const t of [x, src, gathered, scattered]) backend.dispose(t);
      }
    }
  });

  ctx.test('ops/newton-update-judges-the-stored-value', async () => {
    // old + δ past float32's range (3e38 + 3e38) is ±Inf once stored: replaced, whatever the clip.
    // The host update had judged the float64 sum (finite, under a clip of 1e39), stored ±Inf and
    // counted it neither replaced nor clipped. In float64 the sum is an ordinary value.
    const backend = ctx.backend();
    const raw = backend.tensor([3e38, -3e38, 1, 0], [1, 4, 1], ctx.dtype);
    const old = backend.tensor([3e38, -3e38, 1, 0], [1, 4, 1], ctx.dtype);
    try {
      for (const clip of [1e39, Number.POSITIVE_INFINITY]) {
        const u = await backend.newtonUpdate(raw, old, { atol: 1e-6, rtol: 1e-6, clip, delta: true });
        const y = Array.from(await backend.read(u.y));
        backend.dispose(u.y);
        const wide = ctx.dtype === 'float64';
        expect(y.slice(0, 2), `clip ${clip}`).toEqual(wide ? [6e38, -6e38] : [0, 0]);
        expect([u.replaced, u.clipped], `clip ${clip}`).toEqual(wide ? [0, 0] : [2, 0]);
        expect(y.every(Number.isFinite)).toBe(true);
      }
    } finally {
      backend.dispose(raw);
      backend.dispose(old);
    }
  });

  ctx.test('ops/reductions-and-newton-update', async () => {
    const backend = ctx.backend();
    const rng = new Rng(5);
    const B = 2;
    const T = 3;
    const L = rng.normalArray(B * T * 4);
    const R = rng.normalArray(B * T * 6);
    const l = backend.tensor(L, [B, T, 4], ctx.dtype);
    const r = backend.tensor(R, [B, T, 6], ctx.dtype);
    // Two blocks: left rows 2 per block, right cols 3 per block.
    const outer = backend.outerSum(l, r, 2);
    const expected = new Float64Array(2 * 2 * 3);
    for (let e = 0; e < B * T; e++)
      for (let kb = 0; kb < 2; kb++)
        for (let i = 0; i < 2; i++)
          for (let j = 0; j < 3; j++) expected[(kb * 2 + i) * 3 + j]! += L[e * 4 + kb * 2 + i]! * R[e * 6 + kb * 3 + j]!;
    expect(maxAbsDiff(await backend.read(outer), expected)).toBeLessThanOrEqual(tol * 10);
    const sum = backend.sumBatchTime(l);
    const sumExpected = [0, 1, 2, 3].map((i) => L.filter((_, k) => k % 4 === i).reduce((a, b) => a + b, 0));
    expect(maxAbsDiff(await backend.read(sum), sumExpected)).toBeLessThanOrEqual(tol * 10);
    const twice = backend.add(l, l);
    expect(maxAbsDiff(await backend.read(twice), L.map((v) => 2 * v))).toBeLessThanOrEqual(tol * 10);

    const raw = backend.tensor([1, Number.NaN, 5e9, -5e9, Number.NEGATIVE_INFINITY, 0.5], [1, 6, 1], ctx.dtype);
    const old = backend.tensor([1, 0, 0, 0, 0, 0.25], [1, 6, 1], ctx.dtype);
    const u = await backend.newtonUpdate(raw, old, { atol: 0.5, rtol: 0, clip: 1e8 });
    expect(u.replaced).toBe(2);
    expect(Array.from(await backend.read(u.y))).toEqual([1, 0, 1e8, -1e8, 0, 0.5]);
    expect(u.maxAbsDiff).toBeCloseTo(1e8, -2);
    expect(u.maxScaledDiff).toBeCloseTo(2e8, -2);
    expect(await backend.findNonFinite(raw)).toEqual({ index: 1, value: Number.NaN });
    expect(await backend.findNonFinite(old)).toBeNull();
    for (const t of [l, r, outer, sum, twice, raw, old, u.y]) backend.dispose(t);
  });

  ctx.test('ops/cap-transitions', async () => {
    const backend = ctx.backend();
    const rng = new Rng(19);
    // Rows: uncapped (−1), a cap below every norm, a cap above some; dense (s = n) and blocks.
    for (const [n, s] of [
      [5, 5],
      [6, 2],
      [4, 1],
    ] as const) {
      const [B, T] = [3, 7];
      const caps = [-1, 0.05, 1.5];
      const a = rng.normalArray(B * T * n * s);
      const ta = backend.tensor(a, [B, T, n / s, s, s], ctx.dtype);
      const got = backend.capTransitions(ta, s, caps);
      const want = Float64Array.from(a);
      let scaled = 0;
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const base = (b * T + t) * n * s;
          let norm = 0;
          for (let r = 0; r < n; r++) {
            let sum = 0;
            for (let j = 0; j < s; j++) sum += Math.abs(a[base + r * s + j]!);
            norm = Math.max(norm, sum);
          }
          if (caps[b]! < 0 || norm <= caps[b]!) continue;
          scaled++;
          for (let k = 0; k < n * s; k++) want[base + k] = (a[base + k]! * caps[b]!) / norm;
        }
      }
      expect(scaled, 'every transition of the row capped at 0.05').toBeGreaterThanOrEqual(T);
      expect(maxAbsDiff(await backend.read(got), want), `n=${n} s=${s}`).toBeLessThanOrEqual(tol * 10);
      backend.dispose(ta);
      backend.dispose(got);
    }
    const ta = backend.tensor([1, 2, 3, 4], [2, 2, 1, 1, 1], ctx.dtype);
    expect(() => backend.capTransitions(ta, 1, [1])).toThrow(ShapeError);
    backend.dispose(ta);
  });

  ctx.test('ops/block-matrix', async () => {
    const backend = ctx.backend();
    const rng = new Rng(9);
    const B = 2;
    const T = 3;
    const n = 6;
    const s = 3;
    const a = rng.normalArray(B * T * n * s);
    const b = rng.normalArray(B * T * n * s);
    const v = rng.normalArray(B * T * n);
    const h = [0.5, 2, -1];
    const ta = backend.tensor(a, [B, T, n / s, s, s], ctx.dtype);
    const tb = backend.tensor(b, [B, T, n / s, s, s], ctx.dtype);
    const tv = backend.tensor(v, [B, T, n], ctx.dtype);
    const mm = backend.blockMatmul(ta, tb, s);
    const mv = backend.blockMatvec(ta, tv, s);
    const sc = backend.scaleTime(tv, h, 3);
    const id = backend.addIdentity(ta, s, 0.25);
    const expMM = new Float64Array(a.length);
    const expMV = new Float64Array(v.length);
    const expID = Float64Array.from(a);
    for (let blk = 0; blk < (B * T * n) / s; blk++) {
      const o = blk * s * s;
      for (let i = 0; i < s; i++) {
        expID[o + i * s + i]! += 0.25;
        for (let j = 0; j < s; j++) {
          for (let k = 0; k < s; k++) expMM[o + i * s + j]! += a[o + i * s + k]! * b[o + k * s + j]!;
          expMV[blk * s + i]! += a[o + i * s + j]! * v[blk * s + j]!;
        }
      }
    }
    const expSC = v.map((x, i) => x * 3 * h[Math.floor(i / n) % T]!);
    expect(maxAbsDiff(await backend.read(mm), expMM)).toBeLessThanOrEqual(tol * 10);
    expect(maxAbsDiff(await backend.read(mv), expMV)).toBeLessThanOrEqual(tol * 10);
    expect(maxAbsDiff(await backend.read(sc), expSC)).toBeLessThanOrEqual(tol * 10);
    expect(maxAbsDiff(await backend.read(id), expID)).toBeLessThanOrEqual(tol * 10);
    const worst = Math.max(...a.map(Math.abs));
    expect(Math.abs((await backend.maxAbs(ta)) - worst)).toBeLessThanOrEqual(tol * 10);
    // A NaN anywhere makes the result NaN, wherever it sits.
    const withNaN = backend.tensor([2, Number.NaN, 1, -3], [1, 4, 1], ctx.dtype);
    expect(await backend.maxAbs(withNaN)).toBeNaN();
    for (const t of [ta, tb, tv, mm, mv, sc, id, withNaN]) backend.dispose(t);
  });
}
