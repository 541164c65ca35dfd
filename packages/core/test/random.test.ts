import { describe, expect, it } from 'vitest';
import { cells, InvalidArgumentError, Rng } from '../src/index.js';

describe('Rng seeds', () => {
  it('refuses seeds that are not integers (NaN, Infinity, 0.5 and strings had all been seed 0)', () => {
    for (const seed of [Number.NaN, Number.POSITIVE_INFINITY, 0.5, '3', 2 ** 53]) {
      expect(() => new Rng(seed as number), String(seed)).toThrow(InvalidArgumentError);
    }
    expect(() => cells.gru({ inputSize: 1, hiddenSize: 2 }).init({ seed: Number.NaN })).toThrow(InvalidArgumentError);
  });

  it('keeps the streams of seeds below 2³² and gives larger ones their own', () => {
    const first = (seed: number) => Array.from(new Rng(seed).uniformArray(4));
    expect(first(7)).toEqual(first(7));
    expect(first(2 ** 32)).not.toEqual(first(0));
    expect(first(2 ** 32 + 7)).not.toEqual(first(7));
    expect(first(-1)).not.toEqual(first(2 ** 32 - 1));
  });
});
