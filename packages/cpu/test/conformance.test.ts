import { defineConformanceSuite } from '@deerjs/conformance';
import { createCpuBackend, createReferenceBackend } from '../src/index.js';

defineConformanceSuite({
  name: 'cpu',
  // compileMin 0: the generated code runs for every case, however small (by default tiny calls use the reference).
  create: (dtype) => createCpuBackend({ dtype, compileMin: 0 }),
  oracle: () => createReferenceBackend({ dtype: 'float64' }),
  dtypes: { float64: true, float32: true },
});
