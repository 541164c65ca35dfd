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

  it('loadBackend() with no name picks WebGPU on a GPU, and on a software adapter only where nothing else loads', async () => {
    registerCpu();
    register();
    const named = await loadBackend('webgpu');
    const software = named.capabilities.emulated === true;
    // The adapter's description is how a software adapter is told (isFallbackAdapter where Dawn says so).
    expect(software).toBe(/llvmpipe|lavapipe|swiftshader|software/i.test(named.capabilities.device));
    await named.destroy();
    const best = await loadBackend(undefined, { importer: async () => ({}) });
    try {
      expect(best.name).toBe(software ? 'cpu' : 'webgpu');
    } finally {
      await best.destroy();
    }
    // With no other backend available, the software adapter serves.
    unregisterBackend('cpu');
    const missing = async (s: string) => {
      throw Object.assign(new Error(`Cannot find package '${s}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    const only = await loadBackend(undefined, { importer: missing });
    try {
      expect(only.name).toBe('webgpu');
    } finally {
      await only.destroy();
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
