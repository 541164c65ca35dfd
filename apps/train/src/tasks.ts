import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { Rng } from '@deerjs/core';
import type { TrainConfig } from './config.js';
import type { ArrayDataset } from './data/dataset.js';
import { FASHION_MNIST_DIR, loadFashionMnistSplits } from './data/fashion-mnist.js';
import { EIGENWORMS_SHAPE, syntheticWorms } from './data/synthetic.js';
import { loadTs } from './data/ts-format.js';
import { DataFormatError } from './errors.js';

export interface TaskData {
  readonly train: ArrayDataset;
  readonly test: ArrayDataset;
  /** Where the data came from, for the log. */
  readonly source: string;
}

/** Fisher–Yates with the given generator. */
export function permutation(n: number, rng: Rng): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

export function loadTaskData(c: TrainConfig): TaskData {
  if (c.task === 'fashion-mnist') {
    const dir = c.data ?? FASHION_MNIST_DIR;
    return { ...loadFashionMnistSplits(dir, c.limit), source: dir };
  }
  if (c.synthetic) {
    const length = c.length ?? EIGENWORMS_SHAPE.length;
    const n = c.limit ?? 128;
    return {
      train: syntheticWorms(n, length, c.seed * 2 + 1),
      test: syntheticWorms(Math.max(c.batch, Math.ceil(n / 4)), length, c.seed * 2 + 2),
      source: `synthetic (T = ${length})`,
    };
  }
  const file = c.data!;
  const { header, data: train } = loadTs(file);
  // X_TRAIN.ts → X_TEST.ts in the same folder; a folder named like runs_TRAIN/ is left alone.
  const name = basename(file);
  const testFile =
    c.testData ??
    (name.includes('_TRAIN')
      ? file.slice(0, file.length - name.length) + name.replace('_TRAIN', '_TEST')
      : undefined);
  if (testFile !== undefined && (c.testData !== undefined || existsSync(testFile))) {
    const { header: th, data: test } = loadTs(testFile);
    if (
      test.length !== train.length ||
      test.channels !== train.channels ||
      th.classLabels.join(' ') !== header.classLabels.join(' ')
    ) {
      throw new DataFormatError(
        testFile,
        `shape (T ${test.length}, ${test.channels} channels, classes ${th.classLabels.join(' ')}) differs from ${file} (T ${train.length}, ${train.channels} channels, classes ${header.classLabels.join(' ')})`,
      );
    }
    return { train: train.limit(c.limit), test: test.limit(c.limit), source: `${file} + ${testFile}` };
  }
  // No test file: hold out a seeded 20%.
  const order = permutation(train.size, new Rng(c.seed + 0x5eed));
  const cut = Math.max(1, Math.floor(train.size * 0.2));
  if (train.size - cut < 1)
    throw new DataFormatError(
      file,
      `${train.size} case(s) and no test file: holding out 20% for testing leaves no case to train on (give --test-data FILE or more cases)`,
    );
  return {
    train: train.pick(order.slice(cut)).limit(c.limit),
    test: train.pick(order.slice(0, cut)).limit(c.limit),
    source: `${file} (20% held out)`,
  };
}
