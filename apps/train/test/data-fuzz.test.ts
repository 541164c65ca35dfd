import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Rng } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { parseIdx, readMaybeGzip } from '../src/data/idx.js';
import { parseTs } from '../src/data/ts-format.js';
import { DataFormatError } from '../src/errors.js';
import { tempDir } from './helpers.js';

/**
 * Seeded, bounded fuzzing of the data loaders: each mutated file must give a DataFormatError naming
 * it, or a parse that agrees with what the file declares — never a RangeError, a TypeError or a hang.
 */

function idx(dims: number[], data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out.set([0, 0, 8, dims.length]);
  const v = new DataView(out.buffer);
  for (const [i, d] of dims.entries()) v.setUint32(4 + 4 * i, d, false);
  out.set(data, 4 + 4 * dims.length);
  return out;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)]!;
const int = (rng: Rng, n: number) => Math.floor(rng.uniform() * n);

/** One random mutation of an IDX file's bytes. */
function mutateIdx(rng: Rng, base: Uint8Array): Uint8Array {
  const b = Uint8Array.from(base);
  const v = new DataView(b.buffer);
  const rank = b[3]!;
  switch (int(rng, 8)) {
    case 0: // truncated anywhere
      return b.subarray(0, int(rng, b.length));
    case 1: // wrong magic / type / rank byte
      b[int(rng, 4)] = int(rng, 256);
      return b;
    case 2: // a huge dimension
      v.setUint32(4 + 4 * int(rng, rank), pick(rng, [0xffffffff, 0x80000000, 1e9, 65_536]), false);
      return b;
    case 3: // a zero count
      v.setUint32(4 + 4 * int(rng, rank), 0, false);
      return b;
    case 4: // flipped bytes anywhere
      for (let k = 1 + int(rng, 4); k > 0; k--) b[int(rng, b.length)]! ^= 1 + int(rng, 255);
      return b;
    case 5: // bytes appended
      return Uint8Array.from([...b, ...Array.from({ length: 1 + int(rng, 8) }, () => int(rng, 256))]);
    case 6: // a random small dimension
      v.setUint32(4 + 4 * int(rng, rank), int(rng, 12), false);
      return b;
    default: // random bytes of a random length
      return Uint8Array.from({ length: int(rng, 40) }, () => int(rng, 256));
  }
}

function checkIdx(bytes: Uint8Array, file: string, rank: number): 'ok' | 'error' {
  try {
    const r = parseIdx(bytes, file, rank);
    // A correct parse: the declared shape, nonzero, exactly backed by the bytes after the header.
    expect(r.dims).toHaveLength(rank);
    expect(r.dims.every((d) => Number.isInteger(d) && d >= 1)).toBe(true);
    expect(r.data.length).toBe(r.dims.reduce((a, d) => a * d, 1));
    expect(4 + 4 * rank + r.data.length).toBe(bytes.length);
    expect(Array.from(r.data)).toEqual(Array.from(bytes.subarray(4 + 4 * rank)));
    return 'ok';
  } catch (err) {
    if (!(err instanceof DataFormatError)) throw err;
    expect(err.file).toBe(file);
    expect(err.message).not.toContain('\n');
    return 'error';
  }
}

describe('IDX loader fuzz', () => {
  it('400 mutated files: typed error or a parse consistent with the header', () => {
    const rng = new Rng(2024);
    const images = idx(
      [3, 4, 5],
      Array.from({ length: 60 }, (_, i) => (i * 37) % 256),
    );
    const labels = idx([3], [1, 7, 9]);
    const seen = { ok: 0, error: 0 };
    const t0 = performance.now();
    for (let k = 0; k < 400; k++) {
      const [base, rank] = k % 2 === 0 ? [images, 3] : [labels, 1];
      seen[checkIdx(mutateIdx(rng, base), `m${k}.idx`, rank)]++;
    }
    // Both outcomes happen, so the fuzzing exercises the parser and is not all rejected at the magic.
    expect(seen.ok).toBeGreaterThan(20);
    expect(seen.error).toBeGreaterThan(200);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('mutated gzip files: typed error or a parse', () => {
    const rng = new Rng(7);
    const dir = tempDir('fuzz-gz');
    const gz = gzipSync(
      idx(
        [2, 3, 3],
        Array.from({ length: 18 }, (_, i) => i),
      ),
    );
    for (let k = 0; k < 60; k++) {
      const b = Uint8Array.from(gz);
      const bytes = k % 3 === 0 ? b.subarray(0, 2 + int(rng, b.length - 2)) : b;
      if (k % 3 !== 0)
        for (let j = 1 + int(rng, 3); j > 0; j--) bytes[2 + int(rng, b.length - 2)]! ^= 1 + int(rng, 255);
      const file = join(dir, `g${k}.gz`);
      writeFileSync(file, bytes);
      try {
        checkIdx(readMaybeGzip(file), file, 3);
      } catch (err) {
        if (!(err instanceof DataFormatError)) throw err;
        expect(err.file).toBe(file);
      }
    }
  });
});

const TS_BASE = [
  '# fuzz base',
  '@problemName Fuzz',
  '@timeStamps false',
  '@univariate false',
  '@dimensions 2',
  '@equalLength true',
  '@seriesLength 3',
  '@classLabel true a b c',
  '@data',
  '1,2,3:4,5,6:a',
  '-1,0.5,1e-3:7,8,9:c',
  '0,0,0:1,1,1:b',
].join('\n');

function mutateTs(rng: Rng, text: string): string {
  const lines = text.split('\n');
  switch (int(rng, 8)) {
    case 0: // a huge or odd declared size
      return text.replace(
        pick(rng, ['@seriesLength 3', '@dimensions 2']),
        (m) =>
          `${m.split(' ')[0]} ${pick(rng, ['1e15', '4294967296', '9007199254740993', '0', '-2', 'x', '2.5', '', '1e308', '100000'])}`,
      );
    case 1: // truncated
      return text.slice(0, int(rng, text.length));
    case 2: // a line dropped
      lines.splice(int(rng, lines.length), 1);
      return lines.join('\n');
    case 3: // a line duplicated
      lines.splice(int(rng, lines.length), 0, pick(rng, lines));
      return lines.join('\n');
    case 4: {
      // characters replaced by separators, digits, letters
      const c = text.split('');
      for (let k = 1 + int(rng, 4); k > 0; k--)
        c[int(rng, c.length)] = pick(rng, [':', ',', '@', ' ', '\n', '9', 'e', '-', '#', '']);
      return c.join('');
    }
    case 5: // many class labels
      return text.replace(
        '@classLabel true a b c',
        `@classLabel true ${Array.from({ length: 2 + int(rng, 400) }, (_, k) => (k < 3 ? 'abc'[k] : `l${k}`)).join(' ')}`,
      );
    case 6: // a value replaced
      return text.replace(
        pick(rng, ['1,2,3', '7,8,9', '0.5']),
        pick(rng, ['1,NaN,3', '1,,3', 'Infinity', '1e400', '1,2', '1,2,3,4', '']),
      );
    default: // random printable text
      return Array.from({ length: int(rng, 120) }, () => String.fromCharCode(32 + int(rng, 95))).join('');
  }
}

describe('.ts loader fuzz', () => {
  it('400 mutated files: typed error or a parse consistent with the header', () => {
    const rng = new Rng(99);
    const seen = { ok: 0, error: 0 };
    const t0 = performance.now();
    for (let k = 0; k < 400; k++) {
      const text = mutateTs(rng, TS_BASE);
      const file = `m${k}.ts`;
      try {
        const { header, data } = parseTs(text, file);
        const per = header.seriesLength * header.dimensions;
        expect([data.length, data.channels, data.classes]).toEqual([
          header.seriesLength,
          header.dimensions,
          header.classLabels.length,
        ]);
        expect(data.size).toBeGreaterThan(0);
        expect(data.labels.length).toBe(data.size);
        expect(Array.from(data.labels).every((l) => Number.isInteger(l) && l >= 0 && l < data.classes)).toBe(
          true,
        );
        const xs = new Float64Array(data.size * per);
        data.fill(
          Array.from({ length: data.size }, (_, i) => i),
          xs,
        );
        expect(xs.every((x) => Number.isFinite(x))).toBe(true);
        seen.ok++;
      } catch (err) {
        if (!(err instanceof DataFormatError)) throw err;
        expect(err.file).toBe(file);
        expect(err.message).not.toContain('\n');
        seen.error++;
      }
    }
    expect(seen.ok).toBeGreaterThan(20);
    expect(seen.error).toBeGreaterThan(100);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
