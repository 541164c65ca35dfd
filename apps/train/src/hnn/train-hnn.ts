import { join } from 'node:path';
import { cells, Rng } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { AdamW, clipGradNorm, type Params, parameterCount } from '@deerjs/nn';
import { openBackend } from '../backend.js';
import type { TrainConfig } from '../config.js';
import { type HnnEvalRecord, type HnnStepRecord, MetricsLog, meanStepMs } from '../metrics.js';
import { replaceFile } from '@deerjs/app-shared';
import { ProgressBar } from '../progress.js';
import { permutation } from '../tasks.js';
import type { TrainOptions } from '../train.js';
import { hnnPlotSvg, orbitsSvg } from './plot.js';
import { fitStep, integrate, type OdeRunOptions } from './solve.js';
import { energy, generateOrbits, STATE, type Trajectories, timeGrid } from './two-body.js';
import { EpochCheckpoints } from '../epoch-checkpoints.js';
import { StepGuard, TrainingInterrupted } from '../interrupt.js';
import { checkParamsFit, checkResumeStep, lrSchedule, runLength, setupRun } from '../run-setup.js';

export interface HnnSummary {
  readonly config: TrainConfig;
  readonly steps: number;
  readonly parameters: number;
  readonly meanStepMs: number;
  readonly test: HnnEvalRecord;
  /** Largest relative energy drift of the reference trajectories (a check of the data). */
  readonly dataEnergyDrift: number;
  readonly device: string;
}

/** Largest |H(y_t) − H(y_0)| / |H(y_0)| over all orbits and times. */
export function maxRelativeDrift(d: { y0: Float64Array; y: Float64Array }, T: number): number {
  let worst = 0;
  for (let b = 0; b < d.y0.length / STATE; b++) {
    const e0 = energy(d.y0, b * STATE);
    for (let i = 0; i < T; i++) {
      const drift = Math.abs(energy(d.y, (b * T + i) * STATE) - e0) / Math.abs(e0);
      worst = Number.isNaN(drift) ? Number.POSITIVE_INFINITY : Math.max(worst, drift);
    }
  }
  return worst;
}

/** Rows `idx` of a [count, rows, 8] array. */
function gather(src: Float64Array, idx: readonly number[], rows: number): Float64Array {
  const per = rows * STATE;
  const out = new Float64Array(idx.length * per);
  for (const [j, k] of idx.entries()) out.set(src.subarray(k * per, (k + 1) * per), j * per);
  return out;
}

function scatter(dst: Float64Array, idx: readonly number[], rows: number, src: Float64Array): void {
  const per = rows * STATE;
  for (const [j, k] of idx.entries()) dst.set(src.subarray(j * per, (j + 1) * per), k * per);
}

/** y0 held constant over the grid: DEER's default first iterate. */
function constantGuess(y0: Float64Array, T: number): Float64Array {
  const out = new Float64Array(y0.length * T);
  for (let b = 0; b < y0.length / STATE; b++)
    for (let i = 0; i < T; i++) out.set(y0.subarray(b * STATE, (b + 1) * STATE), (b * T + i) * STATE);
  return out;
}

async function makeData(c: TrainConfig, signal: AbortSignal | undefined): Promise<{ train: Trajectories; test: Trajectories }> {
  const t = timeGrid(c.points!, c.tEnd!);
  // The reference is always float64 Dormand–Prince on the CPU, whatever the training backend.
  const cpu = createCpuBackend({ dtype: 'float64' });
  try {
    return {
      train: await generateOrbits(cpu, c.orbits!, t, c.seed * 2 + 1, undefined, undefined, signal),
      test: await generateOrbits(cpu, c.testOrbits!, t, c.seed * 2 + 2, undefined, undefined, signal),
    };
  } finally {
    await cpu.destroy();
  }
}

/**
 * Fit a Hamiltonian network to two-body orbits: integrate it from each true y0 over the grid (DEER
 * or Dormand–Prince), MSE against the reference, adjoint gradient, AdamW. DEER is warm-started
 * from the trajectory that the last visit of the same orbit converged to (cold after a resume).
 */
export async function trainHnn(cli: TrainConfig, opts: TrainOptions = {}): Promise<HnnSummary> {
  const { log, ckptPath, ckpt, config } = await setupRun(cli, opts);
  // Before any data is read: a backend that cannot run the dtype refuses here, in one line.
  const backend = await openBackend(config.backend, config.dtype, ckpt !== undefined);
  try {
    const T = config.points! - 1;
    const t0Data = performance.now();
    const data = await makeData(config, opts.signal).catch((err: unknown) => {
      // Ctrl-C while the orbits are integrated: no step yet, so only a resumed run has a checkpoint.
      if (opts.signal?.aborted) throw new TrainingInterrupted(ckpt?.step ?? 0, ckptPath, ckpt !== undefined);
      throw err;
    });
    const dataEnergyDrift = Math.max(maxRelativeDrift(data.train, T), maxRelativeDrift(data.test, T));
    log(
      `data: two-body orbits by Dormand–Prince (tol 1e-12): ${config.orbits} train / ${config.testOrbits} test, ${config.points} points on [0, ${config.tEnd}], max relative energy drift ${dataEnergyDrift.toExponential(1)} (${((performance.now() - t0Data) / 1000).toFixed(1)} s)`,
    );
    const hidden = Array<number>(config.layers).fill(config.hidden);
    const field = cells.hamiltonian({ dof: 4, hidden });
    const fresh = field.init({ seed: config.seed });
    if (ckpt) checkParamsFit(ckptPath, ckpt.params, fresh, `HNN MLP(8 → ${hidden.join(' → ')} → 1)`);
    const params: Params = ckpt ? ckpt.params : fresh;
    const optimizer = new AdamW(params, { weightDecay: config.weightDecay });
    if (ckpt) optimizer.state = { step: ckpt.optimizer.step, m: ckpt.optimizer.m, v: ckpt.optimizer.v };
    const rng = new Rng((config.seed ^ 0x5f3759df) >>> 0);
    const N = data.train.count;
    const B = Math.min(config.batch, N);
    const perEpoch = Math.max(1, Math.floor(N / B));
    const { total, epochs } = runLength(config, perEpoch);
    checkResumeStep(ckptPath, ckpt, total);
    const lrAt = lrSchedule(config, total);
    const metrics = new MetricsLog<HnnStepRecord | HnnEvalRecord>(join(config.out, 'metrics.jsonl'));
    const history = metrics.reset(ckpt?.step);
    let step = ckpt?.step ?? 0;
    log(
      `model: HNN H = MLP(8 → ${hidden.join(' → ')} → 1), softplus, ${parameterCount(params)} parameters; ${config.solver} on ${config.backend} (${config.dtype}); batch ${B} orbits; ${total} steps${ckpt ? `, resuming at step ${step}` : ''}`,
    );

    const progress = opts.progress ?? new ProgressBar();
    const run: OdeRunOptions = { solver: config.solver, dtype: config.dtype, maxIter: config.maxIter };
    const guesses = constantGuess(data.train.y0, T);
    const checkpoints = new EpochCheckpoints(ckptPath, rng, perEpoch, step, () => ({
      step,
      params,
      optimizer: optimizer.state,
      config,
    }));
    if (ckpt) checkpoints.resume(ckpt);
    const guard = new StepGuard(opts.signal, progress, checkpoints, ckptPath);
    const stepRun: OdeRunOptions = { ...run, ...guard.solveOptions };
    for (let epoch = Math.floor(step / perEpoch); epoch < epochs && step < total; epoch++) {
      checkpoints.startEpoch();
      const order = permutation(N, rng);
      for (let b = step % perEpoch; b < perEpoch && step < total; b++) {
        const t0 = performance.now();
        const idx = order.slice(b * B, (b + 1) * B);
        const lr = lrAt(step);
        const r = await guard.guard(() =>
          fitStep(
            backend,
            field,
            params,
            gather(data.train.y0, idx, 1),
            gather(data.train.y, idx, T),
            data.train.t,
            stepRun,
            config.solver === 'deer' ? gather(guesses, idx, T) : undefined,
          ),
        );
        if (config.solver === 'deer' && !r.fellBack) scatter(guesses, idx, T, r.y);
        const gradNorm = clipGradNorm(r.grads, config.clip > 0 ? config.clip : Number.POSITIVE_INFINITY);
        optimizer.step(params, r.grads, lr);
        step++;
        const rec: HnnStepRecord = {
          type: 'step',
          step,
          epoch,
          loss: r.loss,
          lr,
          gradNorm,
          ms: performance.now() - t0,
          newton: r.newton,
          fellBack: r.fellBack,
        };
        metrics.append(rec);
        history.push(rec);
        progress.update({ step, total, ms: rec.ms, loss: rec.loss, newton: rec.newton });
        if (config.checkpointEvery > 0 && step % config.checkpointEvery === 0) await checkpoints.save();
      }
    }
    progress.done();
    if (step !== checkpoints.lastSaved || !ckpt) await checkpoints.save();

    const pred = await guard.guard(() => integrate(backend, field, params, data.test.y0, data.test.t, stepRun));
    let sq = 0;
    for (let i = 0; i < pred.y.length; i++) sq += (pred.y[i]! - data.test.y[i]!) ** 2;
    const test: HnnEvalRecord = {
      type: 'eval',
      step,
      loss: sq / pred.y.length,
      energyDrift: maxRelativeDrift({ y0: data.test.y0, y: pred.y }, T),
      examples: data.test.count,
    };
    metrics.append(test);
    const summary: HnnSummary = {
      config,
      steps: step,
      parameters: parameterCount(params),
      meanStepMs: meanStepMs(history, ckpt?.step),
      test,
      dataEnergyDrift,
      device: backend.capabilities.device,
    };
    replaceFile(join(config.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    const plotData = { t: data.test.t, y0: data.test.y0, truth: data.test.y, predicted: pred.y };
    replaceFile(join(config.out, 'plot.svg'), hnnPlotSvg(history, plotData, config));
    replaceFile(join(config.out, 'orbits.svg'), orbitsSvg(plotData, config));
    return summary;
  } finally {
    await backend.destroy();
  }
}
