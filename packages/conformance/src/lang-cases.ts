import {
  type Backend,
  type Cell,
  type DType,
  defineCell,
  lang,
  Rng,
  stepVjp,
  type Tensor,
  type Vec,
  type VecLike,
} from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';

/**
 * One case per op of the cell language: a small cell built around the op and the same step
 * written as a float64 host formula. Every backend checks, per case: values against the formula,
 * the derived Jacobian against central differences of the formula, the VJP (state, input and
 * parameter gradients) against finite differences, and — where the op is defined there — values
 * and derivatives at extreme inputs (|v| up to 1e30).
 */

type Params = Record<string, Float64Array>;
type Host = (h: Float64Array, x: Float64Array, p: Params) => number[];

interface Sample {
  readonly h: Float64Array;
  readonly x: Float64Array;
  readonly params: Params;
}

export interface LangCase {
  /** Case id: `lang/<op>`. */
  readonly id: string;
  readonly cell: () => Cell;
  readonly host: Host;
  /** E elements of inputs for the smooth checks (away from kinks and outside the domain). */
  readonly sample: (rng: Rng, E: number) => Sample;
  /** Inputs at extreme magnitudes: values (and for unary ops, derivatives) are checked there. */
  readonly extremes?: Sample;
  /** For unary ops: f'(u), to check the Jacobian and VJP at the extremes. */
  readonly derivative?: (u: number) => number;
  /** The op is bounded by 1 but float32 range reduction at huge arguments is not exact (sin, cos). */
  readonly boundedAtExtremes?: boolean;
}

const N = 4;
const FD_EPS = 1e-6;

const normal = (rng: Rng, k: number, scale = 1) => rng.normalArray(k, scale);

function defaultSample(shapes: Record<string, number>, m = N) {
  return (rng: Rng, E: number): Sample => {
    const params: Params = {};
    for (const [k, size] of Object.entries(shapes)) params[k] = rng.uniformArray(size, -0.8, 0.8);
    return { h: normal(rng, E * N), x: normal(rng, E * m), params };
  };
}

/** Draw an argument away from the kinks (by ≥ 0.05), inside the domain. */
function drawArg(rng: Rng, kinks: readonly number[], domain: 'all' | 'positive'): number {
  for (;;) {
    const u = domain === 'positive' ? 0.2 + Math.abs(rng.normal()) * 1.5 : rng.normal() * 1.6;
    if (kinks.every((k) => Math.abs(u - k) > 0.05)) return u;
  }
}

interface UnaryOptions {
  readonly kinks?: readonly number[];
  readonly domain?: 'all' | 'positive';
  readonly extremes: readonly number[];
  readonly derivative: (u: number) => number;
  readonly boundedAtExtremes?: boolean;
}

/** f(a ⊙ h + x) for an elementwise op f: state, input and a parameter all reach the op. */
function unaryCase(
  name: string,
  f: (v: VecLike) => Vec,
  host: (u: number) => number,
  o: UnaryOptions,
): LangCase {
  const ext = o.extremes;
  const eh = new Float64Array(Math.ceil(ext.length / N) * N);
  for (let i = 0; i < eh.length; i++) eh[i] = ext[i % ext.length]!;
  return {
    id: `lang/${name}`,
    cell: () =>
      defineCell({ name: `op-${name}`, state: N, input: N, params: { a: [N] } }, (h, x, p) =>
        f(lang.add(lang.mul(p.a!, h), x)),
      ),
    host: (h, x, p) => Array.from(h, (hv, i) => host(p.a![i]! * hv + x[i]!)),
    sample: (rng, E) => {
      const a = Float64Array.from(
        { length: N },
        () => (0.5 + rng.uniform()) * (rng.uniform() < 0.5 ? -1 : 1),
      );
      const h = normal(rng, E * N);
      const x = new Float64Array(E * N);
      for (let i = 0; i < E * N; i++)
        x[i] = drawArg(rng, o.kinks ?? [], o.domain ?? 'all') - a[i % N]! * h[i]!;
      return { h, x, params: { a } };
    },
    extremes: { h: eh, x: new Float64Array(eh.length), params: { a: new Float64Array(N).fill(1) } },
    derivative: o.derivative,
    ...(o.boundedAtExtremes ? { boundedAtExtremes: true } : {}),
  };
}

const sig = (u: number) => 1 / (1 + Math.exp(-u));
const BIG = [1e30, -1e30, 1e10, -1e10];

/** Every op of the cell language, each in a case of its own. */
export function langCases(): LangCase[] {
  const { add, sub, mul, div, minimum, maximum, matvec, matvecT, slice, concat, sum, dot, grad, constant } =
    lang;
  const L = lang;
  const cases: LangCase[] = [
    unaryCase('neg', L.neg, (u) => -u, { extremes: BIG, derivative: () => -1 }),
    unaryCase('sigmoid', L.sigmoid, sig, {
      extremes: [...BIG, 100, -100],
      derivative: (u) => sig(u) * (1 - sig(u)),
    }),
    unaryCase('tanh', L.tanh, Math.tanh, {
      extremes: [...BIG, 20, -20],
      derivative: (u) => 1 - Math.tanh(u) ** 2,
    }),
    unaryCase('exp', L.exp, Math.exp, { extremes: [-1e30, -100, 80, 1], derivative: Math.exp }),
    unaryCase('log', L.log, Math.log, {
      domain: 'positive',
      extremes: [1e30, 1e-30, 1e10, 1],
      derivative: (u) => 1 / u,
    }),
    unaryCase('softplus', L.softplus, (u) => (u > 30 ? u : Math.log1p(Math.exp(u))), {
      extremes: [...BIG, 50, -50],
      derivative: sig,
    }),
    unaryCase('relu', L.relu, (u) => Math.max(u, 0), {
      kinks: [0],
      extremes: BIG,
      derivative: (u) => (u > 0 ? 1 : 0),
    }),
    unaryCase('step', L.step, (u) => (u > 0 ? 1 : 0), { kinks: [0], extremes: BIG, derivative: () => 0 }),
    unaryCase('sin', L.sin, Math.sin, { extremes: BIG, derivative: Math.cos, boundedAtExtremes: true }),
    unaryCase('cos', L.cos, Math.cos, {
      extremes: BIG,
      derivative: (u) => -Math.sin(u),
      boundedAtExtremes: true,
    }),
    unaryCase('square', L.square, (u) => u * u, {
      extremes: [1e15, -1e15, 1e30, -3],
      derivative: (u) => 2 * u,
    }),
    unaryCase('sqrt', L.sqrt, Math.sqrt, {
      domain: 'positive',
      extremes: [1e30, 1e-30, 1e10, 4],
      derivative: (u) => 0.5 / Math.sqrt(u),
    }),
    unaryCase('abs', L.abs, Math.abs, { kinks: [0], extremes: BIG, derivative: Math.sign }),
    unaryCase('sign', L.sign, Math.sign, { kinks: [0], extremes: BIG, derivative: () => 0 }),
    unaryCase(
      'clip',
      (v) => L.clip(v, 1.5),
      (u) => Math.min(Math.max(u, -1.5), 1.5),
      {
        kinks: [-1.5, 1.5],
        extremes: [1e30, -1e30, 4e7, -4e7, 2.5e16, -2.5e16, 1, -1],
        derivative: (u) => (Math.abs(u) < 1.5 ? 1 : 0),
      },
    ),
    unaryCase(
      'leakyRelu',
      (v) => L.leakyRelu(v, 0.1),
      (u) => (u > 0 ? u : 0.1 * u),
      {
        kinks: [0],
        // At the kink the left slope, as PyTorch takes it (the two branches' ties had given 0).
        extremes: [...BIG, 0],
        derivative: (u) => (u > 0 ? 1 : 0.1),
      },
    ),
    unaryCase(
      'thresholdedRelu',
      (v) => L.thresholdedRelu(v, 0.5),
      (u) => (u > 0.5 ? u : 0),
      {
        kinks: [0.5],
        extremes: BIG,
        derivative: (u) => (u > 0.5 ? 1 : 0),
      },
    ),
    unaryCase(
      'scaledTanh',
      (v) => L.scaledTanh(v, 1.3, 0.7),
      (u) => 1.3 * Math.tanh(0.7 * u),
      {
        extremes: BIG,
        derivative: (u) => 1.3 * 0.7 * (1 - Math.tanh(0.7 * u) ** 2),
      },
    ),
    unaryCase(
      'hardSigmoid',
      (v) => L.hardSigmoid(v, 0.2, 0.5),
      (u) => Math.max(0, Math.min(1, 0.2 * u + 0.5)),
      {
        kinks: [-2.5, 2.5],
        extremes: BIG,
        derivative: (u) => (Math.abs(u) < 2.5 ? 0.2 : 0),
      },
    ),
    unaryCase(
      'elu',
      (v) => L.elu(v, 0.8),
      (u) => (u >= 0 ? u : 0.8 * (Math.exp(u) - 1)),
      {
        kinks: [0],
        extremes: [...BIG, 0],
        derivative: (u) => (u > 0 ? 1 : 0.8 * Math.exp(u)),
      },
    ),
    // α = 1 (the default): smooth at 0, slope 1. Both branches' ties had taken the slope 0 there, so
    // ∂L/∂h0 at the default h0 = 0 came out 0 instead of 0.5 (fuzz review).
    unaryCase(
      'elu-default',
      (v) => L.elu(v),
      (u) => (u >= 0 ? u : Math.expm1(u)),
      {
        extremes: [...BIG, 0, 1e-9, -1e-9],
        derivative: (u) => (u > 0 ? 1 : Math.exp(u)),
      },
    ),
    unaryCase('softsign', L.softsign, (u) => u / (1 + Math.abs(u)), {
      extremes: BIG,
      derivative: (u) => 1 / (1 + Math.abs(u)) ** 2,
    }),
    unaryCase(
      'affine',
      (v) => L.affine(v, 1.5, -0.25),
      (u) => 1.5 * u - 0.25,
      { extremes: BIG, derivative: () => 1.5 },
    ),
  ];

  // Binary ops on a ⊙ h and x (both vectors), and with a broadcast scalar.
  const binary: [string, (a: VecLike, b: VecLike) => Vec, (u: number, v: number) => number, boolean][] = [
    ['add', add, (u, v) => u + v, false],
    ['sub', sub, (u, v) => u - v, false],
    ['mul', mul, (u, v) => u * v, false],
    ['div', div, (u, v) => u / v, false],
    ['min', minimum, Math.min, true],
    ['max', maximum, Math.max, true],
  ];
  for (const [name, f, host, kinked] of binary) {
    const away = (rng: Rng, E: number): Sample => {
      const a = rng.uniformArray(N, 0.5, 1.5);
      const h = normal(rng, E * N);
      const x = normal(rng, E * N);
      for (let i = 0; i < E * N; i++) {
        // Divisors away from 0; min/max operands away from ties.
        if (name === 'div' && Math.abs(x[i]!) < 0.3) x[i] = x[i]! < 0 ? -0.3 - Math.abs(x[i]!) : 0.3 + x[i]!;
        if (kinked && Math.abs(a[i % N]! * h[i]! - x[i]!) < 0.05) x[i]! += 0.2;
      }
      return { h, x, params: { a } };
    };
    cases.push({
      id: `lang/${name}`,
      cell: () =>
        defineCell({ name: `op-${name}`, state: N, input: N, params: { a: [N] } }, (h, x, p) =>
          f(mul(p.a!, h), x),
        ),
      host: (h, x, p) => Array.from(h, (hv, i) => host(p.a![i]! * hv, x[i]!)),
      sample: away,
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e30, 3]),
        x: Float64Array.from(name === 'div' ? [1e30, 2, -1e-10, 1e-30] : [-1e30, 1e30, 5, -1e30]),
        params: { a: new Float64Array(N).fill(1) },
      },
    });
    cases.push({
      id: `lang/${name}-broadcast`,
      cell: () =>
        defineCell({ name: `op-${name}-bcast`, state: N, input: N, params: { a: [N] } }, (h, x, p) =>
          add(f(h, 0.75), f(sum(mul(p.a!, x)), h)),
        ),
      host: (h, x, p) => {
        let s = 0;
        for (let i = 0; i < N; i++) s += p.a![i]! * x[i]!;
        return Array.from(h, (hv) => host(hv, 0.75) + host(s, hv));
      },
      sample: (rng, E) => {
        const a = rng.uniformArray(N, -0.8, 0.8);
        const h = normal(rng, E * N);
        const x = normal(rng, E * N);
        for (let e = 0; e < E; e++) {
          let s = 0;
          for (let i = 0; i < N; i++) s += a[i]! * x[e * N + i]!;
          for (let i = 0; i < N; i++) {
            const k = e * N + i;
            // Away from the ties h = 0.75, h = s and from h = 0 for div.
            while (
              Math.abs(h[k]! - 0.75) < 0.05 ||
              Math.abs(h[k]! - s) < 0.05 ||
              (name === 'div' && Math.abs(h[k]!) < 0.3)
            ) {
              h[k]! += 0.37;
            }
          }
        }
        return { h, x, params: { a } };
      },
    });
  }

  cases.push(
    {
      id: 'lang/matvec',
      cell: () =>
        defineCell({ name: 'op-matvec', state: N, input: 3, params: { W: [N, N], U: [N, 3] } }, (h, x, p) =>
          add(matvec(p.W!, h), matvec(p.U!, x)),
        ),
      host: (h, x, p) => {
        const out = matvecHost(p.W!, N, N, h);
        const ux = matvecHost(p.U!, N, 3, x);
        return out.map((v, i) => v + ux[i]!);
      },
      sample: defaultSample({ W: N * N, U: N * 3 }, 3),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1e30, 0, -1]),
        params: { W: ones(N * N, 0.5), U: ones(N * 3, 0.25) },
      },
    },
    {
      id: 'lang/matvecT',
      cell: () =>
        defineCell({ name: 'op-matvecT', state: N, input: 3, params: { W: [N, N], U: [3, N] } }, (h, x, p) =>
          add(matvecT(p.W!, h), matvecT(p.U!, x)),
        ),
      host: (h, x, p) => {
        const out = matvecTHost(p.W!, N, N, h);
        const ux = matvecTHost(p.U!, 3, N, x);
        return out.map((v, i) => v + ux[i]!);
      },
      sample: defaultSample({ W: N * N, U: 3 * N }, 3),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1e30, 0, -1]),
        params: { W: ones(N * N, 0.5), U: ones(N * 3, 0.25) },
      },
    },
    {
      id: 'lang/block-matvec',
      cell: () =>
        defineCell({ name: 'op-block-matvec', state: N, input: N, params: { B: [2, 2, 2] } }, (h, x, p) =>
          add(matvec(p.B!, h), matvecT(p.B!, x)),
        ),
      host: (h, x, p) => {
        const out: number[] = [];
        for (let k = 0; k < 2; k++) {
          const blk = p.B!.subarray(k * 4, k * 4 + 4);
          const a = matvecHost(blk, 2, 2, h.subarray(k * 2, k * 2 + 2));
          const b = matvecTHost(blk, 2, 2, x.subarray(k * 2, k * 2 + 2));
          out.push(a[0]! + b[0]!, a[1]! + b[1]!);
        }
        return out;
      },
      sample: defaultSample({ B: 8 }),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1e30, 0, -1, 3]),
        params: { B: ones(8, 0.5) },
      },
    },
    {
      id: 'lang/slice-concat',
      cell: () =>
        defineCell({ name: 'op-slice-concat', state: N, input: N, params: {} }, (h, x) =>
          concat(slice(h, 2, 2), mul(slice(x, 1, 1), slice(h, 0, 1)), slice(add(h, x), 3, 1)),
        ),
      host: (h, x) => [h[2]!, h[3]!, x[1]! * h[0]!, h[3]! + x[3]!],
      sample: defaultSample({}),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1e30, 0, -1, 3]),
        params: {},
      },
    },
    {
      id: 'lang/sum',
      cell: () =>
        defineCell({ name: 'op-sum', state: N, input: N, params: { a: [N] } }, (h, x, p) =>
          add(mul(h, sum(mul(p.a!, x))), sum(h)),
        ),
      host: (h, x, p) => {
        let s = 0;
        let t = 0;
        for (let i = 0; i < N; i++) {
          s += p.a![i]! * x[i]!;
          t += h[i]!;
        }
        return Array.from(h, (hv) => hv * s + t);
      },
      sample: defaultSample({ a: N }),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1, 0, -1, 3]),
        params: { a: ones(N, 0.5) },
      },
    },
    {
      id: 'lang/dot',
      cell: () =>
        defineCell({ name: 'op-dot', state: N, input: N, params: { a: [N] } }, (h, x, p) =>
          add(mul(x, dot(h, p.a!)), dot(h, x)),
        ),
      host: (h, x, p) => {
        let s = 0;
        let t = 0;
        for (let i = 0; i < N; i++) {
          s += h[i]! * p.a![i]!;
          t += h[i]! * x[i]!;
        }
        return Array.from(x, (xv) => xv * s + t);
      },
      sample: defaultSample({ a: N }),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1, 0, -1, 3]),
        params: { a: ones(N, 0.5) },
      },
    },
    {
      id: 'lang/grad',
      // ∇_h Σ softplus(W h + x) = Wᵀ σ(W h + x): reverse mode inside the trace, then derived again.
      cell: () =>
        defineCell({ name: 'op-grad', state: N, input: N, params: { W: [N, N] } }, (h, x, p) =>
          grad(sum(L.softplus(add(matvec(p.W!, h), x))), h),
        ),
      host: (h, x, p) => {
        const z = matvecHost(p.W!, N, N, h).map((v, i) => sig(v + x[i]!));
        return matvecTHost(p.W!, N, N, Float64Array.from(z));
      },
      sample: defaultSample({ W: N * N }),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1, 0, -1, 3]),
        params: { W: ones(N * N, 0.5) },
      },
    },
    {
      id: 'lang/constant',
      cell: () =>
        defineCell({ name: 'op-constant', state: N, input: N, params: {} }, (h, x) =>
          add(mul(h, constant([1, -2, 0.5, 3])), sub(x, constant(0.25))),
        ),
      host: (h, x) => [
        h[0]! + x[0]! - 0.25,
        -2 * h[1]! + x[1]! - 0.25,
        0.5 * h[2]! + x[2]! - 0.25,
        3 * h[3]! + x[3]! - 0.25,
      ],
      sample: defaultSample({}),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1, 0, -1, 3]),
        params: {},
      },
    },
    {
      id: 'lang/addAll',
      cell: () =>
        defineCell({ name: 'op-addAll', state: N, input: N, params: { a: [N] } }, (h, x, p) =>
          L.addAll(h, x, p.a!, 1),
        ),
      host: (h, x, p) => Array.from(h, (hv, i) => hv + x[i]! + p.a![i]! + 1),
      sample: defaultSample({ a: N }),
      extremes: {
        h: Float64Array.from([1e30, -1e30, 1e29, 2]),
        x: Float64Array.from([1, 0, -1, 3]),
        params: { a: ones(N, 0.5) },
      },
    },
  );
  return cases;
}

function ones(k: number, v: number): Float64Array {
  return new Float64Array(k).fill(v);
}

function matvecHost(W: Float64Array, rows: number, cols: number, v: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < rows; i++) {
    let acc = 0;
    for (let j = 0; j < cols; j++) acc += W[i * cols + j]! * v[j]!;
    out.push(acc);
  }
  return out;
}

function matvecTHost(W: Float64Array, rows: number, cols: number, v: ArrayLike<number>): number[] {
  const out = new Array<number>(cols).fill(0);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j]! += W[i * cols + j]! * v[i]!;
  return out;
}

/** Run one step program on a backend for E elements; read back the named outputs. */
async function evalOn(
  backend: Backend,
  cell: Cell,
  dtype: DType,
  s: Sample,
  E: number,
  withJacobian: boolean,
) {
  const n = cell.stateSize;
  const m = cell.inputSize;
  const owned: Tensor[] = [];
  const t = <T extends Tensor>(v: T) => {
    owned.push(v);
    return v;
  };
  try {
    const params: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(s.params)) params[k] = t(backend.tensor(v, [v.length], dtype));
    const out = backend.runStep(withJacobian ? cell.linearizeProgram(n) : cell.stepProgram(), {
      state: t(backend.tensor(s.h, [1, E, n], dtype)),
      input: t(backend.tensor(s.x, [1, E, m], dtype)),
      params,
    });
    for (const o of out.outputs) t(o);
    const f = Float64Array.from(await backend.read(out.outputs[0]!));
    const J = out.jacobian ? Float64Array.from(await backend.read(t(out.jacobian))) : undefined;
    return { f, J };
  } finally {
    for (const v of owned) backend.dispose(v);
  }
}

async function vjpOn(backend: Backend, cell: Cell, dtype: DType, s: Sample, w: Float64Array, E: number) {
  const n = cell.stateSize;
  const m = cell.inputSize;
  const owned: Tensor[] = [];
  const t = <T extends Tensor>(v: T) => {
    owned.push(v);
    return v;
  };
  try {
    const params: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(s.params)) params[k] = t(backend.tensor(v, [v.length], dtype));
    const g = stepVjp(
      backend,
      cell,
      params,
      t(backend.tensor(s.h, [1, E, n], dtype)),
      t(backend.tensor(s.x, [1, E, m], dtype)),
      t(backend.tensor(w, [1, E, n], dtype)),
    );
    const read = async (v: Tensor | null, size: number) => {
      if (v === null) return new Float64Array(size);
      t(v);
      return Float64Array.from(await backend.read(v));
    };
    const dState = await read(g.dState, E * n);
    const dInput = await read(g.dInput, E * m);
    const dParams: Params = {};
    for (const spec of cell.params) dParams[spec.name] = await read(g.params[spec.name] ?? null, spec.size);
    return { dState, dInput, dParams };
  } finally {
    for (const v of owned) backend.dispose(v);
  }
}

function hostBatch(c: LangCase, s: Sample, E: number, n: number, m: number): Float64Array {
  const out = new Float64Array(E * n);
  for (let e = 0; e < E; e++)
    out.set(c.host(s.h.subarray(e * n, (e + 1) * n), s.x.subarray(e * m, (e + 1) * m), s.params), e * n);
  return out;
}

function roundSample(s: Sample, dtype: DType): Sample {
  if (dtype === 'float64') return s;
  const r = (a: Float64Array) => a.map(Math.fround);
  return {
    h: r(s.h),
    x: r(s.x),
    params: Object.fromEntries(Object.entries(s.params).map(([k, v]) => [k, r(v)])),
  };
}

/** |got − expected| ≤ tol · max(floor, |expected|) everywhere; infinities must match exactly. */
function expectClose(
  what: string,
  got: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  floor = 1,
): void {
  expect(got.length, `${what}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const g = got[i]!;
    const e = expected[i]!;
    if (!Number.isFinite(e)) {
      expect(g, `${what}[${i}]`).toBe(e);
      continue;
    }
    const err = Math.abs(g - e);
    if (!(err <= tol * Math.max(floor, Math.abs(e)))) {
      expect.fail(
        `${what}[${i}]: got ${g}, expected ${e} (error ${err}, allowed ${tol * Math.max(floor, Math.abs(e))})`,
      );
    }
  }
}

/** The conformance cases of the cell language: one per op. */
export function defineLangCases(ctx: SuiteContext): void {
  const E = 3;
  const valueTol = ctx.dtype === 'float64' ? 1e-12 : 2e-5;
  const derivTol = ctx.dtype === 'float64' ? 2e-7 : 2e-4;
  for (const c of langCases()) {
    ctx.test(c.id, async () => {
      const backend = ctx.backend();
      const cell = c.cell();
      const n = cell.stateSize;
      const m = cell.inputSize;
      const rng = new Rng(1009 + c.id.length * 31 + c.id.charCodeAt(5));
      const s = roundSample(c.sample(rng, E), ctx.dtype);
      const L = (h: Float64Array, x: Float64Array, p: Params, w: Float64Array) => {
        let acc = 0;
        for (let e = 0; e < E; e++) {
          const f = c.host(h.subarray(e * n, (e + 1) * n), x.subarray(e * m, (e + 1) * m), p);
          for (let i = 0; i < n; i++) acc += w[e * n + i]! * f[i]!;
        }
        return acc;
      };

      // Values.
      const { f, J } = await evalOn(backend, cell, ctx.dtype, s, E, true);
      expectClose(`${c.id} value`, f, hostBatch(c, s, E, n, m), valueTol);

      // Jacobian against central differences of the host formula.
      const fd = new Float64Array(E * n * n);
      for (let e = 0; e < E; e++) {
        for (let j = 0; j < n; j++) {
          const hp = s.h.slice(e * n, (e + 1) * n);
          const hm = hp.slice();
          hp[j]! += FD_EPS;
          hm[j]! -= FD_EPS;
          const xe = s.x.subarray(e * m, (e + 1) * m);
          const fp = c.host(hp, xe, s.params);
          const fm = c.host(hm, xe, s.params);
          for (let i = 0; i < n; i++) fd[e * n * n + i * n + j] = (fp[i]! - fm[i]!) / (2 * FD_EPS);
        }
      }
      expectClose(`${c.id} Jacobian`, J!, fd, derivTol);

      // VJP against finite differences of L = Σ w ⊙ f.
      const w = roundSample({ h: normal(rng, E * n), x: new Float64Array(0), params: {} }, ctx.dtype).h;
      const g = await vjpOn(backend, cell, ctx.dtype, s, w, E);
      const fdOf = (perturb: (d: number) => [Float64Array, Float64Array, Params]) =>
        (L(...perturb(FD_EPS), w) - L(...perturb(-FD_EPS), w)) / (2 * FD_EPS);
      const scale = (a: ArrayLike<number>) => Math.max(1, ...Array.from(a, Math.abs));
      const fdState = Float64Array.from({ length: E * n }, (_, k) =>
        fdOf((d) => {
          const h = s.h.slice();
          h[k]! += d;
          return [h, s.x, s.params];
        }),
      );
      expectClose(`${c.id} VJP state`, g.dState, fdState, derivTol, scale(fdState));
      const fdInput = Float64Array.from({ length: E * m }, (_, k) =>
        fdOf((d) => {
          const x = s.x.slice();
          x[k]! += d;
          return [s.h, x, s.params];
        }),
      );
      expectClose(`${c.id} VJP input`, g.dInput, fdInput, derivTol, scale(fdInput));
      for (const spec of cell.params) {
        const fdP = Float64Array.from({ length: spec.size }, (_, k) =>
          fdOf((d) => {
            const p = { ...s.params, [spec.name]: s.params[spec.name]!.slice() };
            p[spec.name]![k]! += d;
            return [s.h, s.x, p];
          }),
        );
        expectClose(`${c.id} VJP param ${spec.name}`, g.dParams[spec.name]!, fdP, derivTol, scale(fdP));
      }

      // Extreme inputs.
      if (c.extremes) {
        const ex = roundSample(c.extremes, ctx.dtype);
        const Ex = ex.h.length / n;
        const r = await evalOn(backend, cell, ctx.dtype, ex, Ex, c.derivative !== undefined);
        const round = ctx.dtype === 'float32' ? Math.fround : (v: number) => v;
        const expected = hostBatch(c, ex, Ex, n, m).map(round);
        if (c.boundedAtExtremes) {
          for (const v of r.f)
            expect(Number.isFinite(v) && Math.abs(v) <= 1 + 1e-6, `${c.id} extreme value ${v}`).toBe(true);
        } else {
          expectClose(
            `${c.id} value at extreme inputs`,
            r.f,
            expected,
            valueTol,
            ctx.dtype === 'float64' ? 1e-300 : 1e-37,
          );
        }
        if (c.derivative) {
          // Unary cases: a = 1, x = 0, so the Jacobian is diag(f'(h)).
          const floor = ctx.dtype === 'float64' ? 1e-15 : 1e-7;
          const Jx = r.J!;
          const dExp = new Float64Array(Ex * n * n);
          for (let e = 0; e < Ex; e++)
            for (let i = 0; i < n; i++) dExp[e * n * n + i * n + i] = round(c.derivative(ex.h[e * n + i]!));
          if (c.boundedAtExtremes) {
            for (const v of Jx)
              expect(Number.isFinite(v) && Math.abs(v) <= 1 + 1e-6, `${c.id} extreme derivative ${v}`).toBe(
                true,
              );
          } else {
            expectClose(`${c.id} Jacobian at extreme inputs`, Jx, dExp, valueTol * 10, floor);
            const wx = new Float64Array(Ex * n).fill(1);
            const gx = await vjpOn(backend, cell, ctx.dtype, ex, wx, Ex);
            const dState = Float64Array.from(
              { length: Ex * n },
              (_, k) => dExp[Math.floor(k / n) * n * n + (k % n) * (n + 1)]!,
            );
            expectClose(`${c.id} VJP at extreme inputs`, gx.dState, dState, valueTol * 10, floor);
          }
        }
      }
    });
  }
}
