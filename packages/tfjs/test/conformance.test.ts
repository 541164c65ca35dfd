import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { CELL_FAMILIES, defineConformanceSuite } from '@deerjs/conformance';
import { createReferenceBackend } from '@deerjs/cpu/reference';
import { createTfjsBackend } from '../src/index.js';

/**
 * tfjs's own cpu kernels broadcast and gather element by element (~0.1 µs each): the n = 64 and
 * T = 10 000 solves take 10–25 s each there (minutes in all); the same cases run on wasm below.
 */
const SLOW_ON_TFJS_CPU =
  'tfjs-cpu broadcasts element by element (10-25 s per case at this size); covered by the wasm run';
const cpuSkips: Record<string, string> = { 'solve/gru/n64/T10000/B1': SLOW_ON_TFJS_CPU };
for (const f of CELL_FAMILIES) {
  if (f.supports(64)) cpuSkips[`solve/${f.id}/n64/T100/B3`] = SLOW_ON_TFJS_CPU;
  for (const B of [1, 3]) cpuSkips[`solve/${f.id}/n8/T10000/B${B}`] = SLOW_ON_TFJS_CPU;
}

for (const engine of ['cpu', 'wasm'] as const) {
  defineConformanceSuite({
    name: `tfjs-${engine}`,
    create: () => createTfjsBackend({ backend: engine }),
    oracle: () => createReferenceBackend({ dtype: 'float64' }),
    dtypes: { float32: true, float64: 'tfjs has no float64' },
    ...(engine === 'cpu' ? { skip: cpuSkips } : {}),
  });
}
