#!/usr/bin/env node
// Times DEER and sequential GRU solves on the webgpu backend of two built checkouts, interleaved
// (A, B, A, B, ...) so that a shared, noisy machine affects both alike, and counts queue submits
// per Newton iteration by wrapping the device queue's submit().
//
//   node tooling/scripts/compare-webgpu.mjs /path/to/base /path/to/new [--rounds 3] [--points nh:T:B,...]
//     [--cell gru|lstm] [--jacobian auto|dense|diagonal]
//
// Each checkout needs packages/core/dist and packages/webgpu/dist (pnpm build). Prints JSON.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : def;
};
const rounds = Number(opt('--rounds', '3'));
const points = opt('--points', '1:100000:16,8:10000:16')
  .split(',')
  .map((p) => p.split(':').map(Number));
const cellName = opt('--cell', 'gru');
const jacobian = opt('--jacobian', 'auto');
const repos = args.length > 0 ? args : [process.cwd()];

async function open(repo) {
  const core = await import(pathToFileURL(path.join(repo, 'packages/core/dist/index.js')).href);
  const webgpu = await import(pathToFileURL(path.join(repo, 'packages/webgpu/dist/index.js')).href);
  const backend = await webgpu.createWebGpuBackend();
  const queue = backend.ctx.device.queue;
  const counter = { submits: 0 };
  const submit = queue.submit.bind(queue);
  queue.submit = (bufs) => {
    counter.submits++;
    return submit(bufs);
  };
  return { repo, core, backend, counter };
}

function problem(s, nh, T, B) {
  const cell = s.core.cells[cellName]({ inputSize: nh, hiddenSize: nh });
  const params = cell.init({ seed: 0 });
  let r = 12345;
  const rand = () => ((r = (r * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const xHost = Float32Array.from({ length: B * T * nh }, rand);
  // Each timed solve gets its own x tensor: a backend may keep work derived from an input with it
  // (the hoisted input projection), which a reused x would leave out of every run but the first.
  const fresh = async () => {
    const x = s.backend.tensor(xHost, [B, T, nh]);
    const probe = s.backend.timeStep(x, 0);
    await s.backend.read(probe);
    s.backend.dispose(probe);
    return x;
  };
  return { cell, params, fresh };
}

async function timeDeer(s, p) {
  const submits0 = s.counter.submits;
  // Submits between consecutive iterations' callbacks: one whole iteration each (steady state).
  const between = [];
  let mark = submits0;
  const onIteration = () => {
    between.push(s.counter.submits - mark);
    mark = s.counter.submits;
  };
  const x = await p.fresh();
  const t0 = performance.now();
  const { y, stats } = await s.core.deer(s.backend, p.cell, p.params, x, { checkFinite: false, onIteration, jacobian });
  s.backend.dispose(x);
  const t1 = performance.now();
  await s.backend.read(y);
  const t2 = performance.now();
  s.backend.dispose(y);
  const submits = s.counter.submits - submits0;
  return { ms: t2 - t0, solveMs: t1 - t0, readMs: t2 - t1, iterations: stats.iterations, submits, between };
}

async function timeSeq(s, p) {
  const x = await p.fresh();
  const t0 = performance.now();
  const { y } = await s.core.sequential(s.backend, p.cell, p.params, x, { checkFinite: false });
  s.backend.dispose(x);
  await s.backend.read(y);
  const ms = performance.now() - t0;
  s.backend.dispose(y);
  return { ms };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const sessions = [];
for (const repo of repos) sessions.push(await open(repo));
const out = [];
for (const [nh, T, B] of points) {
  const probs = sessions.map((s) => problem(s, nh, T, B));
  // Warm-up: compile every kernel once.
  for (const [i, s] of sessions.entries()) {
    await timeDeer(s, probs[i]);
    await timeSeq(s, probs[i]);
  }
  const deer = sessions.map(() => []);
  const seq = sessions.map(() => []);
  for (let k = 0; k < rounds; k++) {
    // Alternate which build goes first, so that neither always runs after the other.
    const order = [...sessions.keys()];
    if (k % 2 === 1) order.reverse();
    for (const i of order) deer[i].push(await timeDeer(sessions[i], probs[i]));
    for (const i of order) seq[i].push(await timeSeq(sessions[i], probs[i]));
  }
  const row = { cell: cellName, jacobian, nh, T, B, builds: {} };
  for (const [i, s] of sessions.entries()) {
    const d = deer[i];
    row.builds[s.repo] = {
      deerMs: median(d.map((r) => r.ms)),
      deerSolveMs: median(d.map((r) => r.solveMs)),
      deerReadMs: median(d.map((r) => r.readMs)),
      iterations: d[0].iterations,
      submitsPerIteration: d[0].submits / d[0].iterations,
      // From the second iteration on (the first also carries the setup).
      submitsPerSteadyIteration: median(d[0].between.slice(1)),
      deerMinMs: Math.min(...d.map((r) => r.ms)),
      sequentialMinMs: Math.min(...seq[i].map((r) => r.ms)),
      sequentialMs: median(seq[i].map((r) => r.ms)),
      samples: { deer: d.map((r) => +r.ms.toFixed(1)), sequential: seq[i].map((r) => +r.ms.toFixed(1)) },
    };
  }
  if (sessions.length === 2) {
    const [a, b] = repos.map((r) => row.builds[r]);
    row.ratios = {
      deer: a.deerMs / b.deerMs,
      sequential: a.sequentialMs / b.sequentialMs,
      submitsPerIteration: a.submitsPerIteration / b.submitsPerIteration,
    };
  }
  out.push(row);
  console.error(JSON.stringify(row));
}
console.log(JSON.stringify(out, null, 2));
for (const s of sessions) s.backend.destroy();
