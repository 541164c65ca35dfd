import { describe, expect, it } from 'vitest';
import {
  ArgError,
  FULL_PROFILE,
  parseArgs,
  parseBytes,
  QUICK_CPU_PROFILE,
  QUICK_PROFILE,
  quickProfile,
  resolveOptions,
} from '../src/args.js';

describe('parseArgs', () => {
  it('gives the paper grid by default', () => {
    const o = resolveOptions(parseArgs([]));
    expect(o.nh).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(o.T).toEqual([1e3, 1e4, 1e5, 1e6]);
    expect(o.batch).toBe(16);
    expect(o.heads).toEqual([8, 64]);
    expect(o.headsSize).toBe(64);
    expect(o.quasi).toBe(true);
    expect(o.dtype).toBe('float32');
    expect(o.backend).toBeUndefined();
    expect(o.maxMemory).toBe(4 * 2 ** 30);
    expect(o.maxTime).toBe(Number.POSITIVE_INFINITY);
  });

  it('reads lists, sizes, switches and both --flag value and --flag=value', () => {
    const o = resolveOptions(
      parseArgs([
        '--backend',
        'cpu',
        '--nh',
        '1,8,32',
        '--T=1e3,10k,1M',
        '--batch',
        '4',
        '--heads',
        'none',
        '--no-quasi',
        '--dtype',
        'float64',
        '--repeats',
        '5',
        '--warmup',
        '0',
        '--max-iter',
        '20',
        '--max-memory',
        '512MiB',
        '--no-ort',
        '--out',
        '/tmp/x',
        '--budget',
        '2.5',
        '--max-time',
        '60',
      ]),
    );
    expect(o).toMatchObject({
      backend: 'cpu',
      nh: [1, 8, 32],
      T: [1000, 10000, 1000000],
      batch: 4,
      heads: [],
      quasi: false,
      dtype: 'float64',
      repeats: 5,
      warmup: 0,
      maxIter: 20,
      maxMemory: 512 * 2 ** 20,
      ort: false,
      out: '/tmp/x',
      budget: 2.5,
      maxTime: 60,
    });
  });

  it('takes 0 however it is written where 0 is allowed (--warmup 00 and --iteration-overhead 0.0 were refused)', () => {
    for (const zero of ['0', '00', '0.0', '.0', '0e3']) {
      expect(resolveOptions(parseArgs(['--warmup', zero])).warmup, zero).toBe(0);
      expect(resolveOptions(parseArgs(['--iteration-overhead', zero])).iterationOverhead, zero).toBe(0);
    }
    expect(() => parseArgs(['--warmup', '0.5'])).toThrow(/--warmup: expected a positive integer/);
  });

  it("chooses webgpu's sequential kernel (auto unless asked)", () => {
    expect(resolveOptions(parseArgs([])).sequentialKernel).toBe('auto');
    expect(resolveOptions(parseArgs(['--sequential-kernel', 'workgroup'])).sequentialKernel).toBe('workgroup');
    expect(resolveOptions(parseArgs(['--sequential-kernel=row'])).sequentialKernel).toBe('row');
    expect(() => parseArgs(['--sequential-kernel', 'warp'])).toThrow(ArgError);
  });

  it("chooses webgpu's dense scan kernel (auto unless asked)", () => {
    expect(resolveOptions(parseArgs([])).denseScanKernel).toBe('auto');
    expect(resolveOptions(parseArgs(['--dense-scan-kernel', 'invocation'])).denseScanKernel).toBe('invocation');
    expect(resolveOptions(parseArgs(['--dense-scan-kernel=workgroup'])).denseScanKernel).toBe('workgroup');
    expect(() => parseArgs(['--dense-scan-kernel', 'warp'])).toThrow(ArgError);
  });

  it('lets flags override the --quick profile', () => {
    const a = parseArgs(['--quick', '--nh', '2']);
    const o = resolveOptions(a, QUICK_CPU_PROFILE);
    expect(o.quick).toBe(true);
    expect(o.nh).toEqual([2]);
    expect(o.T).toEqual(QUICK_CPU_PROFILE.T);
    expect(resolveOptions(a).T).toEqual(QUICK_PROFILE.T);
    expect(resolveOptions(parseArgs([]), FULL_PROFILE).T).toEqual(FULL_PROFILE.T);
  });

  it('picks the small quick grid for CPU and software adapters', () => {
    expect(quickProfile('cpu', 'cpu (JavaScript)')).toBe(QUICK_CPU_PROFILE);
    expect(quickProfile('webgpu', 'llvmpipe (LLVM 15.0.7, 256 bits)')).toBe(QUICK_CPU_PROFILE);
    expect(quickProfile('webgpu', 'NVIDIA H100')).toBe(QUICK_PROFILE);
  });

  it.each([
    [['--bogus'], /unknown flag '--bogus'/],
    [['--nh'], /--nh needs a value/],
    [['--nh', '--quick'], /--nh needs a value/],
    [['--nh', '1,x'], /--nh: expected a positive integer up to 65536, got 'x'/],
    [['--nh', '0'], /--nh: expected a positive integer/],
    [['--T', '1.5'], /--T: expected a positive integer/],
    [['--dtype', 'float16'], /--dtype: expected float32 or float64, got 'float16'/],
    [['--max-memory', 'lots'], /--max-memory: expected a size/],
    [['--budget', '-1'], /--budget: expected a positive number/],
    [['--batch', '1e20'], /--batch: expected a positive integer up to 65536, got '1e20'/],
    [['--batch', '-1'], /--batch: expected a positive integer/],
    [['--T', '1e16'], /--T: expected a positive integer up to 2147483648/],
    [['--nh', '99999999999999999999'], /--nh: expected a positive integer up to 65536/],
    [['--seed', '4294967296'], /--seed: expected a positive integer up to 4294967295/],
    [['--repeats', '1M'], /--repeats: expected a positive integer up to 10000/],
    [['--max-iter', '1e7'], /--max-iter/],
    [['--max-iter', '1'], /at least 2/],
    [['--max-memory', '9999999PiB'], /--max-memory/],
    [['--max-memory', '99999999999GiB'], /--max-memory: expected a size from 1 byte up to 1PiB/],
    [['--max-memory', '0'], /--max-memory: expected a size from 1 byte/],
    [['--budget', '1e400'], /--budget: expected a positive number up to/],
    [['--max-time', 'Infinity'], /--max-time: expected a positive number/],
    [['--out', ''], /--out: expected a folder/],
    [['--quick=yes'], /--quick takes no value/],
    [['stray'], /unexpected argument 'stray'/],
  ])('rejects %j with a clear message', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(ArgError);
    expect(() => parseArgs(argv)).toThrow(message);
  });

  it('parses sizes', () => {
    expect(parseBytes('--m', '4GiB')).toBe(4 * 2 ** 30);
    expect(parseBytes('--m', '1.5 GB')).toBe(1.5e9);
    expect(parseBytes('--m', '1000')).toBe(1000);
  });

  it('takes --from for re-plotting', () => {
    expect(parseArgs(['--from', 'r.json']).from).toBe('r.json');
  });

  it('recognises --help and -h', () => {
    expect(parseArgs(['--help']).help).toBe(true);
    expect(parseArgs(['-h']).help).toBe(true);
  });
});
