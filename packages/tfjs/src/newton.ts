import type { NewtonUpdateOptions } from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/**
 * One Newton update: the sanitized iterate y (raw.shape) and, as one small tensor for one read,
 * per row max scaled |Δ| (B), replaced (B), clipped (B), settled steps (B), then max |Δ|.
 *
 * With `probe` (engines whose reads are synchronous and cheap), one read of max |r| and Σ|r| first
 * tells whether r is finite and inside the clip everywhere, the usual case: then nothing is
 * replaced or clipped and the update takes about half the full-size passes.
 */
export function newtonStep(tf: Tf, raw: T, old: T, o: NewtonUpdateOptions, probe: boolean): [T, T] {
  const B = raw.shape[0] ?? 1;
  const [r, a] = tf.tidy(() => {
    const prev = tf.reshape(old, [B, -1]);
    const rr = o.delta ? tf.add(prev, tf.reshape(raw, [B, -1])) : tf.reshape(raw, [B, -1]);
    return [rr, tf.abs(rr)];
  });
  try {
    if (probe && quiet(tf, a, o.clip)) return tf.tidy(() => quietStep(tf, r, a, old, raw.shape, o));
    return tf.tidy(() => fullStep(tf, r, old, raw.shape, o));
  } finally {
    r.dispose();
    a.dispose();
  }
}

/** Whether every |r| (given as a) is finite and below the clip. */
function quiet(tf: Tf, a: T, clip: number): boolean {
  // Σ|r| is NaN or ∞ when any entry is (max alone may skip NaN on some engines).
  const p = tf.tidy(() => tf.stack([tf.max(a), tf.sum(a)]));
  const [max, sum] = p.dataSync();
  p.dispose();
  return max! < clip && Number.isFinite(sum!);
}

/** 1 on the entries of active rows, as a [B, K] bool tensor. */
function rowMask(tf: Tf, active: Uint8Array, B: number, K: number): T {
  const m = new Uint8Array(B * K);
  for (let b = 0; b < B; b++) if (active[b]) m.fill(1, b * K, (b + 1) * K);
  return tf.tensor2d(m, [B, K], 'bool');
}

/**
 * Per row, the first time step with an unsettled entry (T if none); held rows 0. `unsettled` is
 * [B, T·n] bool.
 */
function settledSteps(tf: Tf, unsettled: T, B: number, steps: number, active?: Uint8Array): T {
  const perStep = tf.cast(tf.any(tf.reshape(unsettled, [B, steps, -1]), 2), 'float32');
  // t where unsettled, T elsewhere: 1·(t − T) + T or 0·(t − T) + T, a [steps] row broadcast.
  const firsts = tf.min(tf.add(tf.mul(perStep, tf.range(-steps, 0, 1, 'float32')), tf.scalar(steps)), 1);
  return active ? tf.mul(firsts, tf.tensor1d(Float32Array.from(active))) : firsts;
}

const allActive = (active?: Uint8Array) => !active || active.every((v) => v === 1);

/** r finite and |r| < clip everywhere: y = r on active rows, nothing replaced or clipped. */
function quietStep(tf: Tf, r: T, a: T, old: T, shape: readonly number[], o: NewtonUpdateOptions): [T, T] {
  const [B, K] = r.shape as [number, number];
  const prev = tf.reshape(old, [B, K]);
  const active = allActive(o.active) ? undefined : o.active;
  const y = active ? tf.where(rowMask(tf, active, B, K), r, prev) : tf.clone(r);
  const d = tf.abs(tf.sub(y, prev));
  // |y| = |r| wherever d can be nonzero (held rows have d = 0 and scale to 0 either way).
  const q = tf.div(d, tf.add(tf.scalar(o.atol), tf.mul(tf.scalar(o.rtol), a)));
  // 0/0 (atol = 0 at y = 0) counts as converged, as on the CPU reference; with atol > 0, 0/den = 0.
  const scaled = o.atol > 0 ? q : tf.where(tf.equal(d, 0), tf.zerosLike(d), q);
  const steps = shape[1] ?? 1;
  const stats = tf.concat([
    tf.max(scaled, 1),
    tf.zeros([2 * B]),
    settledSteps(tf, tf.greater(scaled, tf.scalar(1)), B, steps, active),
    tf.reshape(tf.max(d), [1]),
  ]);
  return [tf.reshape(y, [...shape]), stats];
}

/** The general update: NaN/Inf replaced by 0, |r| ≥ clip clipped, both counted. */
function fullStep(tf: Tf, r: T, old: T, shape: readonly number[], o: NewtonUpdateOptions): [T, T] {
  const [B, K] = r.shape as [number, number];
  const prev = tf.reshape(old, [B, K]);
  const active = allActive(o.active) ? undefined : o.active;
  const act = active ? rowMask(tf, active, B, K) : null;
  const finite = tf.isFinite(r);
  const over = tf.logicalAnd(finite, tf.greaterEqual(tf.abs(r), tf.scalar(o.clip)));
  let y = tf.where(finite, tf.clipByValue(r, -o.clip, o.clip), tf.zerosLike(r));
  if (act) y = tf.where(act, y, prev);
  const d = tf.abs(tf.sub(y, prev));
  const den = tf.add(tf.scalar(o.atol), tf.mul(tf.scalar(o.rtol), tf.abs(y)));
  // 0/0 (atol = 0 at y = 0) counts as converged, as on the CPU reference.
  const scaled = tf.where(tf.equal(d, 0), tf.zerosLike(d), tf.div(d, den));
  const count = (flags: T) => tf.sum(tf.cast(act ? tf.logicalAnd(flags, act) : flags, 'float32'), 1);
  const unsettled = tf.logicalOr(tf.logicalOr(tf.logicalNot(finite), over), tf.greater(scaled, tf.scalar(1)));
  const stats = tf.concat([
    tf.max(scaled, 1),
    count(tf.logicalNot(finite)),
    count(over),
    settledSteps(tf, unsettled, B, shape[1] ?? 1, active),
    tf.reshape(tf.max(d), [1]),
  ]);
  return [tf.reshape(y, [...shape]), stats];
}
