import { KNOWN_BACKENDS, loadBackend, registerBackend, unregisterBackend } from '@deerjs/core';
import { register as registerCpu } from '@deerjs/cpu';
import { afterEach, describe, expect, it } from 'vitest';
import { OPTION_NAMES } from '../src/create.js';
import { register } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

describe.skipIf(skip !== null)('the registry with WebGPU installed', () => {
  afterEach(() => {
    unregisterBackend('webgpu');
    unregisterBackend('cpu');
  });

  it('loadBackend() with no name picks WebGPU when an adapter exists', async () => {
    registerCpu();
    register();
    const backend = await loadBackend(undefined, { importer: async () => ({}) });
    try {
      expect(backend.name).toBe('webgpu');
      expect(backend.capabilities.device.length).toBeGreaterThan(0);
    } finally {
      await backend.destroy();
    }
  });

  it("falls back to the next best when WebGPU's factory fails, naming why", async () => {
    registerCpu();
    // The 'webgpu' entry is registered but its device cannot be created.
    registerBackend(
      'webgpu',
      () => {
        throw new Error('no adapter (simulated)');
      },
      300,
    );
    const backend = await loadBackend(undefined, { importer: async () => ({}) });
    expect(backend.name).toBe('cpu');
    await backend.destroy();
  });
});

describe("core's list of the WebGPU backend's options", () => {
  it('is the backend’s own (loadBackend() refuses option names no backend knows by it)', () => {
    expect([...KNOWN_BACKENDS.webgpu!.options].sort()).toEqual([...OPTION_NAMES].sort());
  });
});
