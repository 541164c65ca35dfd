import '@tensorflow/tfjs-backend-wasm';
import type { Backend } from '@deerjs/core';
import { createTfjsBackend } from '@deerjs/tfjs';
import { createWebGpuBackend } from '@deerjs/webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compare } from './compare.js';
import type { Case } from './helpers.js';

/** Every landed backend runs imported models like onnxruntime does (the cpu backend: parity.test.ts). */
const cases: Case[] = [
  { op: 'GRU', lbr: 0, direction: 'bidirectional', layout: 0, initial: true },
  { op: 'GRU', lbr: 1, direction: 'reverse', layout: 1, initial: false },
  { op: 'LSTM', lbr: 0, direction: 'bidirectional', layout: 1, initial: true },
  { op: 'RNN', lbr: 0, direction: 'forward', layout: 0, initial: true },
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
    },
  );
}
