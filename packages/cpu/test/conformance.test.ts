import { defineConformanceSuite } from '@deerjs/conformance';
import { createCpuBackend } from '../src/index.js';

defineConformanceSuite({
  name: 'cpu',
  create: (dtype) => createCpuBackend({ dtype }),
  oracle: () => createCpuBackend({ dtype: 'float64' }),
  dtypes: { float64: true, float32: true },
});
