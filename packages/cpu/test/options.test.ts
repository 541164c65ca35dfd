import { DTypeError, KNOWN_BACKENDS, loadBackend, unregisterBackend, UnsupportedOptionError } from '@deerjs/core';
import { FAST_CPU_OPTION_NAMES } from '../src/compiled/backend.js';
import { describe, expect, it } from 'vitest';
import { createCpuBackend, createReferenceBackend, register } from '../src/index.js';

describe('cpu backend options', () => {
  it('refuses unknown, misspelt and out-of-range options when the backend is made, not at first use', () => {
    for (const bad of [
      { dtype: 'float16' }, // made a backend whose first zeros() was a TypeError
      { threads: -1 },
      { threads: 1.5 },
      { threads: Number.NaN },
      { simd: 'no' },
      { compileMin: -1 },
      { maxBufferBytes: 0 },
      { thread: 2 },
      { powerPreference: 'low-power' },
    ]) {
      expect(() => createCpuBackend(bad as never), JSON.stringify(bad)).toThrow(UnsupportedOptionError);
    }
    expect(() => createReferenceBackend({ threads: 2 } as never)).toThrow(UnsupportedOptionError);
    const many = createCpuBackend({ threads: 10_000, dtype: 'float32' });
    expect(many.capabilities.parallelism).toBeGreaterThanOrEqual(1);
    void many.destroy();
  });

  it('through the registry: strict by name, only its own options when any backend may load', async () => {
    unregisterBackend('cpu');
    register();
    try {
      // By name, a refused option is the caller's mistake: thrown as it is, not as "unavailable".
      await expect(loadBackend('cpu', { options: { dtyp: 'float32' } })).rejects.toThrow(UnsupportedOptionError);
      await expect(loadBackend('cpu', { options: { dtyp: 'float32' } })).rejects.toThrow(/option dtyp: .*known: dtype/);
      // Options meant for whichever backend loads: webgpu's are not cpu's business, dtype is.
      const b = await loadBackend(undefined, { options: { dtype: 'float32', powerPreference: 'high-performance' }, importer: async () => ({}) });
      expect([b.name, b.capabilities.defaultDType]).toEqual(['cpu', 'float32']);
      await b.destroy();
      // An option no backend knows is refused whichever would load.
      await expect(loadBackend(undefined, { options: { thread: 2 }, importer: async () => ({}) })).rejects.toThrow(UnsupportedOptionError);
      // Core's list of the cpu backend's options (for that check) is the backend's own.
      expect([...KNOWN_BACKENDS.cpu!.options].sort()).toEqual([...FAST_CPU_OPTION_NAMES].sort());
    } finally {
      unregisterBackend('cpu');
    }
    expect(() => createCpuBackend({ dtype: 'float64' }).tensor([1], [1], 'float16' as never)).toThrow(DTypeError);
  });
});
