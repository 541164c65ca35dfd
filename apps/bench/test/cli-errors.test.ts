import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ArgError } from '../src/args.js';
import { ensureOutputDir, OutputDirError } from '../src/out-dir.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = path.join(root, 'dist', 'cli.js');
const work = mkdtempSync(path.join(tmpdir(), 'deer-bench-cli-'));
const aFile = path.join(work, 'a-file');
writeFileSync(aFile, 'x');
const point = {
  point: { id: 'gru-n1-T100-dense', series: 'nh=1', hiddenSize: 1, inputSize: 1, jacobian: 'dense', blockSize: 1, T: 100, batch: 1 },
  status: 'ok',
  deer: { medianMs: 1, samplesMs: [1], warmupRuns: 0, iterations: 3, converged: true, fellBack: false, structure: 'dense', exactJacobian: true, windows: 1 },
  sequential: { medianMs: 2, samplesMs: [2], warmupRuns: 0 },
  speedupSequential: 2,
  maxDiffDeer: 1e-7,
  estimatedBytes: 1000,
  wallMs: 5,
};
/** The smallest results.json that --from prints and plots: one measured point. */
const report = {
  tool: 'deer-bench',
  version: 1,
  startedAt: '2025-01-01T00:00:00.000Z',
  wallMs: 10,
  machine: { cpu: 'cpu', cores: 2, memoryBytes: 2 ** 30, platform: 'linux', arch: 'x64', node: 'v20', hostname: 'h' },
  backend: { name: 'cpu', device: 'cpu (JavaScript)', maxBufferBytes: 2 ** 30 },
  dtype: 'float32',
  git: null,
  onnxruntime: null,
  options: { batch: 1, repeats: 1, warmup: 0 },
  points: [point],
};
const writeJson = (name: string, v: unknown) => {
  const file = path.join(work, name);
  writeFileSync(file, JSON.stringify(v));
  return file;
};
const results = writeJson('results.json', report);
const noPoints = writeJson('no-points.json', { tool: 'deer-bench', points: [] });
const noT = writeJson('no-t.json', { ...report, points: [{ ...point, point: { ...point.point, T: undefined } }] });
const noSpeedup = writeJson('no-speedup.json', { ...report, points: [{ ...point, speedupSequential: null }] });
const badOrt = writeJson('bad-ort.json', { ...report, points: [{ ...point, ort: 5 }] });
const negative = writeJson('negative.json', { ...report, points: [{ ...point, deer: { ...point.deer, medianMs: -1 } }] });

function runCli(
  args: readonly string[],
): Promise<{ code: number | null; stderr: string; stdout: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    // A hang (e.g. node's recursive mkdir under /proc) is killed and fails the test below.
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout, ms: performance.now() - t0 });
    });
  });
}

describe('ensureOutputDir', () => {
  it('creates nested folders and leaves no probe file behind', () => {
    const dir = path.join(work, 'x', 'y', 'z');
    ensureOutputDir(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
    ensureOutputDir(dir); // an existing, writable folder is fine
  });

  it('rejects a file, a path below a file and (on Linux) /proc with a typed error', () => {
    for (const [dir, problem] of [
      [aFile, /a-file: is a file, expected a folder/],
      [path.join(aFile, 'sub'), /a-file is a file, expected a folder/],
      ...(process.platform === 'linux' ? [['/proc/deer-bench/x', /proc pseudo-filesystem/] as const] : []),
    ] as const) {
      let err: unknown;
      try {
        ensureOutputDir(dir);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(OutputDirError);
      expect(err).toBeInstanceOf(ArgError);
      expect((err as Error).message).toMatch(problem);
    }
    expect(existsSync(path.join(aFile, 'sub'))).toBe(false);
  });
});

describe('deer-bench: bad flags and --out fail at once with one line and exit code 2', () => {
  beforeAll(() => {
    execFileSync(
      process.execPath,
      [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')],
      { stdio: 'inherit' },
    );
  }, 120_000);

  const cases: [string, string[], RegExp][] = [
    [
      '--out naming a file',
      ['--backend', 'cpu', '--out', aFile],
      /--out .*a-file: is a file, expected a folder/,
    ],
    [
      '--out below a file',
      ['--backend', 'cpu', '--out', path.join(aFile, 'r')],
      /is a file, expected a folder/,
    ],
    ...(process.platform === 'linux'
      ? ([
          [
            '--out under /proc (no hang)',
            ['--backend', 'cpu', '--out', '/proc/deer/x'],
            /proc pseudo-filesystem/,
          ],
        ] as [string, string[], RegExp][])
      : []),
    [
      '--from with --out naming a file',
      ['--from', results, '--out', aFile],
      /--out .*a-file: is a file, expected a folder/,
    ],
    [
      '--from a results.json without the run fields',
      ['--from', noPoints, '--out', path.join(work, 'o1')],
      /--from: .*no-points\.json: results\.backend is missing or not what deer-bench writes/,
    ],
    ['--from a point without T', ['--from', noT], /no-t\.json: points\[0\]\.point\.T is missing/],
    [
      '--from a measured point without its speedup',
      ['--from', noSpeedup],
      /points\[0\]\.speedupSequential is missing/,
    ],
    ['--from a point whose ORT result is a number', ['--from', badOrt], /points\[0\]\.ort is missing/],
    ['--from a negative time', ['--from', negative], /points\[0\]\.deer is missing or not what deer-bench writes/],
    // Both given: refused before a backend starts or --out is made (it had left an empty points.jsonl).
    [
      '--heads that do not divide --heads-size',
      ['--backend', 'cpu', '--heads', '3', '--heads-size', '8', '--out', path.join(work, 'o3')],
      /--heads: 3 heads do not divide --heads-size 8$/,
    ],
    [
      '--from with flags it would ignore',
      ['--from', results, '--nh', '3', '--backend', 'nope', '--quick'],
      /--from re-plots an earlier run and takes only --out, not --nh, --backend, --quick$/,
    ],
    // Refused by the factory before any device is made (making and destroying one crashed llvmpipe runs).
    [
      'a dtype the backend lacks',
      ['--backend', 'webgpu', '--dtype', 'float64', '--out', path.join(work, 'o2')],
      /backend 'webgpu' does not support float64 .*use --dtype float32$/,
    ],
    ['a flag given twice', ['--nh', '2', '--nh', '1'], /--nh given twice/],
    ['a flag named like an Object.prototype member', ['--constructor', 'x'], /unknown flag '--constructor'/],
    ['a switch and its opposite', ['--quasi', '--no-quasi'], /--quasi and --no-quasi given together/],
    ['--batch 1e20', ['--batch', '1e20'], /--batch: expected a positive integer up to 65536, got '1e20'/],
    ['--T too long', ['--T', '1e12'], /--T: expected a positive integer up to/],
    ['--max-memory beyond 1 PiB', ['--max-memory', '2PiB'], /--max-memory/],
    ['--seed -1', ['--seed', '-1'], /--seed: expected a positive integer/],
  ];

  it.each(cases)('%s', async (_what, args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^deer-bench: /);
    expect(lines[0]).toMatch(message);
    expect(r.ms).toBeLessThan(10_000);
  });

  it('leaves no --out folder behind when the flags are refused', () => {
    expect(existsSync(path.join(work, 'o3'))).toBe(false);
  });

  it('--from re-plots a complete results.json', async () => {
    const out = path.join(work, 'replot');
    const r = await runCli(['--from', results, '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/1 points \(1 ok/);
    expect(readdirSync(out).sort()).toEqual(['results.json', 'speedup-sequential.svg']);
  });
});
