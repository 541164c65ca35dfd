import { type Backend, type Cell, cells, Rng } from '@deerjs/core';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { compileStep } from '../src/wgsl/step.js';
import { skipReason } from './adapter.js';

/**
 * A gradient field's Jacobian is a Hessian through the hidden layers: products by W and Wᵀ nested
 * several deep. Read through per-entry functions, every entry summed its inner products again
 * (and they theirs): cells.hamiltonian hidden [64, 64] took ~h³ multiply-adds per entry, 16 ms a
 * point on llvmpipe. Now an invocation computes a column, each nested product's column once
 * (private arrays), and unrolled Jacobians sum each product entry once (`let`s). Checked on the
 * generated code (loops nested through calls; parameter reads), then against the reference.
 */

/** The WGSL module's functions, by name: their bodies. */
function functions(code: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of code.matchAll(/^fn (\w+)\([^)]*\)[^{]*\{([\s\S]*?)^\}/gm)) out.set(m[1]!, m[2]!);
  return out;
}

/** An upper bound on the loops nested in a call of `name`: its own loops plus its deepest callee's. */
function loopDepth(fns: Map<string, string>, name: string, memo = new Map<string, number>()): number {
  const hit = memo.get(name);
  if (hit !== undefined) return hit;
  const body = fns.get(name) ?? '';
  const own = (body.match(/\bfor \(/g) ?? []).length;
  let deepest = 0;
  for (const m of body.matchAll(/\b(m\d+(?:_fill|_value)?)\(/g)) deepest = Math.max(deepest, loopDepth(fns, m[1]!, memo));
  memo.set(name, own + deepest);
  return own + deepest;
}

const paramFloats = (cell: Cell) => cell.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);

describe('webgpu: nested products of a Jacobian are computed once per element (generated code)', () => {
  for (const [hidden, s] of [
    [[64, 64], 4],
    [[64, 64], 2],
    [[16, 16, 16], 4],
  ] as const) {
    it(`hamiltonian hidden [${hidden}], blocks of ${s}: by column, no entry function sums a sum`, () => {
      const cell = cells.hamiltonian({ dof: 2, hidden: [...hidden] });
      const jac = compileStep(cell.linearizeProgram(s)).jacobian!;
      expect(jac.entriesPerInvocation).toBe(s);
      const fns = functions(jac.code);
      const fills = [...fns.keys()].filter((f) => f.endsWith('_fill'));
      // One per hidden-layer product read by another product (the Hessian's inner W·, Wᵀ·).
      expect(fills.length).toBe(2 * (hidden.length - 1));
      for (const f of fns.keys()) {
        if (!/^m\d+/.test(f)) continue;
        // A fill: its rows × the inner sum; an entry: one sum at most (the outermost product's).
        expect(loopDepth(fns, f), f).toBeLessThanOrEqual(f.endsWith('_fill') ? 2 : 1);
      }
    });
  }
  for (const hidden of [[4, 4], [8, 8]]) {
    it(`hamiltonian hidden [${hidden}]: unrolled, each product entry summed once`, () => {
      const cell = cells.hamiltonian({ dof: 2, hidden });
      const n = cell.stateSize;
      const step = compileStep(cell.linearizeProgram(n));
      expect(step.fusedJacobian).toBeDefined();
      // Each parameter entry read by the forward pass, its gradient and, per column of the
      // Jacobian, once per product: O(n · params), where summing every nested product for every
      // entry that reads it had been O(n² · h · params).
      const reads = (step.evaluate.code.match(/prm_\(/g) ?? []).length;
      expect(reads).toBeLessThanOrEqual(3 * n * paramFloats(cell));
    });
  }
});

const skip = await skipReason();

describe.skipIf(skip !== null)('webgpu: Jacobians of gradient fields against the reference', () => {
  let gpu: WebGpuBackend;
  let ref: Backend;
  beforeAll(async () => {
    gpu = await createWebGpuBackend();
    ref = createReferenceBackend({ dtype: 'float64' });
  });
  afterAll(() => gpu?.destroy());

  for (const [name, cell, s] of [
    ['hamiltonian hidden [64, 64] (by column)', cells.hamiltonian({ dof: 2, hidden: [64, 64] }), 4],
    ['hamiltonian hidden [64, 64], blocks of 2', cells.hamiltonian({ dof: 2, hidden: [64, 64] }), 2],
    ['hamiltonian hidden [8, 8, 8], tanh (by column)', cells.hamiltonian({ dof: 2, hidden: [8, 8, 8], activation: 'tanh' }), 4],
    ['hamiltonian hidden [8, 8] (unrolled)', cells.hamiltonian({ dof: 2, hidden: [8, 8] }), 4],
  ] as const) {
    it(`${name}: f and J as the reference, 300 points`, async () => {
      const [B, T, n] = [2, 150, cell.stateSize];
      const rng = new Rng(5);
      const values = cell.init({ seed: 3 });
      const ys = rng.normalArray(B * T * n, 1);
      const run = async (be: Backend, dtype: 'float32' | 'float64') => {
        const params = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, be.tensor(v, [v.length], dtype)]));
        const y = be.tensor(ys, [B, T, n], dtype);
        const out = be.runStep(cell.linearizeProgram(s), { state: y, params });
        const got = [...(await Promise.all(out.outputs.map((t) => be.read(t)))), await be.read(out.jacobian!)];
        for (const t of [y, ...out.outputs, out.jacobian!, ...Object.values(params)]) be.dispose(t);
        return got;
      };
      const got = await run(gpu, 'float32');
      const want = await run(ref, 'float64');
      for (let k = 0; k < want.length; k++) {
        let err = 0;
        let scale = 0;
        for (let i = 0; i < want[k]!.length; i++) {
          err = Math.max(err, Math.abs(got[k]![i]! - want[k]![i]!));
          scale = Math.max(scale, Math.abs(want[k]![i]!));
        }
        expect(scale, `output ${k}`).toBeGreaterThan(0);
        expect(err / scale, `output ${k}`).toBeLessThan(1e-4);
      }
      expect(gpu.liveTensors()).toBe(0);
    });
  }
});
