import { Rng } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, describe, expect, it } from 'vitest';
import type { Direction, RecurrentOp } from '../src/index.js';
import { compare } from './compare.js';
import { type Case, SIZES } from './helpers.js';

/** Padded batches (sequence_lens) against onnxruntime: zeros past each row's length, Y_h/Y_c from its last step. */
const backends = {
  float32: createCpuBackend({ dtype: 'float32' }),
  float64: createCpuBackend({ dtype: 'float64' }),
};
afterAll(async () => {
  for (const b of Object.values(backends)) await b.destroy();
});

const OPS: { op: RecurrentOp; lbr: 0 | 1 }[] = [
  { op: 'GRU', lbr: 0 },
  { op: 'GRU', lbr: 1 },
  { op: 'LSTM', lbr: 0 },
  { op: 'RNN', lbr: 0 },
];
const DIRECTIONS: Direction[] = ['forward', 'reverse', 'bidirectional'];

describe('sequence_lens against onnxruntime', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const { op, lbr } of OPS) {
      for (const direction of DIRECTIONS) {
        for (const layout of [0, 1] as const) {
          const label = `${dtype} ${op}${op === 'GRU' ? ` lbr=${lbr}` : ''} ${direction} layout=${layout}`;
          it(`${label}: lengths [T, 1, T − 4]`, async () => {
            const c: Case = { op, lbr, direction, layout, initial: true };
            const e = await compare(backends[dtype], c, { lens: [SIZES.T, 1, SIZES.T - 4], run: { dtype } });
            expect(e).toBeLessThan(1e-5);
          });
        }
      }
      it(`${dtype} ${op}${op === 'GRU' ? ` lbr=${lbr}` : ''}: an empty row, random lengths, T = 200, peepholes/activations`, async () => {
        const rng = new Rng(5);
        const T = 200;
        const lens = [0, ...Array.from({ length: SIZES.B - 1 }, () => 1 + Math.floor(rng.uniform() * T))];
        const c: Case = { op, lbr, direction: 'bidirectional', layout: 0, initial: true };
        const e = await compare(backends[dtype], c, {
          lens,
          T,
          scale: 0.6,
          peephole: op === 'LSTM',
          spec: op === 'RNN' ? { activations: ['Softsign', 'Elu'] } : {},
          run: { dtype },
        });
        expect(e).toBeLessThan(1e-5);
      });
    }
  }
});
