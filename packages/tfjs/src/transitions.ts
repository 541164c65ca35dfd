import type * as tfc from '@tensorflow/tfjs-core';
import type { Tf } from './tensor.js';

/**
 * capTransitions as tfjs ops (engines whose data is not in host memory): each (b, t)'s blocks of
 * a [B, T, ...] tensor with rows of s entries, scaled by caps[b] / their largest absolute row sum
 * where that passes caps[b] ≥ 0. Call inside tf.tidy.
 */
export function capTransitionsOps(tf: Tf, a: tfc.Tensor, s: number, caps: ArrayLike<number>): tfc.Tensor {
  const [B, T] = a.shape as [number, number];
  const rows = tf.reshape(a, [B, T, -1, s]);
  const norm = tf.max(tf.sum(tf.abs(rows), 3), 2);
  const cap = tf.tensor2d(Float32Array.from(caps), [B, 1]);
  const scale = tf.where(
    tf.logicalAnd(tf.greaterEqual(cap, 0), tf.greater(norm, cap)),
    tf.div(cap, norm),
    tf.onesLike(norm),
  );
  return tf.reshape(tf.mul(rows, tf.reshape(scale, [B, T, 1, 1])), a.shape);
}
