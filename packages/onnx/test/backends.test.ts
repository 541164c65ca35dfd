import '@tensorflow/tfjs-backend-wasm';
import type { Backend } from '@deerjs/core';
import { createTfjsBackend } from '@deerjs/tfjs';
import { createWebGpuBackend } from '@deerjs/webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compare } from './compare.js';
import type { Case } from './helpers.js';
import { checkOnnxBackendCase, ONNX_BACKEND_CASES } from './onnx-backend-fixtures.js';

/** Every landed backend runs imported models like onnxruntime does (the cpu backend: parity.test.ts). */
const cases: Case[] = [
  { op: 'GRU', lbr: 0, direction: 'bidirectional', layout: 0, initial: true },
  { op: 'GRU', lbr: 1, direction: 'reverse', layout: 1, initial: false },
  { op: 'LSTM', lbr: 0, direction: 'bidirectional', layout: 1, initial: true },
  { op: 'RNN', lbr: 0, direction: 'forward', layout: 0, initial: true },
];

/** The attributes beyond the defaults: activations with α/β, clip, LSTM peepholes and input_forget. */
const attributeCases: { label: string; c: Case; extra: Parameters<typeof compare>[2] }[] = [
  {
    label: 'GRU lbr=0 activations HardSigmoid/Softsign, clip',
    c: { op: 'GRU', lbr: 0, direction: 'bidirectional', layout: 0, initial: true },
    extra: {
      spec: {
        activations: ['HardSigmoid', 'Softsign', 'LeakyRelu', 'Elu'],
        activationAlpha: [0.3, 0.2, 0.8],
        activationBeta: [0.45],
      },
      clip: 2,
      scale: 0.5,
    },
  },
  {
    label: 'LSTM peepholes + input_forget + ScaledTanh/Affine',
    c: { op: 'LSTM', lbr: 0, direction: 'forward', layout: 1, initial: true },
    extra: {
      peephole: true,
      spec: {
        inputForget: 1,
        activations: ['Sigmoid', 'ScaledTanh', 'Affine'],
        activationAlpha: [1.2, 0.7],
        activationBeta: [0.6, 0.1],
      },
      scale: 0.5,
    },
  },
  {
    label: 'RNN ThresholdedRelu, T = 200',
    c: { op: 'RNN', lbr: 0, direction: 'reverse', layout: 0, initial: true },
    extra: { spec: { activations: ['ThresholdedRelu'], activationAlpha: [0.1] }, scale: 0.4, T: 200 },
  },
  {
    label: 'LSTM sequence_lens [T, 1, 0] (bidirectional, layout 1)',
    c: { op: 'LSTM', lbr: 0, direction: 'bidirectional', layout: 1, initial: true },
    extra: { lens: [12, 1, 0] },
  },
  {
    label: 'GRU lbr=1 Relu/Softplus',
    c: { op: 'GRU', lbr: 1, direction: 'forward', layout: 0, initial: false },
    extra: { spec: { activations: ['Relu', 'Softplus'] }, scale: 0.4 },
  },
];

const webgpuAdapter = async (): Promise<string | null> => {
  try {
    const { create } = await import('webgpu');
    return (await create([]).requestAdapter()) ? null : 'no WebGPU adapter';
  } catch (err) {
    return `the webgpu addon did not load: ${(err as Error).message}`;
  }
};
// Without an adapter the WebGPU half is skipped with its reason — never under CI=true.
const noAdapter = process.env.CI === 'true' ? null : await webgpuAdapter();

const backends: { name: string; skip: string | null; create: () => Promise<Backend> }[] = [
  { name: 'webgpu', skip: noAdapter, create: () => createWebGpuBackend() },
  { name: 'tfjs-wasm', skip: null, create: () => createTfjsBackend({ backend: 'wasm' }) },
];

for (const b of backends) {
  describe.skipIf(b.skip !== null)(
    `DEER on ${b.name} equals onnxruntime${b.skip ? ` — skipped: ${b.skip}` : ''}`,
    () => {
      let backend: Backend;
      beforeAll(async () => {
        backend = await b.create();
      });
      afterAll(() => backend?.destroy());
      it.each(cases)('$op lbr=$lbr $direction layout=$layout initial=$initial', async (c) => {
        expect(await compare(backend, c)).toBeLessThan(1e-5);
      });
      it.each(attributeCases)('$label', async ({ c, extra }) => {
        expect(await compare(backend, c, { ...extra, relative: true })).toBeLessThan(1e-5);
      });
      it.each(ONNX_BACKEND_CASES.map((c) => [c.name, c] as const))("ONNX's case %s", async (_name, c) => {
        await checkOnnxBackendCase(backend, c);
      });
    },
  );
}
