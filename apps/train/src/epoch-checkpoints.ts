import { NonFiniteError, type Rng } from '@deerjs/core';
import { type Checkpoint, isRngState, writeCheckpoint } from '@deerjs/nn';

type RngState = Rng['state'];

/** The epoch generator state a deer-train checkpoint keeps (undefined in one it did not write). */
export function epochRngOf(checkpoint: Checkpoint): RngState | undefined {
  const epochRng = (checkpoint.extra as Partial<ResumeState> | null | undefined)?.epochRng;
  return isRngState(epochRng) ? epochRng : undefined;
}

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
    this.rng.state = epochRngOf(checkpoint)!;
  }

  /** Call before shuffling each epoch. */
  startEpoch(): void {
    this.epochRng = this.rng.state;
  }

  /** Save unless the last checkpoint already holds the current step; returns that step. */
  async saveIfBehind(): Promise<number> {
    const step = this.snapshot().step;
    if (step !== this.lastSaved) await this.save();
    return step;
  }

  async save(): Promise<void> {
    const state = this.snapshot();
    // A diverged run must not replace the last good checkpoint with one it cannot resume from.
    for (const [name, p] of Object.entries(state.params))
      for (let i = 0; i < p.length; i++)
        if (!Number.isFinite(p[i]!)) throw new NonFiniteError(`checkpoint of step ${state.step}: parameter ${name} (the previous checkpoint is kept)`, i, p[i]!);
    const extra: ResumeState = {
      epochRng: state.step % this.perEpoch === 0 ? this.rng.state : this.epochRng,
    };
    await writeCheckpoint(this.path, { ...state, rng: this.rng.state, extra });
    this.lastSaved = state.step;
  }
}
