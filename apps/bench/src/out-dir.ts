import { outputDirProblem } from '@deerjs/app-shared';
import { ArgError } from './args.js';

/** --out cannot be created or written; names the path and the problem. */
export class OutputDirError extends ArgError {
  override name = 'OutputDirError';
  constructor(
    readonly dir: string,
    readonly problem: string,
    flag = '--out',
  ) {
    super(`${flag} ${dir}: ${problem}`);
  }
}

/** `mkdir -p dir` and prove it writable before any long work (see outputDirProblem). */
export function ensureOutputDir(dir: string): void {
  const problem = outputDirProblem(dir);
  if (problem !== undefined) throw new OutputDirError(dir, problem);
}
