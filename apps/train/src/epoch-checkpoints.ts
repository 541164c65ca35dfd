import type { Rng } from '@deerjs/core';
import { type Checkpoint, writeCheckpoint } from '@deerjs/nn';

type RngState = [number, number, number, number];

interface ResumeState {
  /** Generator state at the start of the epoch the checkpoint falls in (reshuffles it identically). */
  readonly epochRng: RngState;
}

/**
 * Checkpoints that let a resumed run reshuffle its epoch exactly as the interrupted one did: each
 * keeps the generator state from the start of its epoch, next to everything `snapshot` gives.
 */
export class EpochCheckpoints {
  private epochRng: RngState;
  /** The step of the last checkpoint written (or resumed from). */
  lastSaved: number;

  constructor(
    private readonly path: string,
    private readonly rng: Rng,
    private readonly perEpoch: number,
    startStep: number,
    private readonly snapshot: () => Omit<Checkpoint, 'rng' | 'extra'>,
  ) {
    this.epochRng = rng.state;
    this.lastSaved = startStep;
  }

  /** Rewind the generator to the start of the resumed checkpoint's epoch. */
  resume(checkpoint: Checkpoint): void {
    this.rng.state = (checkpoint.extra as ResumeState).epochRng;
  }

  /** Call before shuffling each epoch. */
  startEpoch(): void {
    this.epochRng = this.rng.state;
  }

  async save(): Promise<void> {
    const state = this.snapshot();
    const extra: ResumeState = {
      epochRng: state.step % this.perEpoch === 0 ? this.rng.state : this.epochRng,
    };
    await writeCheckpoint(this.path, { ...state, rng: this.rng.state, extra });
    this.lastSaved = state.step;
  }
}
