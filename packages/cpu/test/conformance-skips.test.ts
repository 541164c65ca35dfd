import { defineConformanceSuite, unknownSkipIds } from '@deerjs/conformance';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

describe('conformance skip list', () => {
  it('names the skip ids that match no case', () => {
    const defined = new Set(['lang/clip', 'scan/B2/T1/n3/s3/forward']);
    expect(unknownSkipIds({ 'lang/clip': 'reason' }, defined)).toEqual([]);
    expect(unknownSkipIds({ 'lang/clip': 'reason', 'lang/clipp': 'typo' }, defined)).toEqual(['lang/clipp']);
  });
  it('rejects a skip without a written reason', () => {
    expect(() =>
      defineConformanceSuite({
        name: 'cpu-reasonless',
        create: () => createCpuBackend(),
        oracle: () => createCpuBackend(),
        dtypes: { float64: true },
        skip: { 'lang/clip': ' ' },
      }),
    ).toThrow(/needs a written reason/);
  });
});
