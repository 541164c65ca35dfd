import type { Backend, DeerStats } from '@deerjs/core';
import { expect } from 'vitest';
import {
  buildRecurrentModel,
  loadOnnxModel,
  type OnnxTensor,
  ortReference,
  type RecurrentModelSpec,
  type RecurrentRunOptions,
  randomRecurrentWeights,
  runOnnxModel,
} from '../src/index.js';
import { type Case, maxAbsDiff, randomInputs, SIZES, toLayout0, toLayout1 } from './helpers.js';

/** DEER on the model vs onnxruntime on its layout-0 twin; returns the largest difference over outputs. */
export async function compare(
  backend: Backend,
  c: Case,
  extra: {
    clip?: number;
    weightsAsInputs?: boolean;
    seed?: number;
    /** Extra model attributes (activations, α/β, input_forget). */
    spec?: Partial<RecurrentModelSpec>;
    /** LSTM: peephole weights P. */
    peephole?: boolean;
    /** Sequence length (default SIZES.T). */
    T?: number;
    /** Weight scale (default 1). */
    scale?: number;
    /** deer options of the run (dtype, …). */
    run?: RecurrentRunOptions;
    /** Divide the difference by max(1, max |onnxruntime output|) (for unbounded activations). */
    relative?: boolean;
    /** sequence_lens (B entries): a padded batch. */
    lens?: readonly number[];
  } = {},
): Promise<number> {
  const { m, n } = SIZES;
  const seed = extra.seed ?? 7;
  const weights = randomRecurrentWeights({
    op: c.op,
    inputSize: m,
    hiddenSize: n,
    direction: c.direction,
    seed,
    scale: extra.scale ?? 1,
    peephole: extra.peephole ?? false,
  });
  const spec = {
    op: c.op,
    inputSize: m,
    hiddenSize: n,
    direction: c.direction,
    linearBeforeReset: c.lbr,
    clip: extra.clip,
    weights,
    initialState: c.initial,
    weightsAsInputs: extra.weightsAsInputs,
    ...(extra.lens ? { sequenceLens: true } : {}),
    ...extra.spec,
  };
  const lensInput: Record<string, OnnxTensor> = extra.lens
    ? { sequence_lens: { data: Int32Array.from(extra.lens), dims: [extra.lens.length] } }
    : {};
  const inputs = randomInputs(c, seed + 1, extra.T);
  const weightInputs: Record<string, OnnxTensor> = {};
  if (extra.weightsAsInputs) {
    const nd = c.direction === 'bidirectional' ? 2 : 1;
    const k = { GRU: 3, LSTM: 4, RNN: 1 }[c.op];
    weightInputs.W = { data: weights.W, dims: [nd, k * n, m] };
    weightInputs.R = { data: weights.R, dims: [nd, k * n, n] };
    weightInputs.B = { data: weights.B, dims: [nd, 2 * k * n] };
  }
  const model = loadOnnxModel(buildRecurrentModel({ ...spec, layout: c.layout }));
  const live = backend.liveTensors();
  const solves: DeerStats[] = [];
  const got = await runOnnxModel(
    model,
    backend,
    { ...inputs, ...weightInputs, ...lensInput },
    { ...extra.run, onSolve: ({ stats }) => solves.push(stats) },
  );
  expect(solves).toHaveLength(c.direction === 'bidirectional' ? 2 : 1);
  for (const st of solves) expect(st.converged && !st.fellBack, JSON.stringify(st)).toBe(true);
  expect(backend.liveTensors()).toBe(live);
  const ref0 = buildRecurrentModel({ ...spec, layout: 0 });
  const refIn = c.layout === 0 ? inputs : toLayout0(inputs);
  const ref = await ortReference(ref0, { ...refIn, ...weightInputs, ...lensInput });
  const expected = c.layout === 0 ? ref : toLayout1(ref);
  const names = c.op === 'LSTM' ? ['Y', 'Y_h', 'Y_c'] : ['Y', 'Y_h'];
  expect(Object.keys(got).sort()).toEqual([...names].sort());
  const err = Math.max(...names.map((k) => maxAbsDiff(got[k]!, expected[k]!)));
  if (!extra.relative) return err;
  let scale = 1;
  for (const k of names) for (const v of expected[k]!.data) scale = Math.max(scale, Math.abs(Number(v)));
  return err / scale;
}
