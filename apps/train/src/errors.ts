/** A data file that cannot be used: names the file and the problem. */
export class DataFormatError extends Error {
  override name = 'DataFormatError';
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

/** A bad command line. */
export class UsageError extends Error {
  override name = 'UsageError';
}
