import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { checkOnnxBackendCase, ONNX_BACKEND_CASES } from './onnx-backend-fixtures.js';

/** ONNX's own GRU/LSTM/RNN operator test cases on the cpu backend (other backends: backends.test.ts). */
const backends = {
  float32: createCpuBackend({ dtype: 'float32' }),
  float64: createCpuBackend({ dtype: 'float64' }),
};
afterAll(async () => {
  for (const b of Object.values(backends)) await b.destroy();
});

describe("ONNX's backend test cases (GRU, LSTM, RNN)", () => {
  it('has the exported cases of every op', () => {
    expect(ONNX_BACKEND_CASES.length).toBeGreaterThanOrEqual(12);
    expect(new Set(ONNX_BACKEND_CASES.map((c) => c.op))).toEqual(new Set(['GRU', 'LSTM', 'RNN']));
  });
  for (const dtype of ['float32', 'float64'] as const) {
    it.each(ONNX_BACKEND_CASES.map((c) => [c.name, c] as const))(`%s (cpu ${dtype})`, async (_name, c) => {
      await checkOnnxBackendCase(backends[dtype], c, dtype);
    });
  }
});
