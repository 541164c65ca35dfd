import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from '@deerjs/nn';
import { train } from '../src/train.js';
import { configOf, quiet, tempDir, tinyEigenworms } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist', 'cli.js');

interface Run {
  readonly code: number | null;
  readonly stderr: string;
  readonly stdout: string;
  readonly ms: number;
}

function runCli(args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout, ms: performance.now() - t0 });
    });
  });
}

function idx(dims: number[], data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out.set([0, 0, 8, dims.length]);
  const v = new DataView(out.buffer);
  for (const [i, d] of dims.entries()) v.setUint32(4 + 4 * i, d, false);
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** A Fashion-MNIST folder whose training images have the given dimensions (test images 2 × 2). */
function idxDir(trainDims: [number, number, number]): string {
  const dir = tempDir('cli-idx');
  const [n, r, c] = trainDims;
  writeFileSync(join(dir, 'train-images-idx3-ubyte'), idx(trainDims, new Uint8Array(n * r * c)));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([n], new Uint8Array(n)));
  writeFileSync(join(dir, 't10k-images-idx3-ubyte'), idx([1, 2, 2], [1, 2, 3, 4]));
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx([1], [0]));
  return dir;
}


describe('deer-train: every bad flag, path or data file is one line on stderr and exit code 2', () => {

  const work = tempDir('cli');
  const aFile = join(work, 'a-file');
  writeFileSync(aFile, 'x');
  const hugeTs = join(work, 'huge_TRAIN.ts');
  writeFileSync(
    hugeTs,
    '@problemName X\n@univariate false\n@dimensions 6\n@equalLength true\n@seriesLength 100000000000\n@classLabel true 1 2\n@data\n1,2:3,4:5,6:1,2:3,4:5,6:1\n',
  );
  const emptyDir = join(work, 'empty-out');
  mkdirSync(emptyDir);
  const usedDir = join(work, 'used-out');
  mkdirSync(usedDir);
  writeFileSync(join(usedDir, 'checkpoint.ckpt'), 'an earlier run');
  const oneCase = join(work, 'one.ts');
  writeFileSync(
    oneCase,
    '@problemName X\n@univariate false\n@dimensions 2\n@equalLength true\n@seriesLength 3\n@classLabel true a b\n@data\n1,2,3:4,5,6:a\n',
  );
  const hnn = ['hnn', '--orbits', '1', '--test-orbits', '1', '--points', '3', '--out', join(work, 'h')];
  const syn = ['eigenworms', '--synthetic', '--out', join(work, 'out')];

  const cases: [string, string[], RegExp][] = [
    ['a negative learning rate', [...syn, '--lr', '-1'], /FlagError: --lr: expected a number > 0.*got "-1"/],
    ['a negative seed', [...syn, '--seed', '-3'], /--seed: expected an integer, at least 0/],
    [
      'a zero weight decay is fine but a negative one is not',
      [...syn, '--weight-decay=-0.1'],
      /--weight-decay: expected a number ≥ 0/,
    ],
    ['--batch 1e20', [...syn, '--batch', '1e20'], /--batch: expected a positive integer ≤ 65536, got "1e20"/],
    ['--hidden 1.5', [...syn, '--hidden', '1.5'], /--hidden: expected a positive integer/],
    ['--epochs 0', [...syn, '--epochs', '0'], /--epochs: expected a positive integer/],
    ['--clip NaN', [...syn, '--clip', 'NaN'], /--clip: expected a number ≥ 0/],
    // The model refuses it too, but that had been after the backend and the data (exit 1).
    ['--layer-norm over one unit', [...syn, '--hidden', '1', '--layer-norm'], /UsageError: --layer-norm needs more than one unit/],
    [
      '--lr × --weight-decay > 1 (the decay flipped the weights every step, then they overflowed)',
      [...syn, '--lr', '1000', '--weight-decay', '1000'],
      /UsageError: --lr 1000 × --weight-decay 1000 > 1/,
    ],
    ['an empty number', [...syn, '--steps', ''], /--steps: expected a positive integer .*got ""/],
    [
      'an unknown backend (before any data is loaded)',
      ['fashion-mnist', '--data', '/nonexistent', '--backend', 'nope'],
      /--backend: expected .*cpu.*got "nope"/,
    ],
    ['--heads with a gru cell', [...syn, '--cell', 'gru', '--heads', '2'], /--heads 2 needs --cell mhgru/],
    ['hnn flags elsewhere', [...syn, '--points', '10'], /--points is for hnn only/],
    ['model flags on hnn', ['hnn', '--cell', 'lstm'], /--cell does not apply to hnn/],
    [
      '--length without --synthetic',
      ['eigenworms', '--data', hugeTs, '--length', '10'],
      /--length is for --synthetic/,
    ],
    [
      'a synthetic set too big to hold',
      [...syn, '--length', '1000000'],
      /more than the \d+ this app holds in memory/,
    ],
    [
      'a synthetic sequence longer than the app takes',
      [...syn, '--length', '100000000'],
      /--length: expected a positive integer ≤ 1048576, got "100000000"/,
    ],
    ['a flag given twice', [...syn, '--steps', '1', '--steps', '3'], /UsageError: --steps given twice/],
    ['a switch given twice', [...syn, '--synthetic'], /--synthetic given twice/],
    [
      'flags that --resume would ignore',
      ['eigenworms', '--resume', '--steps', '50', '--lr', '0.5', '--out', emptyDir],
      /UsageError: --resume .*only --backend and --out may be given with it, not --steps, --lr$/,
    ],
    [
      'a fresh run into a folder holding a checkpoint',
      ['eigenworms', '--synthetic', '--out', usedDir],
      /OutputDirError: --out .*used-out: holds an earlier run's checkpoint\.ckpt: pass --resume to continue that run, --overwrite/,
    ],
    [
      '--resume with --overwrite',
      ['eigenworms', '--resume', '--overwrite', '--out', usedDir],
      /UsageError: --resume continues the run in --out and --overwrite replaces it: give one/,
    ],
    [
      'hnn --t-end whose grid points collapse',
      [...hnn, '--t-end', '5e-324'],
      /FlagError: --t-end: expected a grid spacing .* at least 1e-9 .*got "5e-324"/,
    ],
    ['hnn --t-end too long to integrate', [...hnn, '--t-end', '1e6'], /FlagError: --t-end: expected .* ≤ 1000, got "1e6"/],
    ['an unknown flag', [...syn, '--bogus'], /^deer-train: UsageError: unknown flag '--bogus' \(see --help\)$/],
    ['no task', ['--synthetic'], /expected one TASK/],
    [
      '--out naming a file',
      ['eigenworms', '--synthetic', '--out', aFile],
      /OutputDirError: --out .*a-file: is a file, expected a folder/,
    ],
    [
      '--out below a file',
      ['eigenworms', '--synthetic', '--out', join(aFile, 'sub')],
      /a-file is a file, expected a folder/,
    ],
    ...(process.platform === 'linux'
      ? ([
          [
            '--out under /proc',
            ['eigenworms', '--synthetic', '--out', '/proc/deer/x'],
            /on the proc pseudo-filesystem/,
          ],
        ] as [string, string[], RegExp][])
      : []),
    [
      '--resume without a checkpoint',
      ['eigenworms', '--resume', '--out', emptyDir],
      /CheckpointError: .*checkpoint\.ckpt: cannot be read \(ENOENT\)/,
    ],
    [
      'a --data folder without the IDX files says what it must hold',
      ['fashion-mnist', '--data', emptyDir, '--out', join(work, 'o7')],
      /DataFormatError: .*train-images-idx3-ubyte\.gz: not found \(nor .*\): --data names the folder of the four IDX files/,
    ],
    [
      'IDX files with 0 images',
      ['fashion-mnist', '--data', idxDir([0, 2, 2]), '--out', join(work, 'o1')],
      /DataFormatError: .*train-images-idx3-ubyte: dimension 1 .* is 0/,
    ],
    [
      'IDX files with 0 columns',
      ['fashion-mnist', '--data', idxDir([1, 2, 0]), '--out', join(work, 'o2')],
      /DataFormatError: .*dimension 3 .* is 0/,
    ],
    [
      'test images of another size',
      ['fashion-mnist', '--data', idxDir([1, 3, 3]), '--out', join(work, 'o3')],
      /t10k-images-idx3-ubyte: images are 2 × 2, expected 3 × 3/,
    ],
    [
      'IDX images longer than a sequence the app takes',
      ['fashion-mnist', '--data', idxDir([1, 1025, 1024]), '--out', join(work, 'o5')],
      /train-images-idx3-ubyte: images of 1025 × 1024 = 1049600 pixels exceed the 1048576 time steps/,
    ],
    [
      'a .ts file whose 20% hold-out leaves no training case',
      ['eigenworms', '--data', oneCase, '--out', join(work, 'o6')],
      /one\.ts: 1 case\(s\) and no test file: .* leaves no case to train on/,
    ],
    [
      'a .ts file declaring a huge @seriesLength',
      ['eigenworms', '--data', hugeTs, '--out', join(work, 'o4')],
      /huge_TRAIN\.ts: @seriesLength 100000000000 × @dimensions 6 = .* cannot fit/,
    ],
  ];

  it.each(cases)('%s', async (_what, args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^deer-train: \w+Error: /);
    expect(lines[0]).toMatch(message);
    expect(r.ms).toBeLessThan(10_000);
  });
  // Refused by the backend's factory before it makes a device (making and destroying one to learn
  // its dtypes crashed llvmpipe runs now and then).
  it('a dtype the backend lacks: the --dtype hint and exit 2', async () => {
    const r = await runCli([...syn, '--backend', 'webgpu', '--dtype', 'float64', '--steps', '1']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    // One line, before any data is read (the backend is opened first).
    const lines = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('Warning: '));
    expect(lines).toEqual([expect.stringMatching(/^deer-train: UsageError: backend webgpu does not support float64 .*pass --dtype float32$/)]);
  });
});

describe('deer-train --resume refuses a checkpoint it cannot continue: one line, exit 2, before training', () => {
  const work = tempDir('resume-bad');
  const good = join(work, 'good');
  const variant = (name: string, edit: (c: Checkpoint) => Checkpoint) => {
    const dir = join(work, name);
    mkdirSync(dir);
    const c = decodeCheckpoint(readFileSync(join(good, 'checkpoint.ckpt')), 'good');
    writeFileSync(join(dir, 'checkpoint.ckpt'), encodeCheckpoint(edit(c)));
    return dir;
  };
  beforeAll(async () => {
    await train(configOf([...tinyEigenworms(1), '--out', good]), quiet);
  }, 120_000);

  it.each([
    // What writeCheckpoint writes by default: no extra (it had been a TypeError).
    ['no epoch generator state', (c: Checkpoint) => ({ ...c, extra: undefined }), /holds no epoch generator state/],
    ['a stored batch of 0', (c: Checkpoint) => ({ ...c, config: { ...(c.config as object), batch: 0 } }), /stored configuration: --batch: expected a positive integer/],
    ['a stored lr that is a string', (c: Checkpoint) => ({ ...c, config: { ...(c.config as object), lr: '0.1' } }), /stored configuration: lr "0\.1" is not what a command line gives/],
    [
      'moments of the wrong length',
      (c: Checkpoint) => {
        const [name, m] = Object.entries(c.optimizer.m)[0]!;
        return { ...c, optimizer: { ...c.optimizer, m: { ...c.optimizer.m, [name]: m.subarray(1) } } };
      },
      /adam\.m\/.*: expected \d+ values \(as the parameter\), got \d+/,
    ],
    [
      'a negative second moment',
      (c: Checkpoint) => {
        const [name, v] = Object.entries(c.optimizer.v)[0]!;
        const w = Float64Array.from(v);
        w[1] = -1e-9;
        return { ...c, optimizer: { ...c.optimizer, v: { ...c.optimizer.v, [name]: w } } };
      },
      /adam\.v\/.*\[1\] is -1e-9: expected a finite number ≥ 0 \(a second moment\)/,
    ],
    [
      'a NaN parameter',
      (c: Checkpoint) => {
        const [name, p] = Object.entries(c.params).at(-1)!;
        const w = Float64Array.from(p);
        w[0] = Number.NaN;
        return { ...c, params: { ...c.params, [name]: w } };
      },
      /param\/.*\[0\] is NaN: expected a finite number/,
    ],
  ] as const)('%s', async (name, edit, message) => {
    const r = await runCli(['eigenworms', '--resume', '--out', variant(name.replace(/\W+/g, '-'), edit)]);
    expect(r.code).toBe(2);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^deer-train: CheckpointError: /);
    expect(lines[0]).toMatch(message);
  });
});
