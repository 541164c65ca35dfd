import { type Cell, cells, defineCell, lang, Rng, type StepProgram, type Tensor, type TypedArray } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { makeStepPlan } from '../src/compiled/backend.js';
import { createCpuBackend, createReferenceBackend } from '../src/index.js';

/**
 * The generated Jacobian of a gradient field (a Hessian through hidden layers: products by W and
 * Wᵀ nested several deep) had each entry of a product summed through entry functions that summed
 * their own inner products again, for every entry that read them: for cells.hamiltonian with
 * hidden [64, 64], ~n·h³ multiply-adds per element instead of ~n·h², 15–28 ms a point against the
 * reference interpreter's 0.3 ms. These tests count the work instead of timing it: every
 * parameter entry is read a few times per element (once per product that uses it), whatever the
 * depth.
 */

const rng = new Rng(11);

/** Runs a step plan's kernel on E elements with params that count their reads (by param name). */
function countReads(cell: Cell, program: StepProgram, E: number): Map<string, number> {
  const g = program.graph;
  const plan = makeStepPlan(program, false, false);
  // No input: nothing is hoisted, and the kernel's only external is the state.
  expect(plan.hoist).toBeUndefined();
  const { kernel } = plan;
  const params = cell.init({ seed: 3 });
  const reads = new Map<string, number>();
  const counting = (name: string, a: Float64Array): TypedArray =>
    new Proxy(a, {
      get(t, k) {
        if (typeof k === 'string' && /^\d+$/.test(k)) reads.set(name, (reads.get(name) ?? 0) + 1);
        const v = Reflect.get(t, k) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
  const P: TypedArray[] = [
    ...g.params.map((spec) => counting(spec.name, Float64Array.from(params[spec.name]!))),
    ...kernel.consts,
  ];
  const n = g.stateSize;
  const s = program.jacobian!.blockSize;
  const X = kernel.externals.map((id) => {
    expect(g.nodes[id]!.op).toBe('state');
    return Float64Array.from(rng.normalArray(E * n, 1));
  });
  const XS = kernel.externals.map((id) => g.nodes[id]!.size);
  const OS = program.outputs.map((id) => g.nodes[id]!.size);
  const O = OS.map((size) => new Float64Array(E * size));
  const S = kernel.scratch.map((x) => new Float64Array(E * x.size));
  if (kernel.accSize) S.push(new Float64Array(kernel.accSize));
  const J = new Float64Array(E * n * s);
  kernel.run(
    E,
    P,
    X,
    XS.map(() => 0),
    XS,
    O,
    OS.map(() => 0),
    OS,
    J,
    0,
    S,
  );
  expect(J.every(Number.isFinite)).toBe(true);
  return reads;
}

/** Bodies of the kernel's entry functions (evaluated per Jacobian entry). */
const entryFunctions = (source: string) => source.match(/^function M\d+\(e, r, c\) \{[\s\S]*?^\}/gm) ?? [];

describe('the compiled Jacobian computes each product once per element', () => {
  const fields: [string, Cell][] = [
    ['hamiltonian hidden [64, 64]', cells.hamiltonian({ dof: 2, hidden: [64, 64] })],
    ['hamiltonian hidden [16, 16, 16], tanh', cells.hamiltonian({ dof: 3, hidden: [16, 16, 16], activation: 'tanh' })],
    ['hamiltonian hidden [16]', cells.hamiltonian({ dof: 2, hidden: [16] })],
  ];
  for (const [name, cell] of fields) {
    const n = cell.stateSize;
    for (const s of [n, 2, 1]) {
      it(`${name}, blocks of ${s}: each parameter entry read at most 6 times per element`, () => {
        const E = 3;
        const reads = countReads(cell, cell.linearizeProgram(s), E);
        for (const spec of cell.params) {
          // Forward product, its transpose in the gradient, then one product per use in the
          // Hessian's expression: 4 reads per entry (+1 per element for a [1, h] last layer's
          // product by a constant).
          expect(reads.get(spec.name) ?? 0, spec.name).toBeLessThanOrEqual(E * (6 * spec.size + 1));
        }
      });
    }
    it(`${name}: no entry function sums over an inner matrix`, () => {
      const { source } = makeStepPlan(cell.linearizeProgram(n), false).kernel;
      for (const fn of entryFunctions(source)) expect(fn).not.toContain('for (');
    });
  }
});

describe('compiled Jacobians through hidden layers agree with the reference interpreter', () => {
  // Dense and block-diagonal products nested three deep, a sum of rows and broadcast rows, a
  // concat of dense parts: the generic (non-gather) Jacobian terms.
  const blocky = defineCell({ state: 6, input: 0, params: { A: [2, 3, 3], B: [6, 6], c: [6] } }, (h, _x, p) =>
    lang.tanh(lang.matvec(p.B, lang.tanh(lang.matvecT(p.A, lang.tanh(lang.add(lang.matvec(p.B, h), p.c)))))),
  );
  const sums = defineCell({ state: 4, input: 0, params: { W: [5, 4], V: [4, 5] } }, (h, _x, p) => {
    const z = lang.tanh(lang.matvec(p.W, h));
    const t = lang.sum(lang.mul(z, z));
    return lang.add(lang.mul(t, lang.tanh(lang.matvec(p.V, z))), lang.concat(lang.slice(lang.matvec(p.V, z), 2, 2), lang.slice(h, 0, 2)));
  });
  const fields: [string, Cell, number][] = [
    ['hamiltonian hidden [64, 64]', cells.hamiltonian({ dof: 2, hidden: [64, 64] }), 300],
    ['hamiltonian hidden [8, 8, 8], tanh', cells.hamiltonian({ dof: 3, hidden: [8, 8, 8], activation: 'tanh' }), 260],
    ['block-diagonal products', blocky, 260],
    ['sums, broadcasts and concats of products', sums, 260],
  ];
  for (const [name, cell, E] of fields) {
    const n = cell.stateSize;
    const params = cell.init({ seed: 5 });
    const ys = rng.normalArray(E * n, 1);
    // Past compileMin (256 elements): the backend's compiled path, not its interpreter.
    const run = (be: ReturnType<typeof createCpuBackend>, program: StepProgram, dtype: 'float64' | 'float32') => {
      const p: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length], dtype);
      const out = be.runStep(program, { state: be.tensor(ys, [2, E / 2, n], dtype), params: p });
      return [...out.outputs, out.jacobian!].map((t) => Float64Array.from((be as never as { data(t: Tensor): TypedArray }).data(t)));
    };
    for (const s of [...new Set([n, 2, 1, cell.exactBlockSize])].filter((b) => n % b === 0)) {
      for (const dtype of ['float64', 'float32'] as const) {
        it(`${name}: f and the Jacobian in blocks of ${s}, ${dtype}`, () => {
          const program = cell.linearizeProgram(s);
          expect(makeStepPlan(program, dtype === 'float32')).toBeTruthy();
          const a = run(createCpuBackend({ dtype }), program, dtype);
          const b = run(createReferenceBackend({ dtype }), program, dtype);
          a.forEach((arr, k) => {
            const ref = b[k]!;
            let scale = 0;
            let err = 0;
            for (let i = 0; i < arr.length; i++) {
              scale = Math.max(scale, Math.abs(ref[i]!));
              err = Math.max(err, Math.abs(arr[i]! - ref[i]!));
            }
            expect(scale).toBeGreaterThan(0);
            expect(err / scale).toBeLessThan(dtype === 'float64' ? 1e-12 : 1e-5);
          });
        });
      }
    }
  }
});
