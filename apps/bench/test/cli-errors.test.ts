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
const results = path.join(work, 'results.json');
writeFileSync(results, '{"tool":"deer-bench"}');

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
});
