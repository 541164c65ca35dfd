import { type Backend, type Cell, deerWithGrad, Rng, type Tensor } from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { CELL_FAMILIES, INPUT_SIZE, maxAbsDiff, maxRelDiff, sequenceData, userDefinedCell } from './fixtures.js';

const FD_EPS = 1e-6;

function derivativeCells(): Cell[] {
  return [...CELL_FAMILIES.map((f) => f.make(f.id === 'lstm' ? 3 : 4, INPUT_SIZE)), userDefinedCell()];
}

/** Evaluate f (and optionally the Jacobian) at per-element states, on one backend. */
async function stepValues(
  backend: Backend,
  cell: Cell,
  dtype: SuiteContext['dtype'],
  state: Float64Array,
  x: Float64Array,
  params: Record<string, Float64Array>,
  E: number,
  blockSize?: number,
) {
  const n = cell.stateSize;
  const tensors: Tensor[] = [];
  const t = <T extends Tensor>(v: T) => {
    tensors.push(v);
    return v;
  };
  try {
    const p: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(params)) p[k] = t(backend.tensor(v, [v.length], dtype));
    const program = blockSize === undefined ? cell.stepProgram() : cell.linearizeProgram(blockSize);
    const out = backend.runStep(program, {
      state: t(backend.tensor(state, [1, E, n], dtype)),
      input: t(backend.tensor(x, [1, E, cell.inputSize], dtype)),
      params: p,
    });
    for (const o of out.outputs) t(o);
    const f = await backend.read(out.outputs[0]!);
    const J = out.jacobian ? await backend.read(t(out.jacobian)) : undefined;
    return { f, J };
  } finally {
    for (const v of tensors) backend.dispose(v);
  }
}

export function defineDerivativeCases(ctx: SuiteContext): void {
  for (const cell of derivativeCells()) {
    ctx.test(`jacobian/${cell.name}`, async () => {
      const E = 5;
      const n = cell.stateSize;
      const rng = new Rng(31);
      const state = rng.normalArray(E * n, 0.7);
      const x = rng.normalArray(E * cell.inputSize);
      const params = cell.init({ seed: 3 });
      const round = (a: Float64Array) => (ctx.dtype === 'float32' ? a.map(Math.fround) : a);
      for (const k of Object.keys(params)) params[k] = round(params[k]!);
      // The derived dense Jacobian on the backend under test, against central differences of
      // f taken on the float64 oracle (columns j: perturb y_j in every element at once).
      const { J } = await stepValues(ctx.backend(), cell, ctx.dtype, round(state), round(x), params, E, n);
      const fd = new Float64Array(E * n * n);
      for (let j = 0; j < n; j++) {
        const plus = state.slice();
        const minus = state.slice();
        for (let e = 0; e < E; e++) {
          plus[e * n + j]! += FD_EPS;
          minus[e * n + j]! -= FD_EPS;
        }
        const fp = (await stepValues(ctx.oracle(), cell, 'float64', plus, x, params, E)).f;
        const fm = (await stepValues(ctx.oracle(), cell, 'float64', minus, x, params, E)).f;
        for (let e = 0; e < E; e++) {
          for (let i = 0; i < n; i++) fd[e * n * n + i * n + j] = (fp[e * n + i]! - fm[e * n + i]!) / (2 * FD_EPS);
        }
      }
      const tol = ctx.dtype === 'float64' ? 1e-7 : 1e-4;
      expect(maxAbsDiff(J!, fd)).toBeLessThanOrEqual(tol);
      // The block structure holds exactly the diagonal blocks of the dense Jacobian.
      const s = cell.exactBlockSize;
      if (s < n) {
        const blocks = (await stepValues(ctx.backend(), cell, ctx.dtype, round(state), round(x), params, E, s)).J!;
        const expected = new Float64Array(E * n * s);
        for (let e = 0; e < E; e++)
          for (let k = 0; k < n / s; k++)
            for (let i = 0; i < s; i++)
              for (let j = 0; j < s; j++) {
                expected[((e * n) / s + k) * s * s + i * s + j] = J![e * n * n + (k * s + i) * n + k * s + j]!;
              }
        expect(maxAbsDiff(blocks, expected)).toBeLessThanOrEqual(tol);
      }
    });

    ctx.test(`gradient/${cell.name}`, async () => {
      await checkGradients(ctx, cell);
    });
  }
}

/** Gradients computed in windows of time steps equal the one-window gradients. */
export function defineWindowedGradientCase(ctx: SuiteContext): void {
  ctx.test('gradient/windowed', async () => {
    const cell = CELL_FAMILIES[0]!.make(4, INPUT_SIZE);
    const B = 2;
    const T = 23;
    const data = sequenceData(47, B, T, cell, ctx.dtype);
    const w = new Rng(49).normalArray(B * T * cell.stateSize);
    const whole = await gradientsOn(ctx.backend(), ctx.dtype, cell, data, w, B, T);
    const windowed = await gradientsOn(ctx.backend(), ctx.dtype, cell, data, w, B, T, 5);
    const tol = ctx.dtype === 'float64' ? 1e-12 : 1e-5;
    for (const name of Object.keys(whole.params)) {
      expect(maxAbsDiff(windowed.params[name]!, whole.params[name]!)).toBeLessThanOrEqual(tol);
    }
    expect(maxAbsDiff(windowed.x, whole.x)).toBeLessThanOrEqual(tol);
    expect(maxAbsDiff(windowed.h0, whole.h0)).toBeLessThanOrEqual(tol);
  });
}

/** ∂L/∂(θ, x, h0) for L = Σ w ⊙ y by deerWithGrad, against central differences on the oracle. */
async function checkGradients(ctx: SuiteContext, cell: Cell): Promise<void> {
  const B = 2;
  const T = 6;
  const n = cell.stateSize;
  const data = sequenceData(41, B, T, cell, ctx.dtype);
  const w = new Rng(43).normalArray(B * T * n);
  const backend = ctx.backend();
  const grads = await gradientsOn(backend, ctx.dtype, cell, data, w, B, T);
  const loss = async (params: Record<string, Float64Array>, x: Float64Array, h0: Float64Array) => {
    const oracle = ctx.oracle();
    const xt = oracle.tensor(x, [B, T, cell.inputSize], 'float64');
    try {
      const r = await deerWithGrad(oracle, cell, params, xt, { h0 });
      const y = await oracle.read(r.y);
      r.dispose();
      let L = 0;
      for (let i = 0; i < y.length; i++) L += w[i]! * y[i]!;
      return L;
    } finally {
      oracle.dispose(xt);
    }
  };
  const fdOf = async (perturb: (sign: number) => Parameters<typeof loss>) =>
    ((await loss(...perturb(1))) - (await loss(...perturb(-1)))) / (2 * FD_EPS);
  const relTol = ctx.dtype === 'float64' ? 1e-6 : 1e-3;
  const check = (what: string, got: number, fd: number) =>
    expect(Math.abs(got - fd) / Math.max(Math.abs(fd), 1e-3), `${what}: ${got} vs finite difference ${fd}`).toBeLessThanOrEqual(
      relTol,
    );
  for (const spec of cell.params) {
    const g = grads.params[spec.name]!;
    for (let i = 0; i < spec.size; i += Math.max(1, Math.floor(spec.size / 5))) {
      const fd = await fdOf((sign) => {
        const p = { ...data.params, [spec.name]: data.params[spec.name]!.slice() };
        p[spec.name]![i]! += sign * FD_EPS;
        return [p, data.x, data.h0];
      });
      check(`d${spec.name}[${i}]`, g[i]!, fd);
    }
  }
  for (let i = 0; i < data.x.length; i += 7) {
    const fd = await fdOf((sign) => {
      const x = data.x.slice();
      x[i]! += sign * FD_EPS;
      return [data.params, x, data.h0];
    });
    check(`dx[${i}]`, grads.x[i]!, fd);
  }
  for (let i = 0; i < data.h0.length; i++) {
    const fd = await fdOf((sign) => {
      const h0 = data.h0.slice();
      h0[i]! += sign * FD_EPS;
      return [data.params, data.x, h0];
    });
    check(`dh0[${i}]`, grads.h0[i]!, fd);
  }
  if (ctx.dtype === 'float32') {
    // float32 gradients against the float64 ones, relative to the largest entry.
    const ref = await gradientsOn(ctx.oracle(), 'float64', cell, data, w, B, T);
    for (const spec of cell.params) {
      const scale = Math.max(...ref.params[spec.name]!.map(Math.abs), 1e-6);
      expect(maxRelDiff(grads.params[spec.name]!, ref.params[spec.name]!, scale)).toBeLessThanOrEqual(1e-4);
    }
  }
}

async function gradientsOn(
  backend: Backend,
  dtype: SuiteContext['dtype'],
  cell: Cell,
  data: ReturnType<typeof sequenceData>,
  w: Float64Array,
  B: number,
  T: number,
  window?: number,
) {
  const x = backend.tensor(data.x, [B, T, cell.inputSize], dtype);
  const dy = backend.tensor(w, [B, T, cell.stateSize], dtype);
  const r = await deerWithGrad(backend, cell, data.params, x, window ? { h0: data.h0, window } : { h0: data.h0 });
  try {
    const g = await r.vjp(dy);
    const params: Record<string, Float64Array> = {};
    for (const [k, v] of Object.entries(g.params)) {
      params[k] = Float64Array.from(await backend.read(v));
      backend.dispose(v);
    }
    const gx = Float64Array.from(await backend.read(g.x));
    const gh = Float64Array.from(await backend.read(g.h0));
    backend.dispose(g.x);
    backend.dispose(g.h0);
    return { params, x: gx, h0: gh };
  } finally {
    r.dispose();
    backend.dispose(x);
    backend.dispose(dy);
  }
}
