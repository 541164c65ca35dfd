import { readFileSync } from 'node:fs';
import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOnnxModel, type OnnxTensor, runOnnxModel } from '../src/index.js';

/**
 * ONNX's own operator test cases for GRU, LSTM and RNN (exported from the `onnx` package's
 * backend-test generators by fixtures/export-onnx-backend-cases.py), run with ONNX's tolerances.
 */
interface Stored {
  readonly dims: number[];
  readonly dtype: string;
  readonly data: number[];
}
interface StoredCase {
  readonly name: string;
  readonly op: string;
  readonly rtol: number;
  readonly atol: number;
  readonly inputs: Record<string, Stored>;
  readonly outputs: Record<string, Stored>;
}

const dir = new URL('../fixtures/onnx-backend/', import.meta.url);
const { cases } = JSON.parse(readFileSync(new URL('cases.json', dir), 'utf8')) as { cases: StoredCase[] };

function toTensor(s: Stored): OnnxTensor {
  const data =
    s.dtype === 'float32'
      ? Float32Array.from(s.data)
      : s.dtype === 'float64'
        ? Float64Array.from(s.data)
        : s.dtype === 'int32'
          ? Int32Array.from(s.data)
          : BigInt64Array.from(s.data.map((v) => BigInt(v)));
  return { data, dims: s.dims };
}

const backends = {
  float32: createCpuBackend({ dtype: 'float32' }),
  float64: createCpuBackend({ dtype: 'float64' }),
};
afterAll(async () => {
  for (const b of Object.values(backends)) await b.destroy();
});

describe("ONNX's backend test cases (GRU, LSTM, RNN)", () => {
  it('has the exported cases of every op', () => {
    expect(cases.length).toBeGreaterThanOrEqual(12);
    expect(new Set(cases.map((c) => c.op))).toEqual(new Set(['GRU', 'LSTM', 'RNN']));
  });
  for (const dtype of ['float32', 'float64'] as const) {
    it.each(cases.map((c) => [c.name, c] as const))(`%s (cpu ${dtype})`, async (_name, c) => {
      const model = loadOnnxModel(new Uint8Array(readFileSync(new URL(`${c.name}.onnx`, dir))));
      const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, toTensor(v)]));
      const got = await runOnnxModel(model, backends[dtype], inputs, { dtype });
      for (const [name, want] of Object.entries(c.outputs)) {
        const g = got[name]!;
        expect(g.dims).toEqual(want.dims);
        for (let i = 0; i < want.data.length; i++) {
          const w = want.data[i]!;
          const err = Math.abs(Number(g.data[i]) - w);
          expect(err, `${name}[${i}]: got ${g.data[i]}, expected ${w}`).toBeLessThanOrEqual(
            c.atol + c.rtol * Math.abs(w),
          );
        }
      }
    });
  }
});
