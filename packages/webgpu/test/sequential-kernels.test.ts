import { CELL_FAMILIES, maxAbsDiff, sequenceData, userDefinedCell } from '@deerjs/conformance';
import { type Backend, type Cell, cells, defineCell, lang, sequential, UnsupportedOptionError } from '@deerjs/core';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();
const M = 3;

/** tanh(U·h + W·x + k ⊙ h) with k a constant vector (module-scope in WGSL) and n = 8. */
const constantVectorCell = (): Cell => {
  const { add, constant, matvec, mul, tanh } = lang;
  return defineCell(
    { name: 'constant-vector', state: 8, input: M, params: { U: [8, 8], W: [8, M] }, init: { U: { uniform: 0.3 } } },
    (h, x, p) => tanh(add(add(matvec(p.U!, h), matvec(p.W!, x)), mul(constant([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), h))),
  );
};

// Sequential evaluation has two kernels: one invocation per batch row ('row', what a software
// adapter uses) and one workgroup per row ('workgroup', what a GPU uses from n = 8). The adapter
// here is llvmpipe, so the conformance suite runs 'row'; these run both on every cell family.
describe.skipIf(skip !== null)('webgpu sequential kernels', () => {
  const backends: Partial<Record<'row' | 'workgroup', WebGpuBackend>> = {};
  let ref: Backend;
  beforeAll(async () => {
    backends.row = await createWebGpuBackend({ sequentialKernel: 'row' });
    backends.workgroup = await createWebGpuBackend({ sequentialKernel: 'workgroup' });
    ref = createReferenceBackend({ dtype: 'float64' });
  });
  afterAll(() => {
    backends.row?.destroy();
    backends.workgroup?.destroy();
  });

  async function run(be: Backend, cell: Cell, data: ReturnType<typeof sequenceData>, B: number, T: number) {
    const x = be.tensor(data.x, [B, T, cell.inputSize], be.capabilities.defaultDType);
    try {
      const { y } = await sequential(be, cell, data.params, x, { h0: data.h0 });
      const out = await be.read(y);
      be.dispose(y);
      return out;
    } finally {
      be.dispose(x);
    }
  }

  const cases: [string, Cell][] = [
    ...CELL_FAMILIES.flatMap((f) => [1, 12].filter((n) => f.supports(n)).map((n): [string, Cell] => [`${f.id} n=${n}`, f.make(n, M)])),
    ['user-defined (slice, concat, dot, sum)', userDefinedCell()],
    ['a constant vector', constantVectorCell()],
    ['gru n=70 (a node wider than 64 invocations)', cells.gru({ inputSize: M, hiddenSize: 70 })],
  ];
  for (const [name, cell] of cases) {
    it(`${name}: both kernels match the float64 oracle`, async () => {
      const [B, T] = [3, 37];
      const data = sequenceData(501, B, T, cell, 'float32');
      const want = await run(ref, cell, data, B, T);
      for (const kind of ['row', 'workgroup'] as const) {
        const got = await run(backends[kind]!, cell, data, B, T);
        expect(maxAbsDiff(got, want), `${name} (${kind})`).toBeLessThan(2e-5);
      }
    });
  }

  it('rejects an unknown kernel name', async () => {
    await expect(createWebGpuBackend({ sequentialKernel: 'warp' as never })).rejects.toThrow(UnsupportedOptionError);
    await expect(createWebGpuBackend({ sequentialKernel: 'warp' as never })).rejects.toThrow(/sequentialKernel/);
  });
});
