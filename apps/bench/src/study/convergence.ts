import {
  type Backend,
  type Cell,
  cells,
  DEFAULT_TOLERANCE,
  type DeerOptions,
  deer,
  type DType,
  Rng,
  sequential,
  withCapabilities,
} from '@deerjs/core';
import { trajectoryMemory } from './memory.js';

/** One way of solving: DEER, quasi-DEER, ELK, quasi-ELK, or 'auto'. */
export interface StudyMethod {
  readonly id: string;
  readonly options: DeerOptions;
  /** Solved on the backend stating STUDY_AUTO_LANES of parallelism. */
  readonly wide?: boolean;
}

export const STUDY_METHODS: readonly StudyMethod[] = [
  { id: 'DEER', options: { method: 'deer' } },
  { id: 'quasi-DEER', options: { method: 'deer', jacobian: 'diagonal' } },
  { id: 'ELK', options: { method: 'elk' } },
  { id: 'quasi-ELK', options: { method: 'elk', jacobian: 'diagonal' } },
  { id: 'auto', options: { method: 'auto' }, wide: true },
];

/**
 * Lanes the study states for 'auto' (withCapabilities): its cost model would send every problem of
 * this size to sequential evaluation on a few CPU cores, and the study is about its Newton path.
 */
export const STUDY_AUTO_LANES = 1e9;

export interface StudyConfig {
  readonly families: readonly ('gru' | 'elman')[];
  readonly scales: readonly number[];
  readonly seeds: number;
  readonly B: number;
  readonly T: number;
  readonly n: number;
  readonly dtype: DType;
}

export const STUDY_FULL: StudyConfig = {
  families: ['gru', 'elman'],
  scales: [0.5, 1, 2, 3, 4, 6, 8, 12],
  seeds: 3,
  B: 4,
  T: 2000,
  n: 8,
  dtype: 'float64',
};

export const STUDY_QUICK: StudyConfig = { ...STUDY_FULL, scales: [0.5, 1, 2, 4, 8, 12], seeds: 1, T: 300 };

export interface StudyRun {
  readonly method: string;
  readonly rows: number;
  /** Rows that converged without the sequential fallback, of B. */
  readonly convergedRows: number;
  readonly iterations: number;
  /** Sweeps of parallel shooting ('auto', for the rows Newton gave up). */
  readonly shootingSweeps: number;
  readonly stopReason: string;
  /** Wall time over the time of `sequential` on the same problem. */
  readonly timeRatio: number;
  /** max |y − sequential| (the answer is right whatever the path). */
  readonly maxError: number;
}

export interface StudyProblem {
  readonly family: string;
  readonly scale: number;
  readonly seed: number;
  /** Largest Lyapunov exponent per step, estimated by 'auto' (< 0: perturbations shrink). */
  readonly lyapunov: number;
  /** Steps a trajectory from a random state takes to join the true one (`trajectoryMemory`). */
  readonly memory: number;
  readonly sequentialMs: number;
  readonly runs: readonly StudyRun[];
}

/**
 * A GRU or Elman cell with every parameter scaled, biases (Wb, Rb) included: the study's problems
 * since it was first run (the filter meant to keep biases matched no ONNX-layout name).
 */
function scaledProblem(family: 'gru' | 'elman', scale: number, seed: number, n: number): { cell: Cell; params: Record<string, Float64Array> } {
  const cell = family === 'gru' ? cells.gru({ inputSize: 2, hiddenSize: n }) : cells.elman({ inputSize: 2, hiddenSize: n });
  const params = cell.init({ seed });
  for (const k of Object.keys(params)) params[k] = params[k]!.map((v) => v * scale);
  return { cell, params };
}

const now = () => performance.now();

/**
 * Below this a single timing is mostly noise on a shared machine (a chaotic problem's 8.5 ms
 * sequential pass timed once had put 'auto' at 2.2× it; the median of 15 was 1.5×): such solves are
 * timed REPEATS times, longer ones LONG_REPEATS times (one sample had let a stall of a 3 ms pass,
 * timed at 95 ms, become a row's sequential reference), and the median kept.
 */
const SHORT_MS = 50;
const REPEATS = 7;
const LONG_REPEATS = 3;

/** Runs `solve` (warm; it frees what it makes) and returns its first result with the median of its times. */
async function timed<R>(solve: () => Promise<R>): Promise<{ result: R; ms: number }> {
  let t0 = now();
  const result = await solve();
  const times = [now() - t0];
  const repeats = times[0]! >= SHORT_MS ? LONG_REPEATS : REPEATS;
  for (let i = 1; i < repeats; i++) {
    t0 = now();
    await solve();
    times.push(now() - t0);
  }
  times.sort((a, b) => a - b);
  return { result, ms: times[repeats >> 1]! };
}

/** Run the study point by point; `onProblem` sees each problem as it finishes. */
export async function runConvergenceStudy(
  backend: Backend,
  config: StudyConfig,
  onProblem: (p: StudyProblem, index: number, total: number) => void,
): Promise<StudyProblem[]> {
  const out: StudyProblem[] = [];
  const total = config.families.length * config.scales.length * config.seeds;
  for (const family of config.families) {
    for (const scale of config.scales) {
      for (let seed = 0; seed < config.seeds; seed++) {
        const { cell, params } = scaledProblem(family, scale, 11 + seed, config.n);
        const rng = new Rng(100 + seed);
        const x = backend.tensor(rng.normalArray(config.B * config.T * 2), [config.B, config.T, 2], config.dtype);
        try {
          // Each solve is timed warm: a first, untimed pass compiles the cell's step program.
          backend.dispose((await sequential(backend, cell, params, x)).y);
          const seqRun = await timed(async () => {
            const r = await sequential(backend, cell, params, x);
            const host = await backend.read(r.y);
            backend.dispose(r.y);
            return host;
          });
          const { result: ref, ms: sequentialMs } = seqRun;
          const memory = await trajectoryMemory(backend, cell, params, x, ref, DEFAULT_TOLERANCE[config.dtype], 200 + seed);
          const runs: StudyRun[] = [];
          let lyapunov = Number.NaN;
          for (const m of STUDY_METHODS) {
            const on = m.wide ? withCapabilities(backend, { parallelism: STUDY_AUTO_LANES }) : backend;
            // Untimed first: a method's own step programs (Jacobian structures, probes) compile on
            // first use, a one-off cost that sequential's warm-up above does not pay either.
            backend.dispose((await deer(on, cell, params, x, m.options)).y);
            const run = await timed(async () => {
              const out = await deer(on, cell, params, x, m.options);
              const host = await backend.read(out.y);
              backend.dispose(out.y);
              return { stats: out.stats, y: host };
            });
            const { stats, y } = run.result;
            const ms = run.ms;
            let err = 0;
            for (let i = 0; i < y.length; i++) err = Math.max(err, Math.abs(y[i]! - ref[i]!));
            if (stats.lyapunov !== undefined) lyapunov = stats.lyapunov;
            runs.push({
              method: m.id,
              rows: config.B,
              convergedRows: config.B - stats.fallbackRows,
              iterations: stats.iterations,
              shootingSweeps: stats.shootingSweeps,
              stopReason: stats.stopReason,
              timeRatio: ms / sequentialMs,
              maxError: err,
            });
          }
          const p: StudyProblem = { family, scale, seed, lyapunov, memory, sequentialMs, runs };
          out.push(p);
          onProblem(p, out.length, total);
        } finally {
          backend.dispose(x);
        }
      }
    }
  }
  return out;
}
