import { type Backend, checkOptionNames, describeValue, InvalidArgumentError, type Tensor, UnsupportedOptionError } from '@deerjs/core';
import { type AdamW, checkLearningRate } from './adamw.js';
import { clipGradNorm } from './clip.js';
import type { RunOptions, SequenceClassifier, StepResult } from './model.js';
import type { Params } from './params.js';

export interface TrainStepOptions extends RunOptions {
  readonly lr: number;
  /** Clip the global gradient norm to this (default: no clipping). */
  readonly clipNorm?: number;
}

export interface TrainStepResult extends StepResult {
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
}

/** Forward, backward, clip, and one AdamW update of `params` in place. */
export async function trainStep(
  backend: Backend,
  model: SequenceClassifier,
  params: Params,
  optimizer: AdamW,
  x: Tensor,
  labels: ArrayLike<number>,
  opts: TrainStepOptions,
): Promise<TrainStepResult> {
  if (opts === null || typeof opts !== 'object')
    throw new InvalidArgumentError('trainStep options', "{ solver, lr, deer?, clipNorm? }", describeValue(opts));
  checkOptionNames(opts, ['solver', 'deer', 'lr', 'clipNorm'], 'trainStep');
  if (optimizer === null || typeof optimizer !== 'object' || typeof (optimizer as Partial<AdamW>).step !== 'function')
    throw new InvalidArgumentError('trainStep optimizer', 'an optimizer with step(params, grads, lr) (new AdamW(…))', describeValue(optimizer));
  const clipNorm = opts.clipNorm ?? Number.POSITIVE_INFINITY;
  if (typeof clipNorm !== 'number' || !(clipNorm > 0)) throw new UnsupportedOptionError('clipNorm', clipNorm, 'a number > 0 (Infinity: no clipping)');
  // Before the forward and backward passes, not after them.
  checkLearningRate(opts.lr);
  const r = await model.lossAndGrad(backend, params, x, labels, { solver: opts.solver, ...(opts.deer ? { deer: opts.deer } : {}) });
  const gradNorm = clipGradNorm(r.grads, clipNorm);
  optimizer.step(params, r.grads, opts.lr);
  return { ...r, gradNorm };
}
