import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { buildRecurrentModel, type Direction, loadOnnxModel, ortReference, type RecurrentOp, runOnnxModel } from '../src/index.js';
import { compare } from './compare.js';
import type { Case } from './helpers.js';

/**
 * Every activation ONNX's recurrent ops define, with activation_alpha/beta, LSTM peepholes and
 * input_forget, against onnxruntime (float32 models) with DEER on the cpu backend in float32 and
 * float64.
 */
const TOL = 1e-5;
const backends = {
  float32: createCpuBackend({ dtype: 'float32' }),
  float64: createCpuBackend({ dtype: 'float64' }),
};
const worst: Record<string, number> = {};

afterAll(async () => {
  console.log(`max |DEER − onnxruntime| per case group: ${JSON.stringify(worst)}`);
  for (const b of Object.values(backends)) await b.destroy();
});

const COUNT: Record<RecurrentOp, number> = { GRU: 2, LSTM: 3, RNN: 1 };

/** Each activation with α/β it reads (values away from the ONNX defaults, so they matter). */
const ACTIVATIONS: { name: string; alpha?: number; beta?: number }[] = [
  { name: 'Relu' },
  { name: 'LeakyRelu', alpha: 0.3 },
  { name: 'ThresholdedRelu', alpha: 0.2 },
  { name: 'ScaledTanh', alpha: 1.4, beta: 0.6 },
  { name: 'HardSigmoid', alpha: 0.3, beta: 0.45 },
  { name: 'Elu', alpha: 0.7 },
  { name: 'Softsign' },
  { name: 'Softplus' },
  { name: 'Affine', alpha: 0.8, beta: 0.1 },
  { name: 'Sigmoid' },
  { name: 'Tanh' },
];

const OPS: { op: RecurrentOp; lbr: 0 | 1 }[] = [
  { op: 'GRU', lbr: 0 },
  { op: 'GRU', lbr: 1 },
  { op: 'LSTM', lbr: 0 },
  { op: 'RNN', lbr: 0 },
];

/** The op's activation list with `act` in slot `slot` and the defaults elsewhere (one direction). */
function withActivation(op: RecurrentOp, act: (typeof ACTIVATIONS)[number], slot: number) {
  const defaults = { GRU: ['Sigmoid', 'Tanh'], LSTM: ['Sigmoid', 'Tanh', 'Tanh'], RNN: ['Tanh'] }[op];
  const names = defaults.map((d, i) => (i === slot ? act.name : d));
  return {
    names,
    alpha: act.alpha === undefined ? [] : [act.alpha],
    beta: act.beta === undefined ? [] : [act.beta],
  };
}

describe('ONNX activations against onnxruntime', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const { op, lbr } of OPS) {
      const label = op === 'GRU' ? `GRU(lbr=${lbr})` : op;
      for (const act of ACTIVATIONS) {
        for (let slot = 0; slot < COUNT[op]; slot++) {
          it(`${dtype} ${label} activations[${slot}] = ${act.name}`, async () => {
            const { names, alpha, beta } = withActivation(op, act, slot);
            const c: Case = { op, lbr, direction: 'forward', layout: 0, initial: true };
            const e = await compare(backends[dtype], c, {
              spec: {
                activations: names,
                ...(alpha.length > 0 ? { activationAlpha: alpha } : {}),
                ...(beta.length > 0 ? { activationBeta: beta } : {}),
              },
              run: { dtype },
              seed: 11 + slot,
              scale: 0.5,
              relative: true,
            });
            worst[`${dtype} ${label}`] = Math.max(worst[`${dtype} ${label}`] ?? 0, e);
            expect(e).toBeLessThan(TOL);
          });
        }
      }

      it(`${dtype} ${label} bidirectional, different activations per direction, α/β consumed in order, clip`, async () => {
        const k = COUNT[op];
        const fwd = ['LeakyRelu', 'HardSigmoid', 'Elu'].slice(0, k);
        const bwd = ['ScaledTanh', 'Affine', 'Softsign'].slice(0, k);
        const c: Case = { op, lbr, direction: 'bidirectional', layout: 1, initial: true };
        const e = await compare(backends[dtype], c, {
          spec: {
            activations: [...fwd, ...bwd],
            activationAlpha: [0.2, 0.25, 0.9, 1.1, 0.5],
            activationBeta: [0.4, 0.6],
          },
          clip: 2.5,
          run: { dtype },
          seed: 5,
          scale: 0.5,
          relative: true,
        });
        expect(e).toBeLessThan(TOL);
      });

      it(`${dtype} ${label} defaults of α/β where activation_alpha/beta run out`, async () => {
        const k = COUNT[op];
        const names = ['LeakyRelu', 'HardSigmoid', 'Elu'].slice(0, k);
        const c: Case = { op, lbr, direction: 'reverse', layout: 0, initial: false };
        const e = await compare(backends[dtype], c, {
          spec: { activations: names },
          run: { dtype },
          seed: 9,
          scale: 0.5,
          relative: true,
        });
        expect(e).toBeLessThan(TOL);
      });

      it(`${dtype} ${label} random weights, T = 300, non-default activations`, async () => {
        const k = COUNT[op];
        const names = ['HardSigmoid', 'Softsign', 'ScaledTanh'].slice(0, k);
        const c: Case = { op, lbr, direction: 'bidirectional' as Direction, layout: 0, initial: true };
        const e = await compare(backends[dtype], c, {
          spec: {
            activations: [...names, ...names],
            activationAlpha: [0.25, 1.2, 0.25, 1.2],
            activationBeta: [0.5, 0.8, 0.5, 0.8],
          },
          run: { dtype },
          seed: 21,
          T: 300,
          scale: 0.4,
          relative: true,
        });
        expect(e).toBeLessThan(TOL);
      });
    }

    for (const direction of ['forward', 'reverse'] as const) {
      it(`${dtype} one-direction RNN listing two activations (the schema's default form): the first runs, as in onnxruntime (${direction})`, async () => {
        for (const [names, alpha] of [
          [['Tanh', 'Tanh'], []],
          [['LeakyRelu', 'Tanh'], [0.3]],
        ] as const) {
          const c: Case = { op: 'RNN', lbr: 0, direction, layout: 0, initial: true };
          const e = await compare(backends[dtype], c, {
            spec: { activations: names, ...(alpha.length > 0 ? { activationAlpha: alpha } : {}) },
            run: { dtype },
            seed: 31,
            scale: 0.5,
            relative: true,
          });
          expect(e).toBeLessThan(TOL);
        }
      });
    }

    for (const direction of ['forward', 'reverse', 'bidirectional'] as const) {
      it(`${dtype} LSTM peepholes (${direction})`, async () => {
        const c: Case = { op: 'LSTM', lbr: 0, direction, layout: 0, initial: true };
        const e = await compare(backends[dtype], c, { peephole: true, run: { dtype }, seed: 31 });
        expect(e).toBeLessThan(TOL);
      });
      it(`${dtype} LSTM input_forget = 1 (${direction})`, async () => {
        const c: Case = { op: 'LSTM', lbr: 0, direction, layout: 1, initial: true };
        const e = await compare(backends[dtype], c, { spec: { inputForget: 1 }, run: { dtype }, seed: 33 });
        expect(e).toBeLessThan(TOL);
      });
    }
    it.each(OPS)(`${dtype} $op lbr=$lbr clip with pre-activations of 1e9 (issue 11)`, async ({ op, lbr }) => {
      const c: Case = { op, lbr, direction: 'bidirectional', layout: 0, initial: true };
      // Weights of ±1e9: every pre-activation is far past the clip, where v − relu(v − c) + relu(−v − c) gave 0.
      const e = await compare(backends[dtype], c, { clip: 0.7, scale: 1e9, run: { dtype }, seed: 41 });
      expect(e).toBeLessThan(TOL);
    });

    it(`${dtype} LSTM peepholes + input_forget + clip + activations, T = 300`, async () => {
      const c: Case = { op: 'LSTM', lbr: 0, direction: 'bidirectional', layout: 0, initial: true };
      const e = await compare(backends[dtype], c, {
        peephole: true,
        clip: 1.5,
        spec: {
          inputForget: 1,
          activations: ['HardSigmoid', 'Softsign', 'Elu', 'Sigmoid', 'Tanh', 'Tanh'],
          activationAlpha: [0.3, 0.8],
          activationBeta: [0.4],
        },
        run: { dtype },
        seed: 35,
        T: 300,
        scale: 0.6,
      });
      expect(e).toBeLessThan(TOL);
    });
  }
});

describe('a gate pre-activation past float32 (onnxruntime clips at ±FLT_MAX where no clip is set)', () => {
  // GRU (Relu, Relu), lbr = 1: z = Relu(1e20 · 1e20) overflows float32, h̃ = Relu(−x) = 0 and
  // h0 = 0, so h = (1 − z)·h̃ + z·h0 = 0 where ∞ · 0 had given NaN. LSTM (Relu, Relu, Tanh): i = ∞, c̃ = 0.
  // RNN (Relu): onnxruntime does not clip there, and h = Relu(1e40) is +∞ in both.
  const cases: { op: RecurrentOp; activations: string[]; W: number[]; want: number }[] = [
    { op: 'GRU', activations: ['Relu', 'Relu'], W: [1e20, 0, -1], want: 0 },
    { op: 'LSTM', activations: ['Relu', 'Relu', 'Tanh'], W: [1e20, 0, 0, -1], want: 0 },
    { op: 'RNN', activations: ['Relu'], W: [1e20], want: Number.POSITIVE_INFINITY },
  ];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const c of cases) {
      it(`${dtype} ${c.op}: onnxruntime's ${c.want}, not NaN`, async () => {
        const spec = {
          op: c.op,
          inputSize: 1,
          hiddenSize: 1,
          linearBeforeReset: 1 as const,
          activations: c.activations,
          weights: { W: c.W, R: c.W.map(() => 0) },
        };
        const x = { X: { data: Float32Array.of(1e20), dims: [1, 1, 1] } };
        const want = await ortReference(buildRecurrentModel(spec), x);
        const got = await runOnnxModel(loadOnnxModel(buildRecurrentModel(spec)), backends[dtype], x, { dtype });
        for (const k of Object.keys(want)) {
          expect(Array.from(want[k]!.data, Number), `onnxruntime ${k}`).toEqual([c.want]);
          expect(Array.from(got[k]!.data, Number), k).toEqual([c.want]);
        }
      });
    }
  }
});
