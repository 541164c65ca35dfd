import { InvalidArgumentError, ShapeError } from '@deerjs/core';
import { checkFiniteValues } from './params.js';
export interface CrossEntropy {
  /** Mean over the batch of −log softmax(logits)[label]. */
  readonly loss: number;
  /** ∂loss/∂logits, [B, C]. */
  readonly dLogits: Float64Array;
  /** Rows whose arg-max equals the label. */
  readonly correct: number;
}

/** Softmax cross-entropy of logits [B, C] against integer labels, averaged over the batch. */
export function softmaxCrossEntropy(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
): CrossEntropy {
  const B = labels.length;
  if (B === 0) throw new ShapeError('labels', 'at least one label (the mean over an empty batch is 0/0)', '0');
  if (logits.length !== B * classes) {
    throw new ShapeError('logits', `${B * classes} (${B} labels × ${classes} classes)`, `${logits.length}`);
  }
  // A NaN or an infinite logit has no softmax to speak of: the loss and its gradient would be NaN.
  checkFiniteValues('logits', logits);
  const d = new Float64Array(B * classes);
  let loss = 0;
  let correct = 0;
  for (let r = 0; r < B; r++) {
    const label = labels[r]!;
    if (!Number.isInteger(label) || label < 0 || label >= classes) {
      throw new InvalidArgumentError(`labels[${r}]`, `an integer in 0..${classes - 1}`, String(label));
    }
    let max = -Infinity;
    let arg = 0;
    for (let c = 0; c < classes; c++) {
      const v = logits[r * classes + c]!;
      if (v > max) {
        max = v;
        arg = c;
      }
    }
    // Everything relative to the max: max + log z rounds back to max once |max| ≫ log z (1e16 and
    // two equal logits gave a loss of 0 and an unnormalised softmax).
    let z = 0;
    for (let c = 0; c < classes; c++) z += Math.exp(logits[r * classes + c]! - max);
    loss += Math.log(z) + (max - logits[r * classes + label]!);
    for (let c = 0; c < classes; c++) {
      const p = Math.exp(logits[r * classes + c]! - max) / z;
      d[r * classes + c] = (p - (c === label ? 1 : 0)) / B;
    }
    if (arg === label) correct++;
  }
  return { loss: loss / B, dLogits: d, correct };
}
