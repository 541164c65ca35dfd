import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { outputDirProblem } from '@deerjs/app-shared';
import { OutputDirError } from './errors.js';

/** `mkdir -p dir` and prove it writable before any long work (see outputDirProblem). */
export function ensureOutputDir(dir: string): void {
  const problem = outputDirProblem(dir);
  if (problem !== undefined) throw new OutputDirError(dir, problem);
}

/**
 * Write `file` as a new file (a temp file beside it, renamed over it), so a symlink standing at that
 * name in --out is replaced, not written through to wherever it points.
 */
export function replaceFile(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { flag: 'wx' });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
