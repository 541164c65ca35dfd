import { CELL_FAMILIES, sequenceData, userDefinedCell } from '@deerjs/conformance';
import { type Cell, cells, deer, defineCell, lang, type NewtonUpdateOptions, Rng, scanThenUpdate, sequential, type Tensor } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();
const M = 3;
// Enough batch rows to fill llvmpipe's lanes on up to 8 host cores: the fused step's condition.
// Where they do not (more cores, a GPU), the cases that need the fused step are skipped.
const B = 64;
const NOT_FUSED = 'the fused DEER step is for adapters whose lanes 64 rows fill (a software adapter, ≤ 8 cores)';
const T = 40;

/**
 * The fused DEER step (one serial pass per row: residual, Jacobian, δ and update in registers)
 * against the composition core uses elsewhere — shiftTime, runStep of the residual program,
 * scan then update — on the same device: the new iterate and every per-row measure.
 */
describe.skipIf(skip !== null)('webgpu fused DEER step', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  async function setup(cell: Cell) {
    const data = sequenceData(77, B, T, cell, 'float32');
    const n = cell.stateSize;
    const params: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(data.params)) params[k] = backend.tensor(v, [v.length]);
    // A NaN input (row 1, t = 5): the residual is NaN there on both paths, whatever the cell.
    data.x[(1 * T + 5) * M] = Number.NaN;
    const x = backend.tensor(data.x, [B, T, M]);
    const y0 = backend.tensor(data.h0, [B, n]);
    // An iterate near the solution (NaN in row 1 from the input on), with large values (rows 2
    // and 5), so that every path of the update runs.
    const exact = await sequential(backend, cell, params, x, { h0: y0, checkFinite: false });
    const rng = new Rng(5);
    const prevHost = Float64Array.from(await backend.read(exact.y), (v) => v + 0.05 * rng.normal());
    backend.dispose(exact.y);
    prevHost[(2 * T + 9) * n] = 40;
    prevHost[(5 * T + 20) * n] = 7;
    const prev = backend.tensor(prevHost, [B, T, n]);
    const dispose = () => {
      for (const t of [...Object.values(params), x, y0, prev]) backend.dispose(t);
    };
    return { params, x, y0, prev, dispose };
  }

  async function composed(cell: Cell, s: number, io: Awaited<ReturnType<typeof setup>>, opts: NewtonUpdateOptions) {
    const program = cell.residualProgram(s);
    const yPrev = backend.shiftTime(io.prev, io.y0, 1);
    const out = backend.runStep(program, { state: yPrev, input: io.x, cotangent: io.prev, params: io.params });
    backend.dispose(yPrev);
    const zeros = backend.zeros([B, cell.stateSize]);
    try {
      const args = { A: out.jacobian!, c: out.outputs[0]!, y0: zeros, blockSize: s, reverse: false };
      return await scanThenUpdate(backend, args, io.prev, { ...opts, delta: true });
    } finally {
      for (const t of [out.jacobian!, out.outputs[0]!, zeros]) backend.dispose(t);
    }
  }

  const cases: [string, Cell][] = [
    ...CELL_FAMILIES.flatMap((f) => [1, 4].filter((k) => f.supports(k)).map((k): [string, Cell] => [`${f.id} n=${k}`, f.make(k, M)])),
    ['user-defined (slice, concat, dot, sum)', userDefinedCell()],
    ['gru n=16 (input projection hoisted)', cells.gru({ inputSize: M, hiddenSize: 16 })],
    // Its step never reads the state: the kernel binds no y0 (found in review).
    [
      'a state-free step',
      defineCell({ name: 'state-free', state: 2, input: M, params: { W: [2, M] } }, (_h, x, p) =>
        lang.tanh(lang.matvec(p.W!, x)),
      ),
    ],
  ];
  for (const [name, cell] of cases) {
    const n = cell.stateSize;
    // A dense 16 × 16 GRU Jacobian has too many product terms to unroll (see the decline test).
    for (const s of [...new Set([1, n])].filter((s) => n * s < 256)) {
      it(`${name}, blocks of ${s}: the fused step equals the composed one`, async (test) => {
        if (backend.capabilities.parallelism! > B) test.skip(NOT_FUSED);
        const io = await setup(cell);
        const active = Uint8Array.from({ length: B }, (_, b) => (b === 3 ? 0 : 1));
        // A clip within the values' range, so that some entries are clipped.
        const opts: NewtonUpdateOptions = { atol: 1e-5, rtol: 1e-5, clip: 0.6, active };
        try {
          const inputs = { input: io.x, y0: io.y0, params: io.params };
          const fusedRun = backend.deerStep(cell.residualProgram(s), inputs, io.prev, opts);
          expect(fusedRun, 'B ≥ the adapter lanes: the step is fused').not.toBeNull();
          const got = (await fusedRun)!;
          const want = await composed(cell, s, io, opts);
          const gy = await backend.read(got.y);
          const wy = await backend.read(want.y);
          backend.dispose(got.y);
          backend.dispose(want.y);
          // Row 1's NaNs spread through δ: the composed scan multiplies them by the structural zeros of
          // the Jacobian (0 · NaN), the fused step skips them, so that row is compared by its
          // replacement count alone.
          const others = (a: ArrayLike<number>) => Array.from(a).filter((_, b) => b !== 1);
          const rowLen = T * cell.stateSize;
          let worst = 0;
          for (let i = 0; i < gy.length; i++) {
            if (Math.floor(i / rowLen) === 1) continue;
            worst = Math.max(worst, Math.abs(gy[i]! - wy[i]!) / Math.max(1, Math.abs(wy[i]!)));
          }
          expect(worst).toBeLessThanOrEqual(1e-5);
          expect(others(got.rows.replaced)).toEqual(others(want.rows.replaced));
          expect(others(got.rows.clipped)).toEqual(others(want.rows.clipped));
          expect(others(got.rows.settled)).toEqual(others(want.rows.settled));
          expect(got.rows.replaced[1]).toBeGreaterThan(0);
          expect(want.rows.replaced[1]).toBeGreaterThan(0);
          expect(got.rows.clipped.reduce((a, v) => a + v, 0)).toBeGreaterThan(0);
          expect(got.rows.settled[3]).toBe(0);
          for (let b = 0; b < B; b++) {
            if (b === 1) continue;
            const w = want.rows.maxScaledDiff[b]!;
            expect(Math.abs(got.rows.maxScaledDiff[b]! - w)).toBeLessThanOrEqual(1e-4 * w);
          }
        } finally {
          io.dispose();
        }
      });
    }
  }

  for (const [why, rows, n] of [
    ['the rows do not fill the lanes', 2, 2],
    ['the Jacobian blocks are too large to unroll', B, 32],
  ] as const) {
    it(`declines (null) where ${why}, so core composes the step`, async () => {
      const cell = cells.gru({ inputSize: M, hiddenSize: n });
      const data = sequenceData(3, rows, 10, cell, 'float32');
      const params: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(data.params)) params[k] = backend.tensor(v, [v.length]);
      const x = backend.tensor(data.x, [rows, 10, M]);
      const y0 = backend.tensor(data.h0, [rows, n]);
      const prev = backend.zeros([rows, 10, n]);
      const opts = { atol: 1e-5, rtol: 1e-5, clip: 1e8 };
      try {
        expect(backend.deerStep(cell.residualProgram(n), { input: x, y0, params }, prev, opts)).toBeNull();
      } finally {
        for (const t of [...Object.values(params), x, y0, prev]) backend.dispose(t);
      }
    });
  }

  it('deer through fused steps: one pass per iteration, the sequential answer', async (test) => {
    if (backend.capabilities.parallelism! > B) test.skip(NOT_FUSED);
    const cell = cells.gru({ inputSize: M, hiddenSize: 4 });
    const data = sequenceData(11, B, 300, cell, 'float32');
    const x = backend.tensor(data.x, [B, 300, M]);
    try {
      const before = backend.counters();
      const solved = await deer(backend, cell, data.params, x, { checkFinite: false });
      const dispatches = backend.counters().dispatches - before.dispatches;
      const exact = await sequential(backend, cell, data.params, x);
      const [a, b] = [await backend.read(solved.y), await backend.read(exact.y)];
      backend.dispose(solved.y);
      backend.dispose(exact.y);
      expect(solved.stats.converged).toBe(true);
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      expect(worst).toBeLessThanOrEqual(1e-4);
      // Iterations plus the residual check's evaluation and update, and a few setup passes.
      expect(dispatches).toBeLessThanOrEqual(solved.stats.iterations + 6);
    } finally {
      backend.dispose(x);
    }
  });
});
