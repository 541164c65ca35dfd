import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Rng } from '@deerjs/core';
import { parseCli } from '../src/args.js';
import type { TrainConfig } from '../src/config.js';
import { ProgressBar } from '../src/progress.js';

export const quiet = {
  log: () => {},
  progress: new ProgressBar({ isTTY: false, write: () => true } as unknown as NodeJS.WriteStream),
};

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `deer-train-${prefix}-`));
}

/** A config as the CLI would make it from these flags. */
export function configOf(args: string[]): TrainConfig {
  const p = parseCli(args);
  if (p.help) throw new Error('unexpected --help');
  return p.config;
}

/** Flags of the smallest eigenworms run (synthetic, 8 series of 16 steps, one 4-unit layer). */
export function tinyEigenworms(steps: number): string[] {
  return [
    'eigenworms',
    '--synthetic',
    '--length',
    '16',
    '--limit',
    '8',
    '--batch',
    '4',
    '--steps',
    `${steps}`,
    '--hidden',
    '4',
    '--layers',
    '1',
  ];
}

export const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/** A small IDX fixture: class k images are bright in horizontal band k of the 28 × 28 grid. */
export function fashionFixture(): string {
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
