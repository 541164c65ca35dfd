import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { loadFashionMnist, loadFashionMnistSplits } from '../src/data/fashion-mnist.js';
import { parseIdx } from '../src/data/idx.js';
import { loadTs, parseTs } from '../src/data/ts-format.js';
import { DataFormatError } from '../src/errors.js';
import { tempDir } from './helpers.js';

function idx(dims: number[], data: number[]): Uint8Array {
  const head = new Uint8Array(4 + 4 * dims.length);
  head.set([0, 0, 8, dims.length]);
  const v = new DataView(head.buffer);
  for (const [i, d] of dims.entries()) v.setUint32(4 + 4 * i, d, false);
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

function expectDataError(fn: () => unknown, file: string, problem: RegExp) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DataFormatError);
    expect((err as DataFormatError).file).toBe(file);
    expect((err as DataFormatError).problem).toMatch(problem);
    expect((err as Error).message).toContain(file);
    return;
  }
  throw new Error('expected a DataFormatError');
}

const tsHeader = (labels = '1 2 3 4 5', dims = 2, len = 3) =>
  `# a comment\n@problemName Tiny\n@timeStamps false\n@univariate false\n@dimensions ${dims}\n@equalLength true\n@seriesLength ${len}\n@classLabel true ${labels}\n@data\n`;

describe('IDX files', () => {
  it('reads gzip and raw files alike', () => {
    const dir = tempDir('idx');
    const images = idx([2, 2, 2], [0, 255, 10, 20, 30, 40, 50, 60]);
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(images));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([2], [3, 9]));
    const ds = loadFashionMnist(dir, 'train');
    expect([ds.size, ds.length, ds.channels, ds.classes]).toEqual([2, 4, 1, 10]);
    expect(Array.from(ds.labels)).toEqual([3, 9]);
  });

  it('names the file and the problem: truncated data, bad magic, bad rank, labels out of range', () => {
    expectDataError(
      () => parseIdx(idx([2, 2, 2], [1, 2, 3]), 'a.idx', 3),
      'a.idx',
      /truncated: .*need 8 data bytes, file has 3/,
    );
    expectDataError(() => parseIdx(Uint8Array.from([0, 0, 8]), 'b.idx', 1), 'b.idx', /truncated/);
    expectDataError(
      () => parseIdx(Uint8Array.from([0x1f, 0, 8, 1, 0, 0, 0, 0]), 'c.idx', 1),
      'c.idx',
      /bad IDX magic/,
    );
    expectDataError(() => parseIdx(idx([1], [0]), 'd.idx', 3), 'd.idx', /rank 1, expected 3/);
    const dir = tempDir('idx-bad');
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), idx([2, 1, 1], [0, 1]));
    const labels = join(dir, 'train-labels-idx1-ubyte');
    writeFileSync(labels, idx([2], [1, 12]));
    expectDataError(() => loadFashionMnist(dir, 'train'), labels, /label 12 of item 1 is out of range/);
    const gz = join(dir, 't10k-images-idx3-ubyte.gz');
    writeFileSync(gz, gzipSync(idx([1, 1, 1], [0])).subarray(0, 12));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx([1], [0]));
    expectDataError(() => loadFashionMnist(dir, 't10k'), gz, /gzip/);
  });
});

describe('IDX files: sizes that cannot train', () => {
  it('rejects zero images, zero rows or columns, zero labels, and trailing bytes', () => {
    expectDataError(
      () => parseIdx(idx([0, 28, 28], []), 'n0.idx', 3),
      'n0.idx',
      /dimension 1 .* is 0 \(no items\)/,
    );
    expectDataError(
      () => parseIdx(idx([2, 28, 0], []), 'c0.idx', 3),
      'c0.idx',
      /dimension 3 .* is 0 \(items of no size\)/,
    );
    expectDataError(() => parseIdx(idx([0], []), 'l0.idx', 1), 'l0.idx', /is 0/);
    expectDataError(
      () => parseIdx(idx([2], [1, 2, 3]), 't.idx', 1),
      't.idx',
      /trailing bytes: .*need 2 data bytes, file has 3/,
    );
  });

  it('rejects a test set whose image size differs from the training set', () => {
    const dir = tempDir('idx-size');
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), idx([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([2], [0, 1]));
    const testImages = join(dir, 't10k-images-idx3-ubyte');
    writeFileSync(testImages, idx([2, 1, 4], [1, 2, 3, 4, 5, 6, 7, 8]));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx([2], [0, 1]));
    expectDataError(
      () => loadFashionMnistSplits(dir),
      testImages,
      /images are 1 × 4, expected 2 × 2 like the training images/,
    );
    writeFileSync(testImages, idx([1, 2, 2], [1, 2, 3, 4]));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx([1], [3]));
    const { train, test } = loadFashionMnistSplits(dir);
    expect([train.size, test.size, test.length]).toEqual([2, 1, 4]);
  });
});

describe('.ts files', () => {
  it('parses the sktime format (channels per case separated by ":", the label last)', () => {
    const { header, data } = parseTs(`${tsHeader()}1,2,3:4,5,6:2\n-1,0.5,1e-3:7,8,9:5\n`, 'ok.ts');
    expect(header).toEqual({
      problemName: 'Tiny',
      dimensions: 2,
      seriesLength: 3,
      classLabels: ['1', '2', '3', '4', '5'],
    });
    expect(Array.from(data.labels)).toEqual([1, 4]);
    const out = new Float64Array(6);
    data.fill([0], out);
    expect(Array.from(out)).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it('names the file and the problem: header, shape, label', () => {
    expectDataError(() => parseTs('@problemName X\n@data\n', 'h.ts'), 'h.ts', /lacks @univariate/);
    expectDataError(
      () => parseTs(tsHeader().replace('@equalLength true', '@equalLength false'), 'e.ts'),
      'e.ts',
      /equal-length/,
    );
    expectDataError(() => parseTs(tsHeader().replace('@data\n', ''), 'n.ts'), 'n.ts', /no @data/);
    expectDataError(
      () => parseTs(`${tsHeader()}1,2,3:4,5,6:7\n`, 'l.ts'),
      'l.ts',
      /line 10: label "7" is not one of/,
    );
    expectDataError(
      () => parseTs(`${tsHeader()}1,2,3:2\n`, 'd.ts'),
      'd.ts',
      /1 dimensions \(plus label\), expected 2/,
    );
    expectDataError(
      () => parseTs(`${tsHeader()}1,2:4,5,6:1\n`, 's.ts'),
      's.ts',
      /dimension 1 has 2 values, expected @seriesLength 3/,
    );
    expectDataError(() => parseTs(`${tsHeader()}1,?,3:4,5,6:1\n`, 'v.ts'), 'v.ts', /not a number/);
    // Number() reads these as 16, 3, 7 and 0; a .ts value is a decimal number.
    for (const v of ['0x10', '0b11', '0o7', ' '])
      expectDataError(
        () => parseTs(`${tsHeader()}1,${v},3:4,5,6:1\n`, 'h.ts'),
        'h.ts',
        new RegExp(`line 10: dimension 1, value 2 is "${v}", not a number`),
      );
    // Finite as a double, Infinity as the float32 the data is stored in.
    expectDataError(
      () => parseTs(`${tsHeader()}1,2,3:4,5,-1e39:1\n`, 'f.ts'),
      'f.ts',
      /line 10: dimension 2, value 3 is "-1e39", outside float32 range/,
    );
    expect(parseTs(`${tsHeader()}1,-2.5e-3,.5:+4,5.,3e38:1\n`, 'ok.ts').data.size).toBe(1);
    expectDataError(() => loadTs('/nonexistent/x.ts'), '/nonexistent/x.ts', /cannot be read/);
  });
});

describe('.ts files: declared sizes and many classes', () => {
  it('rejects a huge @seriesLength or @dimensions with a DataFormatError, not a RangeError', () => {
    for (const [dims, len] of [
      [2, 1e15],
      [2, 2 ** 40],
      [1e9, 3],
      [2 ** 31, 2 ** 31],
    ] as const) {
      expectDataError(
        () => parseTs(`${tsHeader('1 2', dims, len)}1,2,3:4,5,6:2\n`, 'big.ts'),
        'big.ts',
        /values per case cannot fit: its 1 case\(s\) hold \d+ characters/,
      );
    }
    expectDataError(
      () => parseTs(tsHeader('1 2', 2, 1e300), 'inf.ts'),
      'inf.ts',
      /@seriesLength "1e\+?300": expected a positive integer/,
    );
    expectDataError(() => parseTs(tsHeader('a b a'), 'dup.ts'), 'dup.ts', /lists "a" twice/);
    const long = 2 ** 20 + 1;
    expectDataError(
      () => parseTs(`${tsHeader('1 2', 1, long)}${'0,'.repeat(long - 1)}0:1\n`, 'long.ts'),
      'long.ts',
      /@seriesLength 1048577 exceeds the 1048576 time steps/,
    );
  });

  it('keeps every one of 300 class labels (no wrap-around at 256)', () => {
    const names = Array.from({ length: 300 }, (_, k) => `c${k}`);
    const rows = [0, 255, 256, 299].map((k) => `1,2,3:4,5,6:c${k}`).join('\n');
    const { data } = parseTs(`${tsHeader(names.join(' '))}${rows}\n`, 'many.ts');
    expect(data.classes).toBe(300);
    expect(Array.from(data.labels)).toEqual([0, 255, 256, 299]);
    expect(data.labels).toBeInstanceOf(Uint16Array);
    expect(Array.from(data.pick([3, 2]).labels)).toEqual([299, 256]);
  });
});
