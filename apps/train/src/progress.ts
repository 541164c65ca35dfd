export interface ProgressInfo {
  readonly step: number;
  readonly total: number;
  readonly ms: number;
  readonly loss: number;
  /** Batch accuracy; absent for regression tasks (hnn). */
  readonly acc?: number;
  readonly newton: number;
}

/** One status line on stderr: redrawn in place on a terminal, printed now and then otherwise. */
export class ProgressBar {
  private readonly tty: boolean;
  private lastPrinted = -1;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly width = 24,
  ) {
    this.tty = stream.isTTY === true;
  }

  update(p: ProgressInfo): void {
    const frac = p.total > 0 ? Math.min(1, p.step / p.total) : 0;
    const filled = Math.round(frac * this.width);
    const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(this.width - filled)}`;
    const line = `[${bar}] step ${p.step}/${p.total} | ${p.ms.toFixed(0)} ms/step | loss ${p.loss < 1e-3 ? p.loss.toExponential(3) : p.loss.toFixed(4)}${p.acc === undefined ? '' : ` | acc ${(100 * p.acc).toFixed(1)}%`} | newton ${p.newton}`;
    if (this.tty) this.stream.write(`\r\x1b[K${line}`);
    else {
      const every = Math.max(1, Math.floor(p.total / 20));
      if (p.step === p.total || p.step - this.lastPrinted >= every) {
        this.stream.write(`${line}\n`);
        this.lastPrinted = p.step;
      }
    }
  }

  done(): void {
    if (this.tty) this.stream.write('\n');
  }
}
