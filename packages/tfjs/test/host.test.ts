import '@tensorflow/tfjs-backend-cpu';
import { type BinaryFn, Rng, type UnaryFn } from '@deerjs/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { binaryVec, type Vec } from '../src/broadcast.js';
import { hostMatvec, hostOuterSum, hostUnary } from '../src/host.js';

/**
 * The host loops of elementwise ops (tfjs cpu) give tfjs cpu's kernels' values bit for bit, for
 * every operand layout a step vector has, special values included.
 */
const rows = 5;
const size = 6;

function values(rng: Rng, k: number): Float32Array {
  const v = Float32Array.from(rng.normalArray(k), (x) => x * 3);
  // Zeros of both signs, infinities, NaN, and a tiny value among the entries.
  const special = [0, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, 1e-30];
  special.forEach((s, i) => {
    if (2 * i + 1 < k) v[2 * i + 1] = s;
  });
  return v;
}

/** A step vector of a layout: [rows, size], [size], [rows, 1] or a size-1 constant. */
function layout(kind: string, rng: Rng): Vec {
  switch (kind) {
    case 'rows×size':
      return { t: tf.tensor2d(values(rng, rows * size), [rows, size]), perElement: true, size };
    case 'size':
      return { t: tf.tensor1d(values(rng, size)), perElement: false, size };
    case 'rows×1':
      return { t: tf.tensor2d(values(rng, rows), [rows, 1]), perElement: true, size: 1 };
    default:
      return { t: tf.tensor1d([-1.75]), perElement: false, size: 1 };
  }
}

const BINARY: Record<BinaryFn, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor> = {
  add: (a, b) => tf.add(a, b),
  sub: (a, b) => tf.sub(a, b),
  mul: (a, b) => tf.mul(a, b),
  div: (a, b) => tf.div(a, b),
  min: (a, b) => tf.minimum(a, b),
  max: (a, b) => tf.maximum(a, b),
};

// Every NaN as one: a NaN's sign bit after JS arithmetic depends on V8's tier (-NaN came out of
// optimised code and +NaN out of the interpreter), and nothing in JS can observe it but a typed array.
const bits = (t: tf.Tensor) =>
  Array.from(new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer), (b) =>
    (b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0 ? 0x7fc00000 : b,
  );

describe('host loops of elementwise ops', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  const kinds = ['rows×size', 'size', 'rows×1', 'scalar'];
  const fns: BinaryFn[] = ['add', 'sub', 'mul', 'div', 'min', 'max'];
  for (const fn of fns) {
    it(`${fn}: the tfjs op's bits for every pair of layouts`, () => {
      const before = tf.memory().numTensors;
      let seed = 1;
      for (const ka of kinds) {
        for (const kb of kinds) {
          tf.tidy(() => {
            const rng = new Rng(seed++);
            const a = layout(ka, rng);
            const b = layout(kb, rng);
            // tfjs's own kernel, broadcasting as it does (the op path may take AddN for add).
            const ref = BINARY[fn](a.t, b.t);
            const got = binaryVec(tf, fn, a, b, rows, true);
            expect(got.t.shape).toEqual(ref.shape);
            expect(got.perElement).toBe(a.perElement || b.perElement);
            expect(bits(got.t)).toEqual(bits(ref));
          });
        }
      }
      expect(tf.memory().numTensors).toBe(before);
    });
  }
  const unary: Record<string, (x: tf.Tensor) => tf.Tensor> = {
    neg: (x) => tf.neg(x),
    sigmoid: (x) => tf.sigmoid(x),
    tanh: (x) => tf.tanh(x),
    exp: (x) => tf.exp(x),
    log: (x) => tf.log(x),
    sqrt: (x) => tf.sqrt(x),
    square: (x) => tf.square(x),
    abs: (x) => tf.abs(x),
  };
  for (const [fn, op] of Object.entries(unary)) {
    it(`${fn}: the tfjs op's bits`, () => {
      tf.tidy(() => {
        const x = tf.tensor2d(values(new Rng(fn.length), rows * size), [rows, size]);
        const got = hostUnary(tf, fn as UnaryFn, x)!;
        expect(got.shape).toEqual([rows, size]);
        expect(bits(got)).toEqual(bits(op(x)));
      });
    });
  }
  for (const { blocks, rows: pr, cols: pc } of [
    { blocks: 1, rows: 7, cols: 100 },
    { blocks: 1, rows: 100, cols: 7 },
    { blocks: 3, rows: 4, cols: 5 },
    { blocks: 2, rows: 60, cols: 50 },
  ]) {
    for (const transpose of [false, true]) {
      it(`matvec, ${blocks} block(s) of ${pr}×${pc}${transpose ? ' transposed' : ''}: tfjs's MatMul bits`, () => {
        tf.tidy(() => {
          const rng = new Rng(blocks * pr + pc);
          const inner = transpose ? pr : pc;
          const out = transpose ? pc : pr;
          const R = 4;
          const x = tf.tensor2d(Float32Array.from(rng.normalArray(R * blocks * inner)), [R, blocks * inner]);
          const W = tf.tensor3d(Float32Array.from(rng.normalArray(blocks * pr * pc)), [blocks, pr, pc]);
          const ref = tf.reshape(tf.matMul(tf.reshape(x, [R, blocks, 1, inner]), W, false, !transpose), [R, blocks * out]);
          const got = hostMatvec(tf, x, R, W, blocks, pr, pc, transpose);
          expect(got.shape).toEqual([R, blocks * out]);
          expect(bits(got)).toEqual(bits(ref));
        });
      });
    }
  }
  for (const { E, L, R, blocks } of [
    { E: 130, L: 6, R: 4, blocks: 1 },
    { E: 97, L: 8, R: 12, blocks: 4 },
    { E: 20, L: 3, R: 5, blocks: 1 },
  ]) {
    it(`outer sum, E=${E} ${L}×${R} in ${blocks} block(s): tfjs's MatMul bits`, () => {
      tf.tidy(() => {
        const rng = new Rng(E + L);
        const l = tf.tensor2d(Float32Array.from(rng.normalArray(E * L)), [E, L]);
        const r = tf.tensor2d(Float32Array.from(rng.normalArray(E * R)), [E, R]);
        const lb = tf.transpose(tf.reshape(l, [E, blocks, L / blocks]), [1, 0, 2]);
        const rb = tf.transpose(tf.reshape(r, [E, blocks, R / blocks]), [1, 0, 2]);
        const ref = tf.reshape(tf.matMul(lb, rb, true, false), [(L * R) / blocks]);
        expect(bits(hostOuterSum(tf, l, r, E, L, R, blocks))).toEqual(bits(ref));
      });
    });
  }
  it('leaves ops without a loop to tfjs', () => {
    tf.tidy(() => {
      expect(hostUnary(tf, 'softplus', tf.zeros([2, 2]))).toBeNull();
    });
  });
});
