import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_DIR } from '../src/data/fashion-mnist.js';
import { readMetrics, type StepRecord } from '../src/metrics.js';
import { train } from '../src/train.js';
import { configOf, fashionFixture, mean, quiet, tempDir } from './helpers.js';

const steps = (dir: string) =>
  readMetrics(join(dir, 'metrics.jsonl')).filter((r): r is StepRecord => r.type === 'step');

describe('short CPU runs lower the loss', () => {
  it('fashion-mnist (real files with --limit when installed, else a generated IDX fixture)', async () => {
    const data = existsSync(join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'))
      ? FASHION_MNIST_DIR
      : fashionFixture();
    const out = tempDir('fm-run');
    const cfg = configOf([
      'fashion-mnist',
      '--data',
      data,
      '--limit',
      '16',
      '--batch',
      '8',
      '--epochs',
      '4',
      '--hidden',
      '8',
      '--heads',
      '2',
      '--layers',
      '1',
      '--lr',
      '2e-2',
      '--warmup',
      '0',
      '--out',
      out,
    ]);
    const s = await train(cfg, quiet);
    const rec = steps(out);
    expect(rec.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(mean(rec.slice(-2).map((r) => r.loss))).toBeLessThan(mean(rec.slice(0, 2).map((r) => r.loss)));
    expect(rec.every((r) => r.newton > 0 && !r.fellBack)).toBe(true);
    expect(s.test.examples).toBe(16);
    const svg = readFileSync(join(out, 'plot.svg'), 'utf8');
    expect(svg).toMatch(/^<\?xml[\s\S]*<svg[\s\S]*<path [\s\S]*<\/svg>\n$/);
    expect(existsSync(join(out, 'checkpoint.ckpt'))).toBe(true);
  });

  it('eigenworms --synthetic with a short length', async () => {
    const out = tempDir('ew-run');
    const cfg = configOf([
      'eigenworms',
      '--synthetic',
      '--length',
      '48',
      '--limit',
      '32',
      '--batch',
      '8',
      '--epochs',
      '5',
      '--hidden',
      '8',
      '--layers',
      '2',
      '--lr',
      '2e-2',
      '--warmup',
      '0',
      '--out',
      out,
    ]);
    const s = await train(cfg, quiet);
    const rec = steps(out);
    expect(rec).toHaveLength(20);
    expect(mean(rec.slice(-4).map((r) => r.loss))).toBeLessThan(
      mean(rec.slice(0, 4).map((r) => r.loss)) - 0.05,
    );
    expect(s.test.acc).toBeGreaterThan(0.2);
  });
});

describe('solvers agree', () => {
  it('DEER and sequential training give the same losses for 20 steps (float32)', async () => {
    const run = async (solver: string) => {
      const out = tempDir(`agree-${solver}`);
      await train(
        configOf([
          'eigenworms',
          '--synthetic',
          '--length',
          '40',
          '--limit',
          '40',
          '--batch',
          '4',
          '--steps',
          '20',
          '--epochs',
          '2',
          '--hidden',
          '8',
          '--layers',
          '2',
          '--solver',
          solver,
          '--out',
          out,
        ]),
        quiet,
      );
      return steps(out).map((r) => r.loss);
    };
    const a = await run('deer');
    const b = await run('sequential');
    expect(a).toHaveLength(20);
    for (let i = 0; i < 20; i++) expect(Math.abs(a[i]! - b[i]!) / b[i]!).toBeLessThan(1e-4);
  });
});
