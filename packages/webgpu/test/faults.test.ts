import { DTypeError, OutOfMemoryError } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, ShaderCompileError, type WebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

describe.skipIf(skip !== null)('webgpu faults', () => {
  let backend: WebGpuBackend;
  beforeAll(async () => {
    backend = await createWebGpuBackend();
  });
  afterAll(() => backend?.destroy());

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
});

// Device loss is tested in a process of its own: test/process-exit.test.ts.
