import { join } from 'node:path';
import { type Backend, Rng } from '@deerjs/core';
import {
  AdamW,
  type Params,
  SequenceClassifier,
  softmaxCrossEntropy,
  trainStep,
} from '@deerjs/nn';
import { openBackend } from './backend.js';
import type { TrainConfig } from './config.js';
import type { Dataset } from './data/dataset.js';
import { replaceFile } from '@deerjs/app-shared';
import { type EvalRecord, MetricsLog, meanStepMs, type StepRecord } from './metrics.js';
import { ProgressBar } from './progress.js';
import { plotSvg, smooth } from './svg.js';
import { loadTaskData, permutation } from './tasks.js';
import { EpochCheckpoints } from './epoch-checkpoints.js';
import { StepGuard } from './interrupt.js';
import { checkParamsFit, checkResumeStep, lrSchedule, runLength, setupRun } from './run-setup.js';

export interface TrainOptions {
  readonly resume?: boolean;
  /** A fresh run in an --out that holds an earlier run's checkpoint removes it (else refused). */
  readonly overwrite?: boolean;
  /** Where status lines go (default stderr). */
  readonly log?: (line: string) => void;
  readonly progress?: ProgressBar;
  /**
   * Stops the run: the step under way is abandoned, the checkpoint saved with every finished step,
   * and the run rejects with TrainingInterrupted (the CLI aborts it on Ctrl-C).
   */
  readonly signal?: AbortSignal;
}

export interface TrainSummary {
  readonly config: TrainConfig;
  readonly steps: number;
  readonly parameters: number;
  readonly meanStepMs: number;
  readonly test: EvalRecord;
  readonly device: string;
}

function modelFor(c: TrainConfig, data: Dataset): SequenceClassifier {
  return new SequenceClassifier({
    inputSize: data.channels,
    classes: data.classes,
    cell: c.cell,
    hiddenSize: c.hidden,
    layers: c.layers,
    heads: c.heads,
    residual: c.residual,
    pooling: c.pooling,
    layerNorm: c.layerNorm === true,
  });
}

/** Train, checkpoint, evaluate, plot. Resuming takes the stored configuration (bar backend and out). */
export async function train(cli: TrainConfig, opts: TrainOptions = {}): Promise<TrainSummary> {
  const { log, ckptPath, ckpt, config } = await setupRun(cli, opts);
  // Before any data is read: a backend that cannot run the dtype refuses here, in one line.
  const backend = await openBackend(config.backend, config.dtype, ckpt !== undefined);
  try {
    const data = loadTaskData(config);
    const model = modelFor(config, data.train);
    const fresh = model.init(config.seed);
    if (ckpt)
      checkParamsFit(
        ckptPath,
        ckpt.params,
        fresh,
        `${config.layers} × ${config.cell}(${config.hidden}) on data with ${data.train.channels} channel(s) and ${data.train.classes} classes`,
      );
    const params: Params = ckpt ? ckpt.params : fresh;
    log(
      `data: ${data.source}: ${data.train.size} train / ${data.test.size} test, T = ${data.train.length}, ${data.train.channels} channel(s), ${data.train.classes} classes`,
    );
    const optimizer = new AdamW(params, { weightDecay: config.weightDecay });
    if (ckpt) optimizer.state = { step: ckpt.optimizer.step, m: ckpt.optimizer.m, v: ckpt.optimizer.v };
    const rng = new Rng((config.seed ^ 0x5f3759df) >>> 0);
    const B = Math.min(config.batch, data.train.size);
    const perEpoch = Math.max(1, Math.floor(data.train.size / B));
    const { total, epochs } = runLength(config, perEpoch);
    checkResumeStep(ckptPath, ckpt, total);
    const lrAt = lrSchedule(config, total);
    const metrics = new MetricsLog(join(config.out, 'metrics.jsonl'));
    const history = metrics.reset(ckpt?.step);
    let step = ckpt?.step ?? 0;
    log(
      `model: ${config.layers} × ${config.cell}(${config.hidden}${config.cell === 'mhgru' ? `, ${config.heads} heads` : ''}), ${config.pooling} pooling, ${model.parameterCount} parameters; ${config.solver} on ${config.backend} (${config.dtype}); ${total} steps${ckpt ? `, resuming at step ${step}` : ''}`,
    );

    const progress = opts.progress ?? new ProgressBar();
    const checkpoints = new EpochCheckpoints(ckptPath, rng, perEpoch, step, () => ({
      step,
      params,
      optimizer: optimizer.state,
      config,
    }));
    const T = data.train.length;
    const m = data.train.channels;
    const xs = new Float64Array(B * T * m);
    if (ckpt) checkpoints.resume(ckpt);
    const guard = new StepGuard(opts.signal, progress, checkpoints, ckptPath);
    for (let epoch = Math.floor(step / perEpoch); epoch < epochs && step < total; epoch++) {
      checkpoints.startEpoch();
      const order = permutation(data.train.size, rng);
      for (let b = step % perEpoch; b < perEpoch && step < total; b++) {
        const t0 = performance.now();
        const idx = order.slice(b * B, (b + 1) * B);
        data.train.fill(idx, xs);
        const labels = idx.map((i) => data.train.labels[i]!);
        const x = backend.tensor(xs, [B, T, m], config.dtype);
        let r: Awaited<ReturnType<typeof trainStep>>;
        const lr = lrAt(step);
        try {
          r = await guard.guard(() =>
            trainStep(backend, model, params, optimizer, x, labels, {
              solver: config.solver,
              deer: { maxIter: config.maxIter, ...guard.solveOptions },
              lr,
              clipNorm: config.clip > 0 ? config.clip : Number.POSITIVE_INFINITY,
            }),
          );
        } finally {
          backend.dispose(x);
        }
        step++;
        const rec: StepRecord = {
          type: 'step',
          step,
          epoch,
          loss: r.loss,
          acc: r.correct / B,
          lr,
          gradNorm: r.gradNorm,
          ms: performance.now() - t0,
          newton: r.iterations.reduce((a, v) => a + v, 0),
          fellBack: r.fellBack,
        };
        metrics.append(rec);
        history.push(rec);
        progress.update({ step, total, ms: rec.ms, loss: rec.loss, acc: rec.acc, newton: rec.newton });
        if (config.checkpointEvery > 0 && step % config.checkpointEvery === 0) await checkpoints.save();
      }
    }
    progress.done();
    if (step !== checkpoints.lastSaved || !ckpt) await checkpoints.save();
    // Ctrl-C during the evaluation stops it too (the steps are all in the checkpoint; --resume
    // evaluates again); without the signal the cpu backend never let the handler run.
    const test = await guard.guard(() => evaluate(backend, model, params, data.test, config, step, { signal: opts.signal, log }));
    metrics.append(test);
    const summary: TrainSummary = {
      config,
      steps: step,
      parameters: model.parameterCount,
      meanStepMs: meanStepMs(history, ckpt?.step),
      test,
      device: backend.capabilities.device,
    };
    replaceFile(join(config.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    replaceFile(join(config.out, 'plot.svg'), plot(history, test, config));
    return summary;
  } finally {
    await backend.destroy();
  }
}

/** Mean loss and accuracy over a dataset, in batches, with the run's solver. */
export async function evaluate(
  backend: Backend,
  model: SequenceClassifier,
  params: Params,
  data: Dataset,
  config: TrainConfig,
  step: number,
  opts: { readonly signal?: AbortSignal | undefined; readonly log?: (line: string) => void } = {},
): Promise<EvalRecord> {
  const T = data.length;
  const m = data.channels;
  let loss = 0;
  let correct = 0;
  const batches = Math.ceil(data.size / config.batch);
  const every = Math.max(1, Math.round(batches / 10));
  const t0 = performance.now();
  for (let start = 0; start < data.size; start += config.batch) {
    const batch = start / config.batch;
    if (opts.log && batches > 1 && batch % every === 0)
      opts.log(`evaluating: ${start}/${data.size} examples${batch > 0 ? `, ${((performance.now() - t0) / 1000).toFixed(1)} s` : ''}`);
    const idx = Array.from({ length: Math.min(config.batch, data.size - start) }, (_, i) => start + i);
    const xs = new Float64Array(idx.length * T * m);
    data.fill(idx, xs);
    const x = backend.tensor(xs, [idx.length, T, m], config.dtype);
    try {
      const logits = await model.logits(backend, params, x, {
        solver: config.solver,
        deer: { maxIter: config.maxIter, ...(opts.signal ? { signal: opts.signal } : {}) },
      });
      const ce = softmaxCrossEntropy(
        logits,
        idx.map((i) => data.labels[i]!),
        data.classes,
      );
      loss += ce.loss * idx.length;
      correct += ce.correct;
    } finally {
      backend.dispose(x);
    }
  }
  return { type: 'eval', step, loss: loss / data.size, acc: correct / data.size, examples: data.size };
}

function plot(history: readonly StepRecord[], test: EvalRecord, c: TrainConfig): string {
  const loss = history.map((h) => [h.step, h.loss] as const);
  const acc = history.map((h) => [h.step, h.acc] as const);
  const w = Math.max(1, Math.round(history.length / 25));
  return plotSvg(
    [
      {
        title: 'Training loss',
        xLabel: 'step',
        series: [
          { label: 'per batch', color: w > 1 ? '#9ecae1' : '#08519c', points: loss },
          ...(w > 1 ? [{ label: `mean of ${w}`, color: '#08519c', points: smooth(loss, w) }] : []),
          { label: 'test', color: '#d62728', points: [[test.step, test.loss]] },
        ],
      },
      {
        title: 'Accuracy',
        xLabel: 'step',
        yRange: [0, 1],
        series: [
          { label: w > 1 ? `train (mean of ${w})` : 'train', color: '#31a354', points: smooth(acc, w) },
          {
            label: `test ${(100 * test.acc).toFixed(1)}%`,
            color: '#d62728',
            points: [[test.step, test.acc]],
          },
        ],
      },
    ],
    `deer-train ${c.task}: ${c.layers} × ${c.cell}(${c.hidden}), ${c.solver} on ${c.backend} (${c.dtype})`,
  );
}
