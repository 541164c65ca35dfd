import { readFileSync } from 'node:fs';
import type { Backend, DType } from '@deerjs/core';
import { expect } from 'vitest';
import { loadOnnxModel, type OnnxTensor, runOnnxModel } from '../src/index.js';

/**
 * ONNX's own operator test cases for GRU, LSTM and RNN, exported from the `onnx` package's
 * backend-test generators by fixtures/export-onnx-backend-cases.py.
 */
interface Stored {
  readonly dims: number[];
  readonly dtype: string;
  readonly data: number[];
}
export interface StoredCase {
  readonly name: string;
  readonly op: string;
  readonly rtol: number;
  readonly atol: number;
  readonly inputs: Record<string, Stored>;
  readonly outputs: Record<string, Stored>;
}

const dir = new URL('../fixtures/onnx-backend/', import.meta.url);
export const ONNX_BACKEND_CASES = (
  JSON.parse(readFileSync(new URL('cases.json', dir), 'utf8')) as { cases: StoredCase[] }
).cases;

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

/** Run one stored case on `backend` and check every output with ONNX's tolerances. */
export async function checkOnnxBackendCase(backend: Backend, c: StoredCase, dtype?: DType): Promise<void> {
  const model = loadOnnxModel(new Uint8Array(readFileSync(new URL(`${c.name}.onnx`, dir))));
  const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, toTensor(v)]));
  const got = await runOnnxModel(model, backend, inputs, dtype ? { dtype } : {});
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
}
