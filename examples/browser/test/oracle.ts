// The end-to-end test's oracle: the page's problem solved in Node on @deerjs/cpu in float64.
// Built with `vite build --ssr` (so it shares src/problem.ts) and run with node; prints JSON.
import { createCpuBackend } from '@deerjs/cpu';
import { solve } from '../src/problem.js';

const backend = createCpuBackend({ dtype: 'float64' });
const result = await solve(backend, () => performance.now());
await backend.destroy();
console.log(JSON.stringify(result));
