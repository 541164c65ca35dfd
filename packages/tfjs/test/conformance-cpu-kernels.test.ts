import '@tensorflow/tfjs-backend-cpu';
import { defineConformanceSuite } from '@deerjs/conformance';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { createTfjsBackend } from '../src/index.js';

// The cpu engine with step programs on @deerjs/cpu's kernels: the default where that package is
// installed (tfjs ops for the rest).
defineConformanceSuite({
  name: 'tfjs-cpu + cpu kernels',
  create: () => createTfjsBackend({ backend: 'cpu' }),
  oracle: () => createReferenceBackend({ dtype: 'float64' }),
  dtypes: { float32: true, float64: 'tfjs has no float64' },
});
