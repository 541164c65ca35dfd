import { describe, expect, it } from 'vitest';
import { ArgError } from '../src/args.js';
import { buildGrid, estimateBytes, formatT } from '../src/grid.js';

const base = { nh: [8, 1], T: [1e4, 1e3], batch: 16, heads: [] as number[], headsSize: 64, quasi: false };

describe('buildGrid', () => {
  it('crosses nh and T, shortest T first, input size = hidden size', () => {
    const g = buildGrid(base);
    expect(g.map((p) => [p.hiddenSize, p.T])).toEqual([
      [1, 1e3],
      [8, 1e3],
      [1, 1e4],
      [8, 1e4],
    ]);
    for (const p of g) {
      expect(p.inputSize).toBe(p.hiddenSize);
      expect(p.batch).toBe(16);
      expect(p.jacobian).toBe('dense');
      expect(p.blockSize).toBe(p.hiddenSize);
      expect(p.series).toBe(`nh=${p.hiddenSize}`);
    }
    expect(new Set(g.map((p) => p.id)).size).toBe(g.length);
  });

  it('puts a quasi-DEER twin after each dense point with n > 1', () => {
    const g = buildGrid({ ...base, T: [1e3], quasi: true });
    expect(g.map((p) => `${p.series}/${p.jacobian}/${p.blockSize}`)).toEqual([
      'nh=1/dense/1',
      'nh=8/dense/8',
      'nh=8 quasi/diagonal/1',
    ]);
  });

  it('adds multi-head points with block size hidden/heads', () => {
    const g = buildGrid({ ...base, nh: [], T: [1e3], heads: [64, 8] });
    expect(g.map((p) => [p.hiddenSize, p.heads, p.jacobian, p.blockSize])).toEqual([
      [64, 8, 'block', 8],
      [64, 64, 'block', 1],
    ]);
  });

  it('rejects head counts that do not divide the size', () => {
    expect(() => buildGrid({ ...base, heads: [3] })).toThrow(ArgError);
  });

  it('estimates the Jacobian-dominated working set', () => {
    const [p] = buildGrid({ ...base, nh: [64], T: [1e5] });
    // T·B·n² float32 numbers alone: 26 GB.
    expect(estimateBytes(p!, 4)).toBeGreaterThan(1e5 * 16 * 64 * 64 * 4);
    expect(estimateBytes(p!, 4)).toBeLessThan(1.2 * 1e5 * 16 * 64 * 64 * 4);
  });

  it('formats T', () => {
    expect(formatT(1000)).toBe('1e3');
    expect(formatT(1e6)).toBe('1e6');
    expect(formatT(100)).toBe('100');
    expect(formatT(2500)).toBe('2500');
  });
});
