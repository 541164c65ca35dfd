#!/usr/bin/env node
import path from 'node:path';
import { replaceFile } from '@deerjs/app-shared';
import { ArgError } from '../args.js';
import { BenchBackendError, openBackend } from '../backend.js';
import { ensureOutputDir } from '../out-dir.js';
import { resultsDir } from '../output.js';
import { studySvg } from './chart.js';
import { runConvergenceStudy, STUDY_FULL, STUDY_METHODS, STUDY_QUICK, type StudyProblem } from './convergence.js';

/** Memory (steps) up to which a contractive problem counts as short-memory in the summary. */
const SHORT_MEMORY = 100;

const HELP = `deer-study: convergence of DEER, quasi-DEER, ELK, quasi-ELK and 'auto' against weight scale

  deer-study [--quick] [--backend NAME] [--out DIR]

  For GRU and Elman cells (n = 8) whose parameters are scaled 0.5× … 12×, the fraction of
  batch rows each method solves without the sequential fallback, its iterations ('auto': plus
  its sweeps of parallel shooting, "+Nsw", for the rows Newton gave up), its time over
  sequential evaluation, and each problem's estimated largest Lyapunov exponent (< 0: perturbations
  shrink along the trajectory) and its memory (the most steps a trajectory started from a random
  state takes to join the true one: far from the solution a Newton method's linear model is wrong,
  so its iterations grow with this, not with the exponent). 'auto' runs on the backend as if it
  had a GPU's lanes (withCapabilities): on a few CPU cores its cost model would evaluate every
  problem sequentially, and the study is about its Newton path. Writes study.json (after every
  problem, with study.svg beside it) to --out (default: the app's results/study-<backend>, i.e.
  apps/bench/results/study-<backend> in the repository, wherever it runs from; with --quick
  results/study-<backend>-quick, so that a quick run never replaces the committed full study).
`;

function parse(argv: readonly string[]): { quick: boolean; backend: string; out?: string; help: boolean } {
  const a = { quick: false, backend: 'cpu', out: undefined as string | undefined, help: false };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const name = f === '-h' ? '--help' : f;
    if (seen.has(name)) throw new ArgError(`${f} given twice`);
    seen.add(name);
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new ArgError(`${f} needs a value`);
      return v;
    };
    if (f === '--quick') a.quick = true;
    else if (f === '--help' || f === '-h') a.help = true;
    else if (f === '--backend') a.backend = value();
    else if (f === '--out') a.out = value();
    else throw new ArgError(`unknown flag ${f} (see --help)`);
  }
  return a;
}

function row(p: StudyProblem): string {
  const cells = p.runs.map(
    (r) =>
      `${r.convergedRows}/${r.rows} ${String(r.iterations).padStart(3)}it${r.shootingSweeps > 0 ? `+${r.shootingSweeps}sw` : ''} ${r.timeRatio.toFixed(1).padStart(5)}×`,
  );
  return [p.family.padEnd(6), `${p.scale}×`.padStart(5), p.lyapunov.toFixed(3).padStart(7), String(p.memory).padStart(5), ...cells.map((c) => c.padStart(22))].join(' ');
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parse(argv);
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const config = args.quick ? STUDY_QUICK : STUDY_FULL;
  const dir = args.out ?? path.join(resultsDir(), `study-${args.backend}${args.quick ? '-quick' : ''}`);
  // float64 where the backend has it (cpu); the GPU and tfjs backends are float32.
  const dtype = args.backend === 'cpu' ? config.dtype : 'float32';
  // The backend first: a name that loads nothing had left an empty results folder behind.
  const backend = await openBackend(args.backend, dtype);
  try {
    ensureOutputDir(dir);
  } catch (err) {
    await backend.destroy();
    throw err;
  }
  const cfg = { ...config, dtype };
  const json = path.join(dir, 'study.json');
  const header = ['family', 'scale', '   lyap', '  mem', ...STUDY_METHODS.map((m) => m.id.padStart(22))].join(' ');
  process.stdout.write(`deer-study on ${backend.name} (${backend.capabilities.device}), ${dtype}, T = ${cfg.T}, B = ${cfg.B}, n = ${cfg.n}\n${header}\n`);
  const svg = path.join(dir, 'study.svg');
  // The plot with the JSON after every problem: an interrupted run leaves the two in agreement.
  const save = (problems: readonly StudyProblem[]) => {
    replaceFile(
      json,
      `${JSON.stringify({ tool: 'deer-study', backend: backend.name, device: backend.capabilities.device, config: cfg, problems }, null, 1)}\n`,
    );
    replaceFile(svg, studySvg(problems, `Convergence against weight scale (${backend.name}, T = ${cfg.T})`));
  };
  try {
    const done: StudyProblem[] = [];
    const problems = await runConvergenceStudy(backend, cfg, (p, k, total) => {
      process.stdout.write(`${row(p)}   [${k}/${total}]\n`);
      done.push(p);
      save(done);
    });
    const contractive = problems.filter((p) => p.lyapunov < 0);
    const short = contractive.filter((p) => p.memory <= SHORT_MEMORY);
    for (const m of STUDY_METHODS) {
      const solved = (ps: readonly StudyProblem[]) =>
        ps.filter((p) => p.runs.find((r) => r.method === m.id)!.convergedRows === p.runs[0]!.rows).length;
      process.stdout.write(
        `${m.id}: ${solved(contractive)}/${contractive.length} contractive problems solved without fallback; ${solved(short)}/${short.length} of those with memory ≤ ${SHORT_MEMORY} steps\n`,
      );
    }
    process.stdout.write(`wrote ${json}\n      ${svg}\n`);
    return 0;
  } finally {
    await backend.destroy();
  }
}


main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof BenchBackendError || err instanceof ArgError) {
      process.stderr.write(`deer-study: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`);
      process.exit(2);
    }
    process.stderr.write(`deer-study: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
