import { lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError } from '@deerjs/nn';
import { describe, expect, it } from 'vitest';
import { trainHnn } from '../src/hnn/train-hnn.js';
import { type HnnEvalRecord, type HnnStepRecord, readMetrics, type StepRecord } from '../src/metrics.js';
import { checkParamsFit, runLength } from '../src/run-setup.js';
import { loadTaskData } from '../src/tasks.js';
import { train } from '../src/train.js';
import { configOf, quiet, tempDir, tinyEigenworms } from './helpers.js';

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
  const flags = (out: string) => [...tinyEigenworms(3), '--out', out];

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
  it('a fresh run over an earlier one: refused, or with --overwrite a new run that --resume then continues', async () => {
    const out = tempDir('overwrite');
    await train(configOf(flags(out)), quiet);
    const again = configOf(flags(out).map((f, i, all) => (all[i - 1] === '--hidden' ? '3' : f)));
    await expect(train(again, quiet)).rejects.toThrow(/holds an earlier run's checkpoint\.ckpt/);
    const s = await train(again, { ...quiet, overwrite: true });
    expect(s.config.hidden).toBe(3);
    const resumed = await train(configOf(['eigenworms', '--resume', '--out', out]), { ...quiet, resume: true });
    expect(resumed.config.hidden).toBe(3);
    expect(stepsOf(out)).toEqual([1, 2, 3]);
  });
});

const tsFile = (dims: number, cases: string[]) =>
  `@problemName X\n@univariate false\n@dimensions ${dims}\n@equalLength true\n@seriesLength 3\n@classLabel true a b\n@data\n${cases.join('\n')}\n`;

describe('resuming checks the checkpoint against the model the data defines', () => {
  it('refuses with a CheckpointError when the data file changed its channels', async () => {
    const dir = tempDir('resume-shape');
    const data = join(dir, 'a.ts');
    writeFileSync(data, tsFile(2, ['1,2,3:4,5,6:a', '1,2,3:4,5,6:b', '1,2,3:4,5,6:a']));
    const out = join(dir, 'o');
    const flags = ['--layers', '1', '--hidden', '2', '--steps', '1', '--out', out];
    await train(configOf(['eigenworms', '--data', data, ...flags]), quiet);
    writeFileSync(data, tsFile(3, ['1,2,3:4,5,6:1,1,1:a', '1,2,3:4,5,6:1,1,1:b', '1,2,3:4,5,6:1,1,1:a']));
    const resumed = train(configOf(['eigenworms', '--resume', '--out', out]), { ...quiet, resume: true });
    await expect(resumed).rejects.toThrow(CheckpointError);
    await expect(
      train(configOf(['eigenworms', '--resume', '--out', out]), { ...quiet, resume: true }),
    ).rejects.toThrow(/parameters do not fit the model \(.*3 channel\(s\).*\): rnn\.0\.W has 12 values, the model needs 18/);
  });

  it('checkParamsFit names a missing, extra or resized parameter', () => {
    const a = { W: new Float64Array(4), b: new Float64Array(2) };
    expect(() => checkParamsFit('c', a, { W: new Float64Array(4), b: new Float64Array(2) }, 'm')).not.toThrow();
    expect(() => checkParamsFit('c', a, { W: new Float64Array(6), b: new Float64Array(2) }, 'm')).toThrow(
      /\(m\): W has 4 values, the model needs 6/,
    );
    expect(() => checkParamsFit('c', { W: a.W }, a, 'm')).toThrow(/it lacks b/);
    expect(() => checkParamsFit('c', a, { W: a.W }, 'm')).toThrow(/the model has no b/);
  });
});

describe('eigenworms --data X_TRAIN.ts', () => {
  it('finds X_TEST.ts beside it even in a folder whose name contains _TRAIN', () => {
    const dir = join(tempDir('test-file'), 'set_TRAIN');
    mkdirSync(dir);
    const cases = ['1,2,3:4,5,6:a', '1,2,3:4,5,6:b'];
    writeFileSync(join(dir, 'W_TRAIN.ts'), tsFile(2, cases));
    writeFileSync(join(dir, 'W_TEST.ts'), tsFile(2, [...cases, ...cases]));
    const d = loadTaskData(configOf(['eigenworms', '--data', join(dir, 'W_TRAIN.ts')]));
    expect(d.source).toBe(`${join(dir, 'W_TRAIN.ts')} + ${join(dir, 'W_TEST.ts')}`);
    expect([d.train.size, d.test.size]).toEqual([2, 4]);
  });
});

describe('outputs in --out', () => {
  it('replace a symlink standing at their name instead of writing through it', async () => {
    const dir = tempDir('symlink');
    const out = join(dir, 'o');
    mkdirSync(out);
    const precious = join(dir, 'precious.txt');
    writeFileSync(precious, 'precious');
    for (const f of ['summary.json', 'metrics.jsonl', 'plot.svg']) symlinkSync(precious, join(out, f));
    await train(
      configOf(['eigenworms', '--synthetic', '--length', '8', '--limit', '4', '--layers', '1', '--hidden', '2', '--steps', '1', '--out', out]),
      quiet,
    );
    expect(readFileSync(precious, 'utf8')).toBe('precious');
    for (const f of ['summary.json', 'metrics.jsonl', 'plot.svg'])
      expect(lstatSync(join(out, f)).isSymbolicLink()).toBe(false);
  });
});
