import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { defineConformanceSuite } from '@deerjs/conformance';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { createTfjsBackend } from '../src/index.js';

// Step programs as tfjs ops (`hostKernels: false`): what a user without @deerjs/cpu installed gets,
// and all that WebGL/WebGPU engines have. One file per configuration, so that they run in parallel.
defineConformanceSuite({
  name: 'tfjs-wasm ops',
  create: () => createTfjsBackend({ backend: 'wasm', hostKernels: false }),
  oracle: () => createReferenceBackend({ dtype: 'float64' }),
  dtypes: { float32: true, float64: 'tfjs has no float64' },
});
