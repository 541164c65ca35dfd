import { DataFormatError } from '../errors.js';
import { ArrayDataset } from './dataset.js';
import { findIdx, parseIdx, readMaybeGzip } from './idx.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

// Per-pixel statistics of the Fashion-MNIST training images (values in [0, 1]).
const MEAN = 0.286;
const STD = 0.353;

/** One split of Fashion-MNIST as sequences of 784 pixels with one channel, normalised. */
export function loadFashionMnist(dir: string, split: 'train' | 't10k', limit?: number): ArrayDataset {
  const imgFile = findIdx(dir, `${split}-images-idx3-ubyte`);
  const lblFile = findIdx(dir, `${split}-labels-idx1-ubyte`);
  const images = parseIdx(readMaybeGzip(imgFile), imgFile, 3);
  const labels = parseIdx(readMaybeGzip(lblFile), lblFile, 1);
  const [n, rows, cols] = images.dims as [number, number, number];
  if (labels.dims[0] !== n)
    throw new DataFormatError(lblFile, `${labels.dims[0]} labels for ${n} images in ${imgFile}`);
  for (let i = 0; i < labels.data.length; i++) {
    if (labels.data[i]! > 9)
      throw new DataFormatError(lblFile, `label ${labels.data[i]} of item ${i} is out of range 0..9`);
  }
  const ds = new ArrayDataset(images.data, labels.data, rows * cols, 1, 10, 1 / (255 * STD), -MEAN / STD);
  return ds.limit(limit);
}
