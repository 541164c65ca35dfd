import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Rng } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_DIR } from '../src/data/fashion-mnist.js';
import { readMetrics, type StepRecord } from '../src/metrics.js';
import { train } from '../src/train.js';
import { configOf, mean, quiet, tempDir } from './helpers.js';

const steps = (dir: string) =>
  readMetrics(join(dir, 'metrics.jsonl')).filter((r): r is StepRecord => r.type === 'step');

/** A small IDX fixture: class k images are bright in horizontal band k of the 28 × 28 grid. */
function fashionFixture(): string {
  const dir = tempDir('fmnist');
  const rng = new Rng(5);
  for (const split of ['train', 't10k']) {
    const n = 32;
    const img = new Uint8Array(16 + n * 784);
    img.set([0, 0, 8, 3]);
    const v = new DataView(img.buffer);
    for (const [i, d] of [n, 28, 28].entries()) v.setUint32(4 + 4 * i, d, false);
    const lbl = new Uint8Array(8 + n);
    lbl.set([0, 0, 8, 1]);
    new DataView(lbl.buffer).setUint32(4, n, false);
    for (let i = 0; i < n; i++) {
      const k = Math.floor(rng.uniform() * 10);
      lbl[8 + i] = k;
      for (let p = 0; p < 784; p++)
        img[16 + i * 784 + p] = Math.floor(rng.uniform() * 60) + (Math.floor(p / 28 / 2.8) === k ? 180 : 0);
    }
    writeFileSync(join(dir, `${split}-images-idx3-ubyte.gz`), gzipSync(img));
    writeFileSync(join(dir, `${split}-labels-idx1-ubyte`), lbl);
  }
  return dir;
}

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
