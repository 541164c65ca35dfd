import { cells, deer, deerSync, Rng, UnsupportedOptionError } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

describe('an async onIteration', () => {
  const cell = cells.gru({ inputSize: 2, hiddenSize: 4 });
  const params = cell.init({ seed: 3 });

  it('is waited for: each call finishes before the next iteration', async () => {
    const be = createCpuBackend({ dtype: 'float64' });
    const x = be.tensor(new Rng(1).normalArray(2 * 50 * 2), [2, 50, 2]);
    const log: string[] = [];
    const { y, stats } = await deer(be, cell, params, x, {
      onIteration: async (info) => {
        log.push(`start ${info.iteration}`);
        await new Promise((r) => setTimeout(r, 1));
        log.push(`end ${info.iteration}`);
      },
    });
    expect(stats.converged).toBe(true);
    expect(log.length).toBe(2 * stats.iterations);
    expect(log).toEqual(log.map((_, k) => `${k % 2 ? 'end' : 'start'} ${Math.floor(k / 2) + 1}`));
    be.dispose(y);
    be.dispose(x);
    expect(be.liveTensors()).toBe(0);
    await be.destroy();
  });

  it('that rejects ends the solve with its error (it had been an unhandled rejection), leaving nothing behind', async () => {
    const be = createCpuBackend({ dtype: 'float64' });
    const x = be.tensor(new Rng(2).normalArray(50 * 2), [1, 50, 2]);
    const boom = new Error('stop here');
    await expect(deer(be, cell, params, x, { onIteration: async () => Promise.reject(boom) })).rejects.toBe(boom);
    be.dispose(x);
    expect(be.liveTensors()).toBe(0);
    await be.destroy();
  });

  it('is refused by deerSync, which cannot wait', async () => {
    const be = createCpuBackend({ dtype: 'float64' });
    const x = be.tensor(new Rng(3).normalArray(50 * 2), [1, 50, 2]);
    const h0 = be.zeros([1, 4]);
    const p = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, be.tensor(v, [v.length])]));
    expect(() =>
      deerSync(be, cell, p, x, h0, { onIteration: async () => Promise.reject(new Error('never seen')) }),
    ).toThrow(UnsupportedOptionError);
    for (const t of [x, h0, ...Object.values(p)]) be.dispose(t);
    expect(be.liveTensors()).toBe(0);
    await be.destroy();
  });
});
