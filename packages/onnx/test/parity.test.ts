import type { DeerStats } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildRecurrentModel,
  type Direction,
  loadOnnxModel,
  type OnnxTensor,
  ortReference,
  randomRecurrentWeights,
  runOnnxModel,
} from '../src/index.js';
import { type Case, maxAbsDiff, randomInputs, SIZES, toLayout0, toLayout1 } from './helpers.js';

const TOL = 1e-5;
const backend = createCpuBackend({ dtype: 'float32' });
const worst: Record<string, number> = {};

afterAll(async () => {
  console.log(`max |DEER − onnxruntime| per op: ${JSON.stringify(worst)}`);
  await backend.destroy();
});

function record(label: string, e: number): void {
  worst[label] = Math.max(worst[label] ?? 0, e);
}

const variants: { op: Case['op']; lbr: 0 | 1 }[] = [
  { op: 'GRU', lbr: 0 },
  { op: 'GRU', lbr: 1 },
  { op: 'LSTM', lbr: 0 },
  { op: 'RNN', lbr: 0 },
];
const directions: Direction[] = ['forward', 'reverse', 'bidirectional'];
const cases: Case[] = variants.flatMap(({ op, lbr }) =>
  directions.flatMap((direction) =>
    ([0, 1] as const).flatMap((layout) =>
      [false, true].map((initial) => ({ op, lbr, direction, layout, initial })),
    ),
  ),
);

/** DEER on the model vs onnxruntime on its layout-0 twin; returns the largest difference over outputs. */
async function compare(
  c: Case,
  extra: { clip?: number; weightsAsInputs?: boolean; seed?: number } = {},
): Promise<number> {
  const { m, n } = SIZES;
  const seed = extra.seed ?? 7;
  const weights = randomRecurrentWeights({
    op: c.op,
    inputSize: m,
    hiddenSize: n,
    direction: c.direction,
    seed,
    scale: 1,
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
  };
  const inputs = randomInputs(c, seed + 1);
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
    { ...inputs, ...weightInputs },
    { onSolve: ({ stats }) => solves.push(stats) },
  );
  expect(solves).toHaveLength(c.direction === 'bidirectional' ? 2 : 1);
  for (const st of solves) expect(st.converged && !st.fellBack).toBe(true);
  expect(backend.liveTensors()).toBe(live);
  const ref0 = buildRecurrentModel({ ...spec, layout: 0 });
  const refIn = c.layout === 0 ? inputs : toLayout0(inputs);
  const ref = await ortReference(ref0, { ...refIn, ...weightInputs });
  const expected = c.layout === 0 ? ref : toLayout1(ref);
  const names = c.op === 'LSTM' ? ['Y', 'Y_h', 'Y_c'] : ['Y', 'Y_h'];
  expect(Object.keys(got).sort()).toEqual([...names].sort());
  return Math.max(...names.map((k) => maxAbsDiff(got[k]!, expected[k]!)));
}

const label = (c: Case) => (c.op === 'GRU' ? `GRU(lbr=${c.lbr})` : c.op);

describe('DEER (cpu float32) equals onnxruntime', () => {
  it.each(cases)('$op lbr=$lbr $direction layout=$layout initial=$initial', async (c) => {
    const e = await compare(c);
    record(label(c), e);
    expect(e).toBeLessThan(TOL);
  });

  it.each(variants)('$op lbr=$lbr with clip 0.4 (bidirectional)', async ({ op, lbr }) => {
    const c: Case = { op, lbr, direction: 'bidirectional', layout: 0, initial: true };
    const e = await compare(c, { clip: 0.4 });
    record(`${label(c)}+clip`, e);
    expect(e).toBeLessThan(TOL);
  });

  it.each(variants)('$op lbr=$lbr with weights as run-time inputs', async ({ op, lbr }) => {
    const e = await compare(
      { op, lbr, direction: 'reverse', layout: 1, initial: true },
      { weightsAsInputs: true, seed: 3 },
    );
    expect(e).toBeLessThan(TOL);
  });
});
