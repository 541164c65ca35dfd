import { defineConformanceSuite } from '@deerjs/conformance';
import { createCpuBackend, createReferenceBackend } from '../src/index.js';

defineConformanceSuite({
  name: 'cpu',
  create: (dtype) => createCpuBackend({ dtype }),
  oracle: () => createReferenceBackend({ dtype: 'float64' }),
  dtypes: { float64: true, float32: true },
});
