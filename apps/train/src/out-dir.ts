import { outputDirProblem } from '@deerjs/app-shared';
import { OutputDirError } from './errors.js';

/** `mkdir -p dir` and prove it writable before any long work (see outputDirProblem). */
export function ensureOutputDir(dir: string): void {
  const problem = outputDirProblem(dir);
  if (problem !== undefined) throw new OutputDirError(dir, problem);
}
