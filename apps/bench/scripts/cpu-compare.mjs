#!/usr/bin/env node
import { resolve } from 'node:path';
// Before/after on the CPU backend, in ONE process, interleaved: a base checkout's @deerjs/cpu
// (built beside this one) against this checkout's, plus onnxruntime's GRU on the same thread count.
//
//   node apps/bench/scripts/cpu-compare.mjs --base /tmp/base-cpu [--nh 1,8,32,64] [--T 1e4] [--B 16]
//        [--reps 3] [--what seq,ort,deer,quasi] [--base-max-nh 32] [--dense-max-nh 8] [--threads 2] [--wall]
//   node apps/bench/scripts/cpu-compare.mjs --what threads [--base …] [--threads-T 1e6] [--threads-B 1] [--warmup 1] [--all]
//
// Prints milliseconds (median of reps) and the ratios the CPU targets are stated in: new/base,
// sequential vs onnxruntime, one DEER Newton iteration vs one sequential pass. --threads N (N > 1)
// runs the cpu backends with threads: N and onnxruntime with intraOpNumThreads: N, on wall time
// (CPU time sums the threads), and adds this checkout's sequential pass on 1 thread, interleaved,
// for the speed-up of N threads over one.
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
// `--flag value`, or `--flag` alone (true) when the next word is another flag or there is none.
const args = Object.fromEntries(
  argv.flatMap((a, i) =>
    a.startsWith('--') ? [[a.slice(2), argv[i + 1] === undefined || argv[i + 1].startsWith('--') ? true : argv[i + 1]]] : [],
  ),
);
const list = (s, d) => (s ?? d).split(',').map(Number);
const nhs = list(args.nh, '1,8,32,64');
const T = Number(args.T ?? 1e4);
const B = Number(args.B ?? 16);
const reps = Number(args.reps ?? 3);
const what = new Set((args.what ?? 'seq,ort,deer,quasi').split(','));
const baseMaxNh = Number(args['base-max-nh'] ?? 32);
const denseMaxNh = Number(args['dense-max-nh'] ?? 8);
const iters = Number(args.iters ?? 3);
const threads = Number(args.threads ?? 1);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads: expected a positive integer, got ${args.threads}`);

const here = new URL('.', import.meta.url);
const load = async (root) => ({
  core: await import(pathToFileURL(resolve(root, 'packages/core/dist/index.js')).href),
  cpu: await import(pathToFileURL(resolve(root, 'packages/cpu/dist/index.js')).href),
});
const mine = await load(new URL('../../..', here).pathname);
const base = args.base ? await load(args.base) : undefined;
const onnx = what.has('ort') ? await import('@deerjs/onnx').catch(() => undefined) : undefined;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// CPU time of this process (all its threads), not wall time: the machines this runs on are shared,
// and waiting for a core is not work. --wall measures wall time instead, as do --threads N > 1.
const wallClock = 'wall' in args || threads > 1;
const clock =
  wallClock
    ? () => performance.now()
    : () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      };
const ms = async (fn) => {
  const t0 = clock();
  await fn();
  return clock() - t0;
};

function problem(core, nh) {
  const cell = core.cells.gru({ inputSize: nh, hiddenSize: nh });
  const params = cell.init({ seed: 0 });
  const x = new core.Rng(1).normalArray(B * T * nh, 1);
  return { cell, params, x };
}

/** One backend's runners for one nh: sequential pass, and DEER per Newton iteration. */
function runners(side, nh, threads) {
  const { core, cpu } = side;
  const be = cpu.createCpuBackend({ dtype: 'float32', threads });
  const { cell, params, x } = problem(core, nh);
  const xt = be.tensor(x, [B, T, nh], 'float32');
  const pt = Object.fromEntries(
    Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length], 'float32')]),
  );
  return {
    destroy: () => be.destroy(),
    async seq() {
      const r = await core.sequential(be, cell, pt, xt, { checkFinite: false });
      be.dispose(r.y);
    },
    async deerIter(jacobian) {
      // Time between the first and the last iteration's progress callbacks: Newton iterations
      // only, without validation, uploads or the solve's closing residual check.
      const marks = [];
      const t0 = clock();
      const r = await core.deer(be, cell, pt, xt, {
        jacobian,
        maxIter: iters,
        fallback: 'none',
        atol: 1e-30,
        rtol: 0,
        checkFinite: false,
        onIteration: () => marks.push(clock()),
      });
      const dt = clock() - t0;
      be.dispose(r.y);
      if (marks.length < 2) return dt / r.stats.iterations;
      return (marks.at(-1) - marks[0]) / (marks.length - 1);
    },
  };
}

async function ortRunner(nh, threads) {
  if (!onnx) return undefined;
  const { cell, params, x } = problem(mine.core, nh);
  void cell;
  const b = new Float64Array(6 * nh);
  b.set(params.Wb, 0);
  b.set(params.Rb, 3 * nh);
  const model = onnx.buildRecurrentModel({
    op: 'GRU',
    inputSize: nh,
    hiddenSize: nh,
    direction: 'forward',
    layout: 0,
    linearBeforeReset: 1,
    weights: { W: params.W, R: params.R, B: b },
  });
  const session = await onnx.openOrtSession(model, {
    sessionOptions: { executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1 },
  });
  const X = new Float32Array(B * T * nh);
  for (let bb = 0; bb < B; bb++)
    for (let t = 0; t < T; t++)
      for (let k = 0; k < nh; k++) X[(t * B + bb) * nh + k] = x[(bb * T + t) * nh + k];
  return { run: () => session.run({ X: { data: X, dims: [T, B, nh] } }), release: () => session.release() };
}

const fmt = (v) => (v === undefined ? '—' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const ratio = (a, b) => (a === undefined || b === undefined ? '—' : (a / b).toFixed(2));
console.log(
  `GRU lbr=1, B=${B}, T=${T}, float32, ${threads} thread${threads > 1 ? 's (cpu backends and onnxruntime)' : ''}; ${wallClock ? 'wall' : 'CPU'} ms, median of ${reps}; DEER: ms per Newton iteration (${iters} iterations)`,
);
const rows = [];
for (const nh of ['seq', 'ort', 'deer', 'quasi'].some((w) => what.has(w)) ? nhs : []) {
  const n = runners(mine, nh, threads);
  // With threads, this checkout on one thread too: the speed-up of the threads.
  const n1 = threads > 1 && what.has('seq') ? runners(mine, nh, 1) : undefined;
  const o = base && nh <= baseMaxNh ? runners(base, nh, threads) : undefined;
  const ort = what.has('ort') ? await ortRunner(nh, threads) : undefined;
  const t = { seqNew: [], seqNew1: [], seqBase: [], ort: [], deerNew: [], deerBase: [], quasiNew: [], quasiBase: [] };
  const dense = nh <= denseMaxNh;
  for (let r = 0; r < reps + 1; r++) {
    const keep = r > 0; // first round warms up
    const push = (k, v) => keep && t[k].push(v);
    if (what.has('seq')) {
      if (o) push('seqBase', await ms(o.seq));
      if (n1) push('seqNew1', await ms(n1.seq));
      push('seqNew', await ms(n.seq));
    }
    if (ort) push('ort', await ms(ort.run));
    if (what.has('deer') && dense) {
      if (o) push('deerBase', await o.deerIter('auto'));
      push('deerNew', await n.deerIter('auto'));
    }
    if (what.has('quasi')) {
      if (o) push('quasiBase', await o.deerIter('diagonal'));
      push('quasiNew', await n.deerIter('diagonal'));
    }
  }
  await ort?.release();
  n.destroy();
  n1?.destroy();
  o?.destroy();
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.length ? median(v) : undefined]));
  rows.push({ nh, threads, ...m });
  const one = n1 ? ` new 1 thread ${fmt(m.seqNew1)} (${threads} threads ×${ratio(m.seqNew1, m.seqNew)} faster)` : '';
  console.log(
    `nh=${String(nh).padEnd(3)} seq base ${fmt(m.seqBase)} new ${fmt(m.seqNew)} (×${ratio(m.seqBase, m.seqNew)} faster)${one} | ort ${fmt(m.ort)} new/ort ${ratio(m.seqNew, m.ort)} | ` +
      `deer/iter base ${fmt(m.deerBase)} new ${fmt(m.deerNew)} iter/seq base ${ratio(m.deerBase, m.seqBase)} new ${ratio(m.deerNew, m.seqNew)} | ` +
      `quasi/iter base ${fmt(m.quasiBase)} new ${fmt(m.quasiNew)} iter/seq base ${ratio(m.quasiBase, m.seqBase)} new ${ratio(m.quasiNew, m.seqNew)}`,
  );
}
if (args.json) console.log(JSON.stringify(rows));

// --what threads: wall time of one DEER iteration (nh=1, B=1, T=1e6 unless given) on 1 and 2 threads,
// interleaved (1, 2, 1, 2, …), with --base the base checkout's too; prints medians and the ratio.
if (what.has('threads')) {
  // The machines this runs on are shared: on Linux, a rep during which other processes used more
  // than a fifth of a core (/proc/stat's busy time less this process's) is repeated, up to 5 times.
  const { readFileSync } = await import('node:fs');
  const busy = () => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
      return ((f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 1000) / 100; // ms (USER_HZ = 100)
    } catch {
      return undefined;
    }
  };
  const own = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  let retried = 0;
  const wall = async (fn) => {
    for (let tries = 0; ; tries++) {
      const [b0, o0, t0] = [busy(), own(), performance.now()];
      await fn();
      const dt = performance.now() - t0;
      const others = b0 === undefined ? 0 : busy() - b0 - (own() - o0);
      if (others < 0.2 * dt + 20 || tries === 5) return dt;
      retried++;
    }
  };
  const TT = Number(args['threads-T'] ?? 1e6);
  const BB = Number(args['threads-B'] ?? 1);
  const sideOf = (label, { core, cpu }, threads) => {
    const cell = core.cells.gru({ inputSize: 1, hiddenSize: 1 });
    const params = cell.init({ seed: 0 });
    const x = new core.Rng(1).normalArray(BB * TT, 1);
    const be = cpu.createCpuBackend({ dtype: 'float32', threads });
    const xt = be.tensor(x, [BB, TT, 1], 'float32');
    const pt = Object.fromEntries(
      Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length], 'float32')]),
    );
    const iter = async () => {
      const r = await core.deer(be, cell, pt, xt, {
        maxIter: iters,
        fallback: 'none',
        atol: 1e-30,
        rtol: 0,
        checkFinite: false,
      });
      be.dispose(r.y);
    };
    return { label, threads: be.threads, iter, be, t: [] };
  };
  const sides = [sideOf('new', mine, 1), sideOf('new', mine, 2)];
  if (base) sides.push(sideOf('base', base, 1), sideOf('base', base, 2));
  // JIT tiers and the heap take a few solves to settle: --warmup rounds are not counted.
  const warmup = Number(args.warmup ?? 1);
  for (let r = 0; r < reps + warmup; r++)
    for (const side of sides) {
      const v = (await wall(side.iter)) / iters;
      if (r >= warmup) side.t.push(v);
    }
  for (let k = 0; k < sides.length; k += 2) {
    const [one, two] = [sides[k], sides[k + 1]];
    const [a, b] = [median(one.t), median(two.t)];
    console.log(
      `threads (${one.label}): GRU nh=1, B=${BB}, T=${TT}: wall ms per DEER iteration (median of ${reps}), 1 thread ${fmt(a)}, ${two.threads} threads ${fmt(b)} (×${ratio(a, b)})`,
    );
    if ('all' in args) console.log(`  1 thread: ${one.t.map(fmt).join(' ')}\n  ${two.threads} threads: ${two.t.map(fmt).join(' ')}`);
  }
  if (retried) console.log(`  (${retried} reps repeated: other processes were busy)`);
  for (const s of sides) s.be.destroy();
}
