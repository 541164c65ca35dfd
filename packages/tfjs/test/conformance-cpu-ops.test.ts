import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { defineConformanceSuite } from '@deerjs/conformance';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { createTfjsBackend } from '../src/index.js';

/**
 * On tfjs's own cpu kernels two cases still take 8–10 s each (a dense n = 64 GRU over 10⁴ steps;
 * an lbr = 0 GRU, whose Jacobian terms are evaluated densely); they run on wasm
 * (conformance-wasm-ops.test.ts).
 */
const SLOW_ON_TFJS_CPU = 'tfjs-cpu ops: 8-10 s for this case alone; covered by the tfjs-wasm ops run';

// Step programs as tfjs ops (`hostKernels: false`): what a user without @deerjs/cpu installed gets,
// and all that WebGL/WebGPU engines have. One file per configuration, so that they run in parallel.
defineConformanceSuite({
  name: 'tfjs-cpu ops',
  create: () => createTfjsBackend({ backend: 'cpu', hostKernels: false }),
  oracle: () => createReferenceBackend({ dtype: 'float64' }),
  dtypes: { float32: true, float64: 'tfjs has no float64' },
  skip: {
    'solve/gru/n64/T10000/B1': SLOW_ON_TFJS_CPU,
    'solve/gru-lbr0/n8/T10000/B3': SLOW_ON_TFJS_CPU,
  },
});
