import { type Cell, cells, defineCell, lang, Rng, type StepProgram, type Tensor } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { makeSeqPlan, makeStepPlan } from '../src/compiled/backend.js';
import { matvecCols, matvecRows } from '../src/compiled/matvec.js';
import { affineOffsetFast, scanFast } from '../src/compiled/scan.js';
import { createCpuBackend, createReferenceBackend } from '../src/index.js';
import { scanBlocks } from '../src/scan.js';

const rng = new Rng(7);

describe('batched matvec kernels', () => {
  for (const [E, rows, cols] of [
    [1, 1, 1],
    [3, 5, 7],
    [4, 8, 3],
    [5, 13, 16],
  ] as const) {
    it(`E=${E} rows=${rows} cols=${cols}, strided, with offsets`, () => {
      const W = Float64Array.from(rng.normalArray(2 + rows * cols, 1));
      const xs = cols + 2;
      const X = Float32Array.from(rng.normalArray(3 + E * xs, 1));
      const os = rows + 1;
      const O = new Float64Array(1 + E * os);
      matvecRows(W, 2, rows, cols, X, 3, xs, E, O, 1, os);
      const OT = new Float64Array(E * cols);
      const XT = Float64Array.from(rng.normalArray(E * rows, 1));
      matvecCols(W, 2, rows, cols, XT, 0, rows, E, OT, 0, cols);
      for (let e = 0; e < E; e++) {
        for (let r = 0; r < rows; r++) {
          let acc = 0;
          for (let j = 0; j < cols; j++) acc += W[2 + r * cols + j]! * X[3 + e * xs + j]!;
          expect(O[1 + e * os + r]).toBeCloseTo(acc, 12);
        }
        for (let j = 0; j < cols; j++) {
          let acc = 0;
          for (let r = 0; r < rows; r++) acc += W[2 + r * cols + j]! * XT[e * rows + r]!;
          expect(OT[e * cols + j]).toBeCloseTo(acc, 12);
        }
      }
    });
  }
});

const CELLS: [string, Cell][] = [
  ['gru', cells.gru({ inputSize: 3, hiddenSize: 6 })],
  ['gru lbr0', cells.gru({ inputSize: 3, hiddenSize: 6, linearBeforeReset: 0 })],
  ['gru clip', cells.gru({ inputSize: 2, hiddenSize: 4, clip: 0.5 })],
  ['multi-head gru', cells.gru({ inputSize: 3, hiddenSize: 8, heads: 4 })],
  ['lstm', cells.lstm({ inputSize: 2, hiddenSize: 5 })],
  ['elman', cells.elman({ inputSize: 2, hiddenSize: 5 })],
  ['mlp', cells.mlp({ stateSize: 4, inputSize: 2, hidden: [6] })],
  ['hamiltonian', cells.hamiltonian({ dof: 2, hidden: [5] })],
  // A sum over a product with another sum: its Jacobian has row-independent entries (sums of rows,
  // broadcast rows), which the generated code keeps per element instead of recomputing per entry.
  [
    'sums of a product',
    defineCell({ state: 6, input: 1, params: { W: [6, 6], c: [12] } }, (h, _x, p) => {
      const a = lang.sum(lang.mul(lang.tanh(lang.concat(h, h)), p.c));
      const b = lang.dot(lang.matvec(p.W, h), a);
      return lang.tanh(lang.add(lang.mul(0.5, h), lang.mul(b, lang.constant([0.01, -0.02, 0.03, 0, 0.01, -0.01]))));
    }),
  ],
];

function blockSizes(cell: Cell): number[] {
  const n = cell.stateSize;
  return [...new Set([1, cell.exactBlockSize, n, ...(n % 2 === 0 ? [2] : [])])];
}

describe('compiled step programs agree with the reference interpreter (float64)', () => {
  const B = 2;
  const T = 5;
  for (const [name, cell] of CELLS) {
    const n = cell.stateSize;
    const m = cell.inputSize;
    const params = cell.init({ seed: 1 });
    const ys = rng.normalArray(B * T * n, 1);
    const xs = rng.normalArray(B * T * Math.max(m, 1), 1);
    const cts = rng.normalArray(B * T * n, 1);
    const run = (be: ReturnType<typeof createCpuBackend>, program: StepProgram, withCt: boolean) => {
      const p: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
      const out = be.runStep(program, {
        state: be.tensor(ys, [B, T, n]),
        input: m > 0 ? be.tensor(xs.slice(0, B * T * m), [B, T, m]) : undefined,
        cotangent: withCt ? be.tensor(cts, [B, T, n]) : undefined,
        params: p,
      });
      return [...out.outputs, ...(out.jacobian ? [out.jacobian] : [])].map((t) =>
        (be as never as { data(t: Tensor): Float64Array }).data(t),
      );
    };
    const same = (program: StepProgram, withCt: boolean) => {
      const a = run(createCpuBackend({ compileMin: 0 }), program, withCt);
      const b = run(createReferenceBackend(), program, withCt);
      expect(a.length).toBe(b.length);
      a.forEach((arr, k) => {
        let err = 0;
        for (let i = 0; i < arr.length; i++) err = Math.max(err, Math.abs(arr[i]! - b[k]![i]!));
        expect(err).toBeLessThan(1e-12);
      });
    };
    for (const s of blockSizes(cell)) {
      it(`${name}: f and the Jacobian in blocks of ${s}`, () => {
        expect(makeStepPlan(cell.linearizeProgram(s), false)).toBeTruthy();
        same(cell.linearizeProgram(s), false);
      });
    }
    it(`${name}: the VJP program`, () => {
      const v = cell.vjp;
      const outs = [v.dState, v.dInput].filter((id): id is number => id !== null);
      same({ graph: v.graph, outputs: outs }, true);
    });
    it(`${name}: the sequential plan compiles`, () => {
      expect(makeSeqPlan(cell.stepProgram(), true).step.source).toContain('function kernel');
    });
  }
});

describe('hoisted input work', () => {
  it('is recomputed when the params change, reused when they do not', async () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 3 });
    const be = createCpuBackend({ compileMin: 0 });
    const ref = createReferenceBackend();
    const B = 2;
    const T = 4;
    const x = rng.normalArray(B * T * 2, 1);
    const y = rng.normalArray(B * T * 3, 1);
    const xt = be.tensor(x, [B, T, 2]);
    for (const seed of [1, 1, 2]) {
      const params = cell.init({ seed });
      const mk = (b: typeof be) =>
        Object.fromEntries(Object.entries(params).map(([k, v]) => [k, b.tensor(v, [v.length])]));
      const program = cell.linearizeProgram(3);
      const a = be.runStep(program, { state: be.tensor(y, [B, T, 3]), input: xt, params: mk(be) });
      const r = ref.runStep(program, {
        state: ref.tensor(y, [B, T, 3]),
        input: ref.tensor(x, [B, T, 2]),
        params: mk(ref),
      });
      for (const [u, v] of [
        [await be.read(a.outputs[0]!), await ref.read(r.outputs[0]!)],
        [await be.read(a.jacobian!), await ref.read(r.jacobian!)],
      ] as const) {
        expect(u.length).toBe(v.length);
        for (let k = 0; k < u.length; k++) expect(Math.abs(u[k]! - v[k]!)).toBeLessThan(1e-14);
      }
    }
  });
});

describe('scan and affine offset', () => {
  // n = s: one block per step, the state kept in locals (rounded to float32 with Math.fround).
  for (const [n, s] of [
    [1, 1],
    [2, 2],
    [3, 1],
    [4, 2],
    [4, 4],
    [6, 3],
    [8, 8],
    [18, 9],
  ] as const) {
    for (const reverse of [false, true]) {
      for (const Arr of [Float64Array, Float32Array]) {
        const f32 = Arr === Float32Array;
        it(`n=${n} s=${s}${reverse ? ' reversed' : ''}${f32 ? ' float32' : ''} matches the reference scan`, () => {
          const B = 2;
          const T = 7;
          const A = Arr.from(rng.normalArray(B * T * n * s, 0.5));
          const c = Arr.from(rng.normalArray(B * T * n, 1));
          const y0 = Arr.from(rng.normalArray(B * n, 1));
          const a = new Arr(B * T * n);
          const b = new Arr(B * T * n);
          scanFast(A, c, y0, a, B, T, n, s, reverse);
          scanBlocks(A, c, y0, b, B, T, n, s, reverse);
          expect(Array.from(a)).toEqual(Array.from(b));
          if (f32) return;
          const off = new Float64Array(B * T * n);
          affineOffsetFast(c, A, a, off, B * T, n, s);
          for (let e = 0; e < B * T; e++) {
            for (let i = 0; i < n; i++) {
              const k = Math.floor(i / s);
              let acc = 0;
              for (let j = 0; j < s; j++)
                acc += A[((e * n) / s + k) * s * s + (i % s) * s + j]! * a[e * n + k * s + j]!;
              expect(off[e * n + i]).toBeCloseTo(c[e * n + i]! - acc, 12);
            }
          }
        });
      }
    }
  }
});

describe('small calls', () => {
  it('run on the reference interpreter below compileMin and agree with the generated code', async () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 3 });
    const params = cell.init({ seed: 4 });
    const x = rng.normalArray(2 * 5 * 2, 1);
    const outs: Float64Array[] = [];
    for (const compileMin of [0, 1000]) {
      const be = createCpuBackend({ compileMin });
      const p = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length])]));
      const y = be.runSequential(cell.stepProgram(), {
        input: be.tensor(x, [2, 5, 2]),
        y0: be.zeros([2, 3]),
        params: p,
      });
      outs.push((await be.read(y)) as Float64Array);
    }
    for (let i = 0; i < outs[0]!.length; i++)
      expect(Math.abs(outs[0]![i]! - outs[1]![i]!)).toBeLessThan(1e-14);
  });
});
