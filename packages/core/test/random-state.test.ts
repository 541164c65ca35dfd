import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, Rng } from '../src/index.js';

/** The bits of a double, so that "the same" means bit for bit (−0 and NaN included). */
const bits = (v: number) => {
  const b = new DataView(new ArrayBuffer(8));
  b.setFloat64(0, v);
  return b.getBigUint64(0);
};
const draws = (rng: Rng, k: number) => Array.from({ length: k }, (_, i) => (i % 3 === 2 ? rng.uniform() : rng.normal())).map(bits);

describe('Rng.state', () => {
  it('is complete: a generator restored after an odd or even number of normals continues bit for bit', () => {
    for (const seed of [0, 1, 7, 2 ** 40 + 3]) {
      for (const before of [0, 1, 2, 3, 4, 7]) {
        const a = new Rng(seed);
        for (let i = 0; i < before; i++) a.normal();
        const saved = a.state;
        // The spare is carried exactly when one is cached: after an odd number of normals.
        expect(saved.length, `seed ${seed}, ${before} normals`).toBe(before % 2 === 1 ? 5 : 4);
        for (const w of saved.slice(0, 4)) expect(Number.isInteger(w) && w! >= 0 && w! <= 0xffffffff, `word ${w}`).toBe(true);
        // Through JSON, as a checkpoint keeps it.
        const restored = new Rng(seed + 1);
        restored.state = JSON.parse(JSON.stringify(saved));
        expect(draws(restored, 9), `seed ${seed}, ${before} normals`).toEqual(draws(a, 9));
      }
    }
  });

  it('the 4-entry form means no cached normal, and replaces one the generator held', () => {
    const a = new Rng(3);
    a.normal();
    const [s0, s1, s2, s3] = a.state;
    const b = new Rng(99);
    b.normal(); // b holds a spare of its own: setting the 4-entry state drops it
    b.state = [s0, s1, s2, s3];
    const c = new Rng(5);
    c.state = [s0, s1, s2, s3, undefined];
    const fresh = new Rng(3);
    fresh.normal();
    fresh.normal(); // consumes the spare; the words are now a's
    expect(fresh.state).toEqual([s0, s1, s2, s3]);
    expect(draws(b, 6)).toEqual(draws(fresh, 6));
    expect(c.state).toEqual([s0, s1, s2, s3]);
  });

  it('accepts words as signed 32-bit integers and gives them back unsigned', () => {
    const a = new Rng(0);
    a.state = [-1, 2, -(2 ** 31), 4];
    expect(a.state).toEqual([0xffffffff, 2, 2 ** 31, 4]);
  });

  it('refuses the all-zero state (a fixed point: uniform() returned 0 forever) and malformed states, changing nothing', () => {
    const a = new Rng(11);
    a.normal();
    const before = a.state;
    for (const bad of [
      [0, 0, 0, 0],
      [0, 0, 0, 0, 0.5],
      [-0, 0, 0, 0],
      [1, 2, 3],
      [1, 2, 3, 4, 0.5, 6],
      [1, 2, 3, 4.5],
      [1, 2, 3, 2 ** 32],
      [1, 2, 3, -(2 ** 31) - 1],
      [1, 2, '3', 4],
      [1, 2, 3, 4, Number.NaN],
      [1, 2, 3, 4, Number.POSITIVE_INFINITY],
      [1, 2, 3, 4, null],
      [1, 2, 3, 4, '0.5'],
      // biome-ignore lint/suspicious/noSparseArray: a hole is a missing word
      [1, , 3, 4],
      null,
      undefined,
      'state',
      { 0: 1, 1: 2, 2: 3, 3: 4, length: 4 },
    ]) {
      expect(() => {
        a.state = bad as never;
      }, JSON.stringify(bad)).toThrow(InvalidArgumentError);
    }
    expect(() => {
      a.state = [0, 0, 0, 0];
    }).toThrow(/Rng state: expected a state with a nonzero word/);
    expect(a.state).toEqual(before);
    // Any nonzero word is a live state.
    a.state = [0, 0, 0, 1];
    expect(new Set(Array.from({ length: 8 }, () => a.uniform())).size).toBe(8);
  });
});
