import { join } from 'node:path';
import { CheckpointError } from '@deerjs/nn';
import { describe, expect, it } from 'vitest';
import { trainHnn } from '../src/hnn/train-hnn.js';
import { type HnnEvalRecord, type HnnStepRecord, readMetrics, type StepRecord } from '../src/metrics.js';
import { runLength } from '../src/run-setup.js';
import { train } from '../src/train.js';
import { configOf, quiet, tempDir } from './helpers.js';

const stepsOf = (dir: string) =>
  readMetrics<StepRecord | HnnStepRecord | HnnEvalRecord>(join(dir, 'metrics.jsonl'))
    .filter((r) => r.type === 'step')
    .map((r) => r.step);

describe('--steps alone runs that many steps, over as many epochs as needed', () => {
  it('runLength: --steps without --epochs is not capped at one epoch', () => {
    expect(runLength(configOf(['hnn', '--steps', '5']), 1)).toEqual({ total: 5, epochs: 5 });
    expect(runLength(configOf(['hnn', '--steps', '5', '--epochs', '2']), 1)).toEqual({ total: 2, epochs: 2 });
    expect(runLength(configOf(['hnn']), 3)).toEqual({ total: 3, epochs: 1 });
    expect(runLength(configOf(['eigenworms', '--synthetic', '--steps', '7']), 3)).toEqual({
      total: 7,
      epochs: 3,
    });
  });

  it('hnn --steps 5 (one batch per epoch) takes 5 steps', async () => {
    const out = tempDir('hnn-steps');
    const cfg = configOf([
      'hnn',
      '--steps',
      '5',
      '--points',
      '21',
      '--t-end',
      '1',
      '--orbits',
      '4',
      '--test-orbits',
      '1',
      '--hidden',
      '4',
      '--layers',
      '1',
      '--out',
      out,
    ]);
    const s = await trainHnn(cfg, quiet);
    expect(s.steps).toBe(5);
    expect(stepsOf(out)).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('--resume takes the configuration from the checkpoint', () => {
  const flags = (out: string) => [
    'eigenworms',
    '--synthetic',
    '--length',
    '16',
    '--limit',
    '8',
    '--batch',
    '4',
    '--steps',
    '3',
    '--hidden',
    '4',
    '--layers',
    '1',
    '--out',
    out,
  ];

  it('without --synthetic or --data, and refuses a checkpoint of another task', async () => {
    const out = tempDir('resume-cfg');
    await train(configOf(flags(out)), quiet);
    expect(stepsOf(out)).toEqual([1, 2, 3]);
    // Only the task, --resume and --out: the data (synthetic, length 16) comes from the checkpoint.
    const s = await train(configOf(['eigenworms', '--resume', '--out', out]), { ...quiet, resume: true });
    expect(s.config.synthetic).toBe(true);
    expect(s.config.length).toBe(16);
    expect(s.steps).toBe(3);
    await expect(trainHnn(configOf(['hnn', '--out', out]), { ...quiet, resume: true })).rejects.toThrow(
      CheckpointError,
    );
    await expect(trainHnn(configOf(['hnn', '--out', out]), { ...quiet, resume: true })).rejects.toThrow(
      /is from task eigenworms, not hnn/,
    );
  });
});
