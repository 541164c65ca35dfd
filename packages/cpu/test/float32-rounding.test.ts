import {
  type Cell,
  cells,
  deer,
  defineCell,
  lang as L,
  Rng,
  type StepProgram,
  sequential,
  type Tensor,
} from '@deerjs/core';
import { afterAll, describe, expect, it } from 'vitest';
import { type CpuBackend, createCpuBackend, createReferenceBackend } from '../src/index.js';

/**
 * Float32 on the cpu backend has one semantics, whatever path evaluates a cell: every node's value
 * rounded to float32, as the reference interpreter (used under `compileMin` elements) stores it. The
 * generated JavaScript had kept intermediates in float64, where e^x does not overflow at x = 100:
 * the same cell gave NaN at B·T = 252 (interpreter) and a finite, "converged" answer at 256
 * (generated code), and NaN again without its softplus term (WebAssembly SIMD) or with simd: true
 * vs false flipped.
 */

/** The reviewer's cell: e^(100x + h) is ∞ in float32 at x = 1, so e/(e + 1) is NaN. */
const reviewers = (softplus: boolean) =>
  defineCell(
    { name: softplus ? 'overflow-softplus' : 'overflow', state: 1, input: 1, params: {} },
    (h, x) => {
      const e = L.exp(L.add(L.mul(x, 100), h));
      const f = L.add(L.mul(h, 0.5), L.div(e, L.add(e, 1)));
      return softplus ? L.add(f, L.mul(0.01, L.softplus(L.neg(h)))) : f;
    },
  );

/** The finiteness of each value (±∞ and NaN told apart), then values where both are finite. */
function expectSameValues(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = 1e-5): void {
  expect(got.length, what).toBe(want.length);
  const kind = (v: number) =>
    Number.isNaN(v) ? 'NaN' : v === Infinity ? '+∞' : v === -Infinity ? '−∞' : 'finite';
  let first = -1;
  for (let i = 0; i < got.length && first < 0; i++) if (kind(got[i]!) !== kind(want[i]!)) first = i;
  const at = first < 0 ? '' : `: at ${first}, ${got[first]} where the reference has ${want[first]}`;
  expect(first, `${what}: the first value finite, ±∞ or NaN where the reference's is not${at}`).toBe(-1);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    if (Number.isFinite(want[i]!))
      worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
  }
  expect(worst, `${what}: max |got − want| / (1 + |want|)`).toBeLessThanOrEqual(tol);
}

const tensors = (be: CpuBackend, params: Record<string, Float64Array>) =>
  Object.fromEntries(Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length], 'float32')]));

async function solveBoth(be: CpuBackend, cell: Cell, B: number, T: number) {
  const x = be.tensor(new Float32Array(B * T).fill(1), [B, T, 1], 'float32');
  try {
    const s = await sequential(be, cell, {}, x);
    const seq = await be.read(s.y);
    be.dispose(s.y);
    const d = await deer(be, cell, {}, x);
    const y = await be.read(d.y);
    be.dispose(d.y);
    return { seq, deer: y, stats: d.stats };
  } finally {
    be.dispose(x);
  }
}

describe("float32: the reviewer's overflowing cell gives the float32 reference backend's answer", () => {
  const reference = createReferenceBackend({ dtype: 'float32' });
  const made: CpuBackend[] = [];
  afterAll(() => {
    for (const be of made) be.destroy();
    reference.destroy();
  });
  // B·T = 252 runs the interpreter (under compileMin), 256 the generated code; 4·1100 elements
  // split runStep over threads.
  for (const T of [63, 64, 1100]) {
    for (const softplus of [true, false]) {
      for (const simd of [true, false]) {
        for (const threads of [1, 2]) {
          it(`T=${T}${softplus ? ', with its softplus term' : ''}, simd ${simd}, ${threads} thread${threads > 1 ? 's' : ''}`, async () => {
            const be = createCpuBackend({ dtype: 'float32', simd, threads });
            made.push(be);
            const cell = reviewers(softplus);
            const want = await solveBoth(reference, cell, 4, T);
            expect(Number.isNaN(want.seq[0]!), 'float32: e^101 = ∞, ∞/∞ = NaN').toBe(true);
            const got = await solveBoth(be, cell, 4, T);
            expectSameValues(got.seq, want.seq, 'sequential');
            expectSameValues(got.deer, want.deer, 'deer');
            expect(got.stats.converged).toBe(false);
            expect(got.stats.stopReason).toBe(want.stats.stopReason);
          });
        }
      }
    }
  }

  it('so does the sequential loop split over threads (rows of a long problem)', async () => {
    // 8 rows × 2¹⁴ steps: past the work a runSequential is split over threads for.
    for (const simd of [true, false]) {
      const be = createCpuBackend({ dtype: 'float32', simd, threads: 2 });
      made.push(be);
      const cell = reviewers(true);
      const [B, T] = [8, 1 << 14];
      const x = new Float32Array(B * T).fill(1);
      // Row 1 stays finite (x = −1: e^(−100 + h) is tiny), the others overflow.
      x.fill(-1, T, 2 * T);
      const run = (b: CpuBackend) => {
        const y = b.runSequential(cell.stepProgram(), {
          input: b.tensor(x, [B, T, 1], 'float32'),
          y0: b.tensor(new Float32Array(B), [B, 1], 'float32'),
          params: {},
        });
        return b.readSync(y);
      };
      const want = run(reference);
      expect(want.slice(T, 2 * T).every(Number.isFinite)).toBe(true);
      expect(Number.isNaN(want[0]!)).toBe(true);
      expectSameValues(run(be), want, `simd ${simd}`);
    }
  });
});

describe('float32: compiled kernels overflow where the interpreter does', () => {
  const rng = new Rng(11);
  const { add, mul, div, exp, log, matvec, sin, softplus, sqrt, square, abs, sigmoid, tanh, sum } = L;
  /** A sum and products wider than the inline limit (8×8 = 64 entries), transposed in the VJP. */
  const wide = (scale: number) =>
    defineCell({ name: 'wide', state: 8, input: 3, params: { W: [8, 8], U: [8, 3], c: [8] } }, (h, x, p) => {
      const a = add(matvec(p.W, h), matvec(p.U, mul(x, scale)));
      const a2 = mul(a, a);
      const r = div(a, add(a2, 1));
      return add(mul(h, 0.9), add(mul(r, 0.5), mul(sum(mul(a2, p.c)), 1 / (scale * scale))));
    });
  // Large inputs (×30, ×40 inside the cells) make some e^x overflow float32 and not float64.
  const CELLS: [string, Cell][] = [
    ['gru', cells.gru({ inputSize: 3, hiddenSize: 6 })],
    ['lstm', cells.lstm({ inputSize: 2, hiddenSize: 5 })],
    ['mlp', cells.mlp({ stateSize: 4, inputSize: 2, hidden: [16, 16] })],
    [
      // log, softplus, sin: the generated JavaScript (no WebAssembly kernel), both with and without simd.
      'exp, log, softplus, sin, sqrt',
      defineCell({ name: 'zoo', state: 4, input: 4, params: { W: [4, 4] } }, (h, x, p) => {
        const a = add(matvec(p.W, h), mul(x, 30));
        const e = exp(a);
        const r = add(div(e, add(e, 1)), mul(0.01, softplus(L.neg(a))));
        const s = add(
          mul(0.001, log(add(square(a), 1e-30))),
          add(mul(sin(a), 1e-3), mul(sqrt(abs(a)), 1e-3)),
        );
        return add(mul(h, 0.5), add(r, s));
      }),
    ],
    [
      // exp, sigmoid, tanh only: WebAssembly SIMD with simd, the generated JavaScript without.
      'exp, sigmoid, tanh',
      defineCell({ name: 'expy', state: 3, input: 3, params: { W: [3, 3] } }, (h, x, p) => {
        const a = add(matvec(p.W, tanh(h)), mul(x, 40));
        const e = exp(a);
        return add(mul(h, 0.5), L.sub(div(e, add(e, 1)), mul(sigmoid(a), tanh(mul(a, 3)))));
      }),
    ],
    // a² overflows float32 for |a| > 1.8e19.
    ['sum and wide products', wide(1e19)],
  ];
  const B = 4;
  const T = 80;
  for (const [name, cell] of CELLS) {
    const n = cell.stateSize;
    const m = cell.inputSize;
    const params = cell.init({ seed: 1 });
    const ys = rng.normalArray(B * T * n, 5);
    const xs = rng.normalArray(B * T * m, 5);
    const cts = rng.normalArray(B * T * n, 5);
    const step = (be: CpuBackend, program: StepProgram, withCt: boolean): Float32Array[] => {
      const out = be.runStep(program, {
        state: be.tensor(ys, [B, T, n], 'float32'),
        input: be.tensor(xs, [B, T, m], 'float32'),
        cotangent: withCt ? be.tensor(cts, [B, T, n], 'float32') : undefined,
        params: tensors(be, params),
      });
      return [...out.outputs, ...(out.jacobian ? [out.jacobian] : [])].map(
        (t: Tensor) => be.readSync(t) as Float32Array,
      );
    };
    const seq = (be: CpuBackend) =>
      be.readSync(
        be.runSequential(cell.stepProgram(), {
          input: be.tensor(xs, [B, T, m], 'float32'),
          y0: be.tensor(ys.slice(0, B * n), [B, n], 'float32'),
          params: tensors(be, params),
        }),
      );
    for (const simd of [false, true]) {
      it(`${name}, simd ${simd}: outputs, Jacobians, VJP and the sequential loop`, () => {
        const fast = createCpuBackend({ dtype: 'float32', compileMin: 0, simd, threads: 1 });
        const ref = createReferenceBackend({ dtype: 'float32' });
        try {
          const v = cell.vjp;
          const vjp: StepProgram = {
            graph: v.graph,
            outputs: [v.dState, v.dInput].filter((id): id is number => id !== null),
          };
          const cases: [string, StepProgram, boolean][] = [
            ...[...new Set([1, n])].map((s): [string, StepProgram, boolean] => [
              `Jacobian blocks of ${s}`,
              cell.linearizeProgram(s),
              false,
            ]),
            ['VJP', vjp, true],
          ];
          let nonFinite = 0;
          for (const [what, program, withCt] of cases) {
            const want = step(ref, program, withCt);
            step(fast, program, withCt).forEach((got, k) => {
              // Jacobian entries sum terms in another order than the interpreter: looser.
              const isJ = k === want.length - 1 && program.jacobian !== undefined;
              expectSameValues(got, want[k]!, `${what}, output ${k}`, isJ ? 1e-2 : 1e-3);
              nonFinite += want[k]!.filter((x) => !Number.isFinite(x)).length;
            });
          }
          const want = seq(ref);
          expectSameValues(seq(fast), want, 'runSequential', 1e-3);
          nonFinite += want.filter((x) => !Number.isFinite(x)).length;
          if (!name.startsWith('gru') && !name.startsWith('lstm') && !name.startsWith('mlp')) {
            expect(nonFinite, 'the case overflows somewhere').toBeGreaterThan(0);
          }
        } finally {
          fast.destroy();
          ref.destroy();
        }
      });
    }
  }

  it('without transcendentals the generated JavaScript is the interpreter, bit for bit', () => {
    // Rounded where each node is made, the same sums in the same order: +, −, ×, ÷, products
    // (inline and wide, and transposed in the VJP) and sums give the interpreter's float32 values.
    const cell = wide(1);
    const n = cell.stateSize;
    const params = cell.init({ seed: 3 });
    const ys = rng.normalArray(B * T * n, 3);
    const xs = rng.normalArray(B * T * 3, 3);
    const cts = rng.normalArray(B * T * n, 1);
    const fast = createCpuBackend({ dtype: 'float32', compileMin: 0, simd: false, threads: 1 });
    const ref = createReferenceBackend({ dtype: 'float32' });
    try {
      const v = cell.vjp;
      for (const [program, withCt] of [
        [cell.stepProgram(), false],
        [{ graph: v.graph, outputs: [v.dState, v.dInput].filter((id): id is number => id !== null) }, true],
      ] as [StepProgram, boolean][]) {
        const run = (be: CpuBackend) =>
          be
            .runStep(program, {
              state: be.tensor(ys, [B, T, n], 'float32'),
              input: be.tensor(xs, [B, T, 3], 'float32'),
              cotangent: withCt ? be.tensor(cts, [B, T, n], 'float32') : undefined,
              params: tensors(be, params),
            })
            .outputs.map((t) => be.readSync(t));
        const want = run(ref);
        for (const [k, got] of run(fast).entries()) expect(got, `output ${k}`).toEqual(want[k]);
      }
      const seq = (be: CpuBackend) =>
        be.readSync(
          be.runSequential(cell.stepProgram(), {
            input: be.tensor(xs, [B, T, 3], 'float32'),
            y0: be.tensor(ys.slice(0, B * n), [B, n], 'float32'),
            params: tensors(be, params),
          }),
        );
      expect(seq(fast)).toEqual(seq(ref));
    } finally {
      fast.destroy();
      ref.destroy();
    }
  });
});

describe('float32: the generated JavaScript keeps tanh relatively accurate at every magnitude', () => {
  it('within 1 ulp of the correctly rounded tanh from 1e-40 to 1e3, both signs, and exact at 0, ±∞ and NaN', () => {
    // 1 − 2/(e^{2x} + 1) had cancelled for small x: 186 ulps at x = 1e-11 and 0 for x = 1e-30.
    const xs: number[] = [0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN];
    for (let d = -40; d < 3; d++) for (let k = 0; k < 20; k++) xs.push(Math.fround(10 ** (d + k / 20)), -Math.fround(10 ** (d + k / 20)));
    const cell = defineCell({ state: 1, input: 1, params: {} }, (h, x) => L.tanh(L.add(x, L.mul(h, 0))));
    const be = createCpuBackend({ dtype: 'float32', compileMin: 0, simd: false, threads: 1 });
    try {
      const program = cell.stepProgram();
      const N = xs.length;
      const out = be.runStep(program, {
        state: be.tensor(new Float32Array(N), [1, N, 1], 'float32'),
        input: be.tensor(Float32Array.from(xs), [1, N, 1], 'float32'),
        params: {},
      }).outputs[0]!;
      const got = be.readSync(out);
      const bits = new Int32Array(new Float32Array(1).buffer);
      const view = new Float32Array(bits.buffer);
      const ordinal = (v: number) => {
        view[0] = v;
        return bits[0]! < 0 ? -2147483648 - bits[0]! : bits[0]!;
      };
      for (let i = 0; i < N; i++) {
        const want = Math.fround(Math.tanh(xs[i]!));
        if (Number.isNaN(want)) expect(got[i], `tanh(${xs[i]})`).toBeNaN();
        else expect(Math.abs(ordinal(got[i]!) - ordinal(want)), `ulps at x = ${xs[i]}`).toBeLessThanOrEqual(1);
      }
    } finally {
      be.destroy();
    }
  });
});
