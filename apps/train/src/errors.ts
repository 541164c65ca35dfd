import { DeerError } from '@deerjs/core';

/**
 * Bad input to deer-train: a flag, a path or a data file. The CLI prints the message as one line
 * and exits with code 2; every message names the flag or file, what was expected and what came.
 */
export class TrainInputError extends DeerError {
  override name = 'TrainInputError';
}

/** A bad command line (unknown flag, missing task, flags that do not go together). */
export class UsageError extends TrainInputError {
  override name = 'UsageError';
}

/** One flag's value is malformed or out of range. */
export class FlagError extends UsageError {
  override name = 'FlagError';
  constructor(
    readonly flag: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`--${flag}: expected ${expected}, got ${got}`);
  }
}

/** A data file that cannot be used: names the file and the problem. */
export class DataFormatError extends TrainInputError {
  override name = 'DataFormatError';
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

/** The output folder cannot be created or written. */
export class OutputDirError extends TrainInputError {
  override name = 'OutputDirError';
  constructor(
    readonly dir: string,
    readonly problem: string,
  ) {
    super(`--out ${dir}: ${problem}`);
  }
}
