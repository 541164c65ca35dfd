import { createCpuBackend } from '@deerjs/cpu';
import { afterAll, describe, expect, it } from 'vitest';
import type { Direction } from '../src/index.js';
import { compare } from './compare.js';
import type { Case } from './helpers.js';

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

const label = (c: Case) => (c.op === 'GRU' ? `GRU(lbr=${c.lbr})` : c.op);

describe('DEER (cpu float32) equals onnxruntime', () => {
  it.each(cases)('$op lbr=$lbr $direction layout=$layout initial=$initial', async (c) => {
    const e = await compare(backend, c);
    record(label(c), e);
    expect(e).toBeLessThan(TOL);
  });

  it.each(variants)('$op lbr=$lbr with clip 0.4 (bidirectional)', async ({ op, lbr }) => {
    const c: Case = { op, lbr, direction: 'bidirectional', layout: 0, initial: true };
    const e = await compare(backend, c, { clip: 0.4 });
    record(`${label(c)}+clip`, e);
    expect(e).toBeLessThan(TOL);
  });

  it.each(variants)('$op lbr=$lbr with weights as run-time inputs', async ({ op, lbr }) => {
    const e = await compare(
      backend,
      { op, lbr, direction: 'reverse', layout: 1, initial: true },
      { weightsAsInputs: true, seed: 3 },
    );
    expect(e).toBeLessThan(TOL);
  });
});
