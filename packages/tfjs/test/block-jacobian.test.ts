import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { type Cell, cells, defineCell, lang, Rng, ShapeError, type StepProgram } from '@deerjs/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { compileStep } from '../src/step.js';

/**
 * The block-structured Jacobian evaluation against the dense one (n×n per element, blocks gathered):
 * the same entries, on seeded random states, for every structure a cell can be asked for.
 */

/** A cell whose Jacobian has every kind of term: sums (size-1 factors), row slices, concatenation. */
function mixedCell(): Cell {
  const { add, concat, constant, matvec, mul, slice, sum, tanh } = lang;
  return defineCell(
    {
      name: 'mixed',
      state: 4,
      input: 2,
      params: { R: [4, 4], W: [4, 2], b: [4] },
    },
    (h, x, p) => {
      const a = tanh(add(add(matvec(p.R!, h), matvec(p.W!, x)), p.b!));
      const s = sum(mul(a, h));
      return concat(mul(slice(a, 0, 2), s), add(slice(a, 2, 2), mul(slice(h, 0, 2), constant(0.5))));
    },
  );
}

const CASES: { name: string; cell: Cell; blocks: number[] }[] = [
  { name: 'multi-head GRU n=8, 2 heads', cell: cells.gru({ inputSize: 3, hiddenSize: 8, heads: 2 }), blocks: [1, 2, 4, 8] },
  { name: 'multi-head GRU n=32, 4 heads', cell: cells.gru({ inputSize: 1, hiddenSize: 32, heads: 4 }), blocks: [1, 8] },
  { name: 'GRU n=4', cell: cells.gru({ inputSize: 2, hiddenSize: 4 }), blocks: [1, 2, 4] },
  { name: 'GRU lbr=0 n=4', cell: cells.gru({ inputSize: 2, hiddenSize: 4, linearBeforeReset: 0 }), blocks: [1, 2, 4] },
  { name: 'LSTM n=2·3', cell: cells.lstm({ inputSize: 2, hiddenSize: 3 }), blocks: [1, 2, 3, 6] },
  { name: 'Elman n=4', cell: cells.elman({ inputSize: 2, hiddenSize: 4 }), blocks: [1, 2, 4] },
  { name: 'MLP n=4 (matmul of a per-element term)', cell: cells.mlp({ stateSize: 4, inputSize: 1, hidden: [5] }), blocks: [1, 2, 4] },
  { name: 'mixed: sum, slices, concat', cell: mixedCell(), blocks: [1, 2, 4] },
];

const B = 3;
const T = 5;

function evaluate(program: StepProgram, cell: Cell, seed: number, dense: boolean, cutByGather: boolean, hostLoops = false) {
  const rng = new Rng(seed);
  const R = B * T;
  const n = cell.stateSize;
  const params = cell.init({ seed: seed + 1 });
  const f32 = (k: number) => Float32Array.from(rng.normalArray(k));
  return tf.tidy(() => {
    const step = compileStep(tf, program, { cutByGather, denseJacobian: dense, hostLoops });
    const { outputs, jacobian } = step.run({
      rows: R,
      state: tf.tensor2d(f32(R * n), [R, n]),
      input: tf.tensor2d(f32(R * cell.inputSize), [R, cell.inputSize]),
      cotangent: tf.tensor2d(f32(R * n), [R, n]),
      params: Object.fromEntries(Object.entries(params).map(([k, v]) => [k, tf.tensor1d(Float32Array.from(v))])),
    });
    return {
      J: jacobian!.dataSync().slice(),
      shape: jacobian!.shape,
      outputs: outputs.map((o) => o.dataSync().slice()),
    };
  });
}

function maxDiff(a: Float32Array | Int32Array | Uint8Array, b: Float32Array | Int32Array | Uint8Array) {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return { m, scale };
}

for (const engine of ['cpu', 'wasm'] as const) {
  describe(`block-structured Jacobian on tfjs-${engine}`, () => {
    beforeAll(async () => {
      await tf.setBackend(engine);
      await tf.ready();
    });

    for (const { name, cell, blocks } of CASES) {
      for (const s of blocks) {
        it(`${name}, block ${s}: same blocks as the dense evaluation`, () => {
          const before = tf.memory().numTensors;
          for (const program of [cell.residualProgram(s), cell.linearizeProgram(s)]) {
            for (const cutByGather of [true, false]) {
              const ref = evaluate(program, cell, 7 * s + 1, true, cutByGather);
              const got = evaluate(program, cell, 7 * s + 1, false, cutByGather);
              expect(got.shape).toEqual([B * T, cell.stateSize / s, s, s]);
              expect(ref.shape).toEqual(got.shape);
              const { m, scale } = maxDiff(got.J, ref.J);
              expect(scale).toBeGreaterThan(0);
              expect(m).toBeLessThanOrEqual(1e-6 * Math.max(1, scale));
              got.outputs.forEach((o, k) => {
                expect(maxDiff(o, ref.outputs[k]!).m).toBe(0);
              });
              if (engine === 'cpu') {
                // Host loops (elementwise ops, blocks assembled): the tfjs ops' values, bit for bit.
                const host = evaluate(program, cell, 7 * s + 1, false, cutByGather, true);
                expect(Array.from(host.J)).toEqual(Array.from(got.J));
                host.outputs.forEach((o, k) => {
                  expect(Array.from(o)).toEqual(Array.from(got.outputs[k]!));
                });
              }
            }
          }
          expect(tf.memory().numTensors).toBe(before);
        });
      }
    }
  });
}

describe('gather indices kept per program', () => {
  // A column-sparse product (R·select, the Jacobian of R·h) gathers R's entries into place, with
  // one index past R's end for an appended 0. The indices are kept per expression, so they must
  // not depend on the tensor of one call: a wrong-sized R is refused, not read with the last
  // call's indices (its extra entry read where the 0 belongs).
  it('follow the declared param layout, and a param of another size is a ShapeError', async () => {
    await tf.setBackend('cpu');
    const cell = cells.elman({ inputSize: 2, hiddenSize: 4 });
    const program = cell.linearizeProgram(4);
    const params = cell.init({ seed: 3 });
    const R = B * T;
    const n = cell.stateSize;
    const rng = new Rng(5);
    const state = Float32Array.from(rng.normalArray(R * n));
    const input = Float32Array.from(rng.normalArray(R * 2));
    const step = compileStep(tf, program, { cutByGather: true, hostLoops: true });
    const run = (values: Record<string, ArrayLike<number>>) =>
      tf.tidy(() => {
        const { jacobian } = step.run({
          rows: R,
          state: tf.tensor2d(state, [R, n]),
          input: tf.tensor2d(input, [R, 2]),
          params: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, tf.tensor1d(Float32Array.from(v))])),
        });
        return jacobian!.dataSync().slice();
      });
    const before = tf.memory().numTensors;
    const ref = run(params);
    expect(run(params)).toEqual(ref);
    expect(() => run({ ...params, R: [...params.R!, 1000] })).toThrow(ShapeError);
    expect(run(params)).toEqual(ref);
    expect(tf.memory().numTensors).toBe(before);
  });
});
