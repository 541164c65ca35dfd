import { DeerError } from '@deerjs/core';
import type { EpochCheckpoints } from './epoch-checkpoints.js';

/**
 * The run was stopped (Ctrl-C, or the caller's `signal`) before its last step: the checkpoint holds
 * every step that finished, so `--resume` goes on from there. The step under way when the signal
 * came is not in it (its parameters were not updated).
 */
export class TrainingInterrupted extends DeerError {
  override name = 'TrainingInterrupted';
  constructor(
    readonly step: number,
    readonly checkpoint: string,
    /** false: stopped before there was a checkpoint (while the data was being made). */
    saved = true,
  ) {
    super(
      saved
        ? `interrupted after step ${step}; the checkpoint ${checkpoint} holds it: rerun with --resume to go on`
        : 'interrupted before the first step; nothing was saved',
    );
  }
}

/**
 * A training loop's view of its signal: `guard` runs a step and, where the signal stopped it (or
 * had already come), ends the progress line, saves the checkpoint and throws TrainingInterrupted.
 */
export class StepGuard {
  constructor(
    private readonly signal: AbortSignal | undefined,
    private readonly progress: { done(): void },
    private readonly checkpoints: EpochCheckpoints,
    private readonly path: string,
  ) {}

  private async stop(): Promise<TrainingInterrupted> {
    this.progress.done();
    return new TrainingInterrupted(await this.checkpoints.saveIfBehind(), this.path);
  }

  /** The solver options that carry the signal. */
  get solveOptions(): { signal?: AbortSignal } {
    return this.signal ? { signal: this.signal } : {};
  }

  async guard<R>(step: () => Promise<R>): Promise<R> {
    if (this.signal?.aborted) throw await this.stop();
    try {
      return await step();
    } catch (err) {
      if (this.signal?.aborted) throw await this.stop();
      throw err;
    }
  }
}

/**
 * An AbortSignal that the first SIGINT (Ctrl-C) aborts, so a run stops at its next read and keeps
 * what it finished; a second SIGINT ends the process at once, as Node's default would. `release`
 * removes the handler.
 */
export function interruptOnSigint(onFirst: () => void): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const handler = () => {
    if (controller.signal.aborted) process.exit(130);
    onFirst();
    controller.abort(new Error('SIGINT'));
  };
  process.on('SIGINT', handler);
  return { signal: controller.signal, release: () => process.off('SIGINT', handler) };
}
