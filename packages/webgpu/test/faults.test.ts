import { BackendUnavailableError, cells, DeerError, DTypeError, deer, OutOfMemoryError, TensorStateError, UnsupportedOptionError } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, ShaderCompileError, type WebGpuBackend } from '../src/index.js';
import { createOn } from '../src/create.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

describe.skipIf(skip !== null)('webgpu faults', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

  it('refuses unknown, misplaced and out-of-range options before asking for an adapter', async () => {
    for (const bad of [
      { dtyp: 'float32' },
      { threads: 2 },
      { maxBufferBytes: -1 },
      { simulatedBindingBytes: Number.NaN },
      { scanLanes: 1.5 },
      { timestamps: 'yes' },
      { powerPreference: 'fast' },
      { iterationOverhead: -2 },
    ]) {
      await expect(createWebGpuBackend(bad as never), JSON.stringify(bad)).rejects.toThrow(UnsupportedOptionError);
    }
    await expect(createWebGpuBackend({ dtype: 'float64' } as never)).rejects.toThrow(DTypeError);
  });

  it('no adapter is BackendUnavailableError (loadBackend() then moves on), options checked first', async () => {
    const none = { requestAdapter: async () => null } as unknown as GPU;
    await expect(createOn(none, {}, 2)).rejects.toThrow(BackendUnavailableError);
    await expect(createOn(none, {}, 2)).rejects.toThrow(/no GPU adapter/);
    await expect(createOn(none, { scanLanes: 0 }, 2)).rejects.toThrow(UnsupportedOptionError);
  });

  it('refuses float64 with DTypeError', () => {
    expect(() => backend.tensor([1, 2], [2], 'float64')).toThrow(DTypeError);
    expect(() => backend.zeros([2], 'float64')).toThrow(/WGSL has no f64/);
  });

  it('reports a buffer past the device limit as OutOfMemoryError naming the bytes', () => {
    const floats = 2 ** 29;
    expect(() => backend.zeros([floats])).toThrow(OutOfMemoryError);
    expect(() => backend.zeros([floats])).toThrow(String(floats * 4));
    expect(backend.liveTensors()).toBe(0);
  });

  it('names the line of a WGSL compile error', async () => {
    const code = [
      '@compute @workgroup_size(1)',
      'fn main() {',
      '  let x: f32 = undefined_thing + 1.0;',
      '}',
    ].join('\n');
    const err = await backend.compileWgsl(code, 'broken').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShaderCompileError);
    expect(err).toBeInstanceOf(DeerError);
    const e = err as ShaderCompileError;
    expect(e.line).toBe(3);
    expect(e.lineText).toContain('undefined_thing');
    expect(e.message).toContain('line 3');
    expect(e.message).toContain('undefined_thing');
    // The backend stays usable: the error belonged to that call only.
    const t = backend.tensor([1, 2, 3], [3]);
    expect(Array.from(await backend.read(t))).toEqual([1, 2, 3]);
    backend.dispose(t);
  });

  it('a kernel whose WGSL fails to compile faults the backend with a ShaderCompileError', async () => {
    // Its own backend: the fault stays (commands with the broken pipeline were already recorded).
    const own = await createWebGpuBackend();
    try {
      const ctx = (own as unknown as { ctx: { pipeline(code: string, label: string): unknown; settle(): Promise<void> } }).ctx;
      const code = '@compute @workgroup_size(1)\nfn main() {\n  let v = undefined_thing;\n}\n';
      ctx.pipeline(code, 'broken-kernel');
      const err = await ctx.settle().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ShaderCompileError);
      expect((err as ShaderCompileError).message).toContain('broken-kernel');
      expect((err as ShaderCompileError).lineText).toContain('undefined_thing');
      expect(() => own.zeros([2])).toThrow(ShaderCompileError);
    } finally {
      own.destroy();
    }
  });

  it("refuses a tensor of another webgpu backend (another device), and stays usable", async () => {
    const other = await createWebGpuBackend();
    try {
      const cell = cells.gru({ inputSize: 1, hiddenSize: 2 });
      const params = cell.init({ seed: 1 });
      const foreign = other.tensor([0.1, 0.2, 0.3], [1, 3, 1]);
      // Recorded, Dawn's validation error had become a fault of this backend for good.
      await expect(deer(backend, cell, params, foreign)).rejects.toThrow(TensorStateError);
      await expect(backend.read(foreign)).rejects.toThrow(/another webgpu backend/);
      expect(() => backend.dispose(foreign)).toThrow(TensorStateError);
      other.dispose(foreign);
      const x = backend.tensor([0.1, 0.2, 0.3], [1, 3, 1]);
      const { y, stats } = await deer(backend, cell, params, x);
      expect(stats.converged).toBe(true);
      backend.dispose(y);
      backend.dispose(x);
      expect([backend.liveTensors(), other.liveTensors()]).toEqual([0, 0]);
    } finally {
      other.destroy();
    }
  });
});

// Device loss is tested in a process of its own: test/process-exit.test.ts.
