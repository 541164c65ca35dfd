// One training step of deer-train's fashion-mnist model (see fashion-step.mjs) on the tfjs backend
// (tfjs-cpu engine by default) and the cpu backend, alternating.
// Prints per-rep wall and process cpu times (the machine may be shared), medians, and the time per
// backend method (runStep by program kind) of the last rep.
// Usage (after `pnpm build`): node bench/train-step.mjs [reps=3] [B=16] [T=784] [which=tfjs,cpu] [distDir] [engine=cpu]
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { createCpuBackend } from '@deerjs/cpu';
import { fashionStep } from './fashion-step.mjs';

const [reps = 3, B = 16, T = 784] = process.argv.slice(2, 5).map(Number);
const which = (process.argv[5] ?? 'tfjs,cpu').split(',');
const dist = process.argv[6] ?? '../dist/index.js';
const engine = process.argv[7] ?? 'cpu';
const { createTfjsBackend } = await import(dist);

const step = fashionStep(B, T);

/** Wraps a backend so each method's wall time is summed by name. */
function timed(be) {
  const totals = new Map();
  const proxy = new Proxy(be, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (typeof v !== 'function') return v;
      return (...args) => {
        const t0 = performance.now();
        const r = v.apply(target, args);
        const name = key === 'runStep' ? `runStep[${args[0].jacobian ? `J${args[0].jacobian.blockSize}` : args[0].outputs.length > 1 ? 'vjp' : 'f'}, n${args[0].graph.inputSize}]` : key;
        const add = () => totals.set(name, (totals.get(name) ?? 0) + performance.now() - t0);
        if (r && typeof r.then === 'function') return r.finally(add);
        add();
        return r;
      };
    },
  });
  return { proxy, totals };
}

const backends = {};
if (which.includes('tfjs')) backends.tfjs = timed(await createTfjsBackend({ backend: engine }));
if (which.includes('cpu')) backends.cpu = timed(await createCpuBackend({ dtype: 'float32' }));
const times = Object.fromEntries(Object.keys(backends).map((k) => [k, []]));
const cpuTimes = Object.fromEntries(Object.keys(backends).map((k) => [k, []]));
for (let r = 0; r < reps; r++) {
  for (const [name, { proxy, totals }] of Object.entries(backends)) {
    totals.clear();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const iters = await step(proxy);
    const ms = performance.now() - t0;
    const c1 = process.cpuUsage(c0);
    const cpuMs = (c1.user + c1.system) / 1000;
    times[name].push(ms);
    cpuTimes[name].push(cpuMs);
    console.log(`rep ${r} ${name}: ${ms.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms cpu time (newton ${iters.join(', ')})`);
  }
}
const median = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
for (const [name, { totals }] of Object.entries(backends)) {
  const top = [...totals].sort((a, b) => b[1] - a[1]).slice(0, 12);
  console.log(`${name} median ${median(times[name]).toFixed(0)} ms wall, ${median(cpuTimes[name]).toFixed(0)} ms cpu time; last rep by method: ${top.map(([k, v]) => `${String(k)} ${v.toFixed(0)}`).join(', ')}`);
}
if (times.tfjs && times.cpu) {
  const wall = median(times.tfjs) / median(times.cpu);
  const cpu = median(cpuTimes.tfjs) / median(cpuTimes.cpu);
  console.log(`tfjs/cpu ratio of medians: ${wall.toFixed(2)} wall, ${cpu.toFixed(2)} cpu time`);
}
