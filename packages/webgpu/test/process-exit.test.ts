import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { skipReason } from './adapter.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const skip = await skipReason();

describe.skipIf(skip !== null)('a Node process using the backend', () => {
  beforeAll(async () => {
    // The fixture imports the package by name, i.e. its dist: build it first.
    await run(
      process.execPath,
      [fileURLToPath(import.meta.resolve('typescript/bin/tsc')), '-p', 'tsconfig.json'],
      { cwd: root },
    );
  });

  it('exits by itself after solving a GRU and destroy()', async () => {
    const { stdout } = await run(process.execPath, ['test/fixtures/solve-gru.mjs'], {
      cwd: root,
      timeout: 60_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { iterations: number; last: number[] };
    expect(result.iterations).toBeGreaterThan(0);
    expect(result.last).toHaveLength(4);
    expect(result.last.every(Number.isFinite)).toBe(true);
  });

  it('exits cleanly when a destroyed backend is dropped and collected at once', async () => {
    // Before its GPU instance was held past destroy(), this aborted (SIGABRT/SIGSEGV) every run.
    const { stdout } = await run(process.execPath, ['--expose-gc', 'test/fixtures/dropped-after-destroy.mjs'], {
      cwd: root,
      timeout: 60_000,
    });
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ ok: true });
  });

  // In a process of its own: a vitest worker that lost a device sometimes crashed on its way out
  // (about one run in four of the webgpu files under load), failing files whose tests had passed.
  it('rejects a pending read and a running solve with DeviceLostError after a device loss, then every call throws it, and exits', async () => {
    const { stdout } = await run(process.execPath, ['test/fixtures/device-loss.mjs'], {
      cwd: root,
      timeout: 60_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, string>;
    expect(result).toEqual({
      read: 'DeviceLostError',
      solve: 'DeviceLostError',
      zeros: 'DeviceLostError',
      readAfter: 'DeviceLostError',
    });
  });
});
