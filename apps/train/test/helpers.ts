import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCli } from '../src/args.js';
import type { TrainConfig } from '../src/config.js';
import { ProgressBar } from '../src/progress.js';

export const quiet = {
  log: () => {},
  progress: new ProgressBar({ isTTY: false, write: () => true } as unknown as NodeJS.WriteStream),
};

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `deer-train-${prefix}-`));
}

/** A config as the CLI would make it from these flags. */
export function configOf(args: string[]): TrainConfig {
  const p = parseCli(args);
  if (p.help) throw new Error('unexpected --help');
  return p.config;
}

export const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;
