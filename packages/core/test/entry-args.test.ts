import { describe, expect, it } from 'vitest';
import { cells, deer, deerSync, deerWithGrad, describeValue, dopri5, InvalidArgumentError, rk4, sequential, solveIvp, solveIvpWithGrad } from '../src/index.js';

// What a caller might pass where a backend belongs: each entry point refuses it by name before
// reading anything of it (null had been a TypeError from deep inside; 'cpu' a TensorStateError).
const NOT_BACKENDS: unknown[] = [null, undefined, 'cpu', {}, 5, { name: 'cpu' }];

describe('solver entry points check their backend argument', () => {
  const cell = cells.gru({ inputSize: 1, hiddenSize: 2 });
  const params = cell.init();
  const problem = { y0: [0, 0], t: [0, 1] };
  const calls: [string, (b: never) => unknown][] = [
    ['deer', (b) => deer(b, cell, params, null as never)],
    ['deerSync', (b) => deerSync(b, cell, params as never, null as never, null as never)],
    ['deerWithGrad', (b) => deerWithGrad(b, cell, params, null as never)],
    ['sequential', (b) => sequential(b, cell, params, null as never)],
    ['solveIvp', (b) => solveIvp(b, cell, {}, problem)],
    ['solveIvpWithGrad', (b) => solveIvpWithGrad(b, cell, {}, problem)],
    ['dopri5', (b) => dopri5(b, cell, {}, problem)],
    ['rk4', (b) => rk4(b, cell, {}, problem)],
  ];
  for (const [name, call] of calls) {
    it(name, async () => {
      for (const b of NOT_BACKENDS) {
        const err = await (async () => call(b as never))().catch((e: unknown) => e);
        expect(err, `${name}(${JSON.stringify(b)})`).toBeInstanceOf(InvalidArgumentError);
        expect((err as Error).message).toMatch(/^backend: expected a deerjs Backend/);
      }
    });
  }
});

describe('describeValue', () => {
  it('shows a BigInt as one (it had read like the number)', () => {
    expect(describeValue(1n)).toBe('1n (a BigInt)');
    expect(describeValue([1n, 2])).toBe('[1n (a BigInt), 2]');
  });
});
