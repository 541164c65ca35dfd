import { defineConformanceSuite } from '@deerjs/conformance';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { describe, it } from 'vitest';
import { createWebGpuBackend } from '../src/index.js';
import { skipReason } from './adapter.js';

const skip = await skipReason();

if (skip !== null) {
  describe.skip(`conformance: webgpu — skipped: ${skip}`, () => {
    it('needs a WebGPU adapter', () => {});
  });
} else {
  defineConformanceSuite({
    name: 'webgpu',
    create: () => createWebGpuBackend(),
    oracle: () => createReferenceBackend({ dtype: 'float64' }),
    dtypes: { float32: true, float64: 'WGSL has no f64' },
  });
}
