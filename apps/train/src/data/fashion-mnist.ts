import { MAX_LENGTH, MAX_VALUES } from '../args.js';
import { DataFormatError } from '../errors.js';
import { ArrayDataset } from './dataset.js';
import { findIdx, parseIdx, readMaybeGzip } from './idx.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = 10;

// Per-pixel statistics of the Fashion-MNIST training images (values in [0, 1]).
const MEAN = 0.286;
const STD = 0.353;

interface Split {
  readonly data: ArrayDataset;
  readonly imageFile: string;
  readonly rows: number;
  readonly cols: number;
}

function loadSplit(dir: string, split: 'train' | 't10k', limit?: number): Split {
  const hint =
    dir === FASHION_MNIST_DIR
      ? `install the dataset there (Debian: apt-get install dataset-fashion-mnist) or pass --data DIR`
      : `--data names the folder of the four IDX files (train-/t10k-, images-idx3-/labels-idx1-ubyte, .gz or not)`;
  const imageFile = findIdx(dir, `${split}-images-idx3-ubyte`, hint);
  const lblFile = findIdx(dir, `${split}-labels-idx1-ubyte`, hint);
  const images = parseIdx(readMaybeGzip(imageFile), imageFile, 3);
  const labels = parseIdx(readMaybeGzip(lblFile), lblFile, 1);
  const [n, rows, cols] = images.dims as [number, number, number];
  // Each image is one sequence of rows·cols steps: bounded like --length, before any training.
  if (rows * cols > MAX_LENGTH)
    throw new DataFormatError(
      imageFile,
      `images of ${rows} × ${cols} = ${rows * cols} pixels exceed the ${MAX_LENGTH} time steps this app takes in a sequence`,
    );
  if (n * rows * cols > MAX_VALUES)
    throw new DataFormatError(
      imageFile,
      `${n} images of ${rows} × ${cols} pixels: ${n * rows * cols} values, more than the ${MAX_VALUES} this app holds in memory`,
    );
  if (labels.dims[0] !== n)
    throw new DataFormatError(lblFile, `${labels.dims[0]} labels for ${n} images in ${imageFile}`);
  for (let i = 0; i < labels.data.length; i++) {
    if (labels.data[i]! >= FASHION_MNIST_CLASSES)
      throw new DataFormatError(
        lblFile,
        `label ${labels.data[i]} of item ${i} is out of range 0..${FASHION_MNIST_CLASSES - 1}`,
      );
  }
  const ds = new ArrayDataset(
    images.data,
    labels.data,
    rows * cols,
    1,
    FASHION_MNIST_CLASSES,
    1 / (255 * STD),
    -MEAN / STD,
  );
  return { data: ds.limit(limit), imageFile, rows, cols };
}

/** One split of Fashion-MNIST as sequences of rows·cols pixels with one channel, normalised. */
export function loadFashionMnist(dir: string, split: 'train' | 't10k', limit?: number): ArrayDataset {
  return loadSplit(dir, split, limit).data;
}

/** Both splits; the test images must have the training images' size. */
export function loadFashionMnistSplits(
  dir: string,
  limit?: number,
): { train: ArrayDataset; test: ArrayDataset } {
  const train = loadSplit(dir, 'train', limit);
  const test = loadSplit(dir, 't10k', limit);
  if (test.rows !== train.rows || test.cols !== train.cols)
    throw new DataFormatError(
      test.imageFile,
      `images are ${test.rows} × ${test.cols}, expected ${train.rows} × ${train.cols} like the training images in ${train.imageFile}`,
    );
  return { train: train.data, test: test.data };
}
