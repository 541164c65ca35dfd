import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { replaceFile } from '@deerjs/app-shared';

export interface StepRecord {
  readonly type: 'step';
  readonly step: number;
  readonly epoch: number;
  readonly loss: number;
  readonly acc: number;
  readonly lr: number;
  readonly gradNorm: number;
  readonly ms: number;
  /** Newton iterations summed over layers (0 for the sequential solver). */
  readonly newton: number;
  readonly fellBack: boolean;
}

export interface EvalRecord {
  readonly type: 'eval';
  readonly step: number;
  readonly loss: number;
  readonly acc: number;
  readonly examples: number;
}

export type MetricRecord = StepRecord | EvalRecord;

/** hnn: one optimizer step of the Hamiltonian network. */
export interface HnnStepRecord {
  readonly type: 'step';
  readonly step: number;
  readonly epoch: number;
  /** MSE between the integrated and the true trajectories. */
  readonly loss: number;
  readonly lr: number;
  readonly gradNorm: number;
  readonly ms: number;
  /** Newton iterations (0 for the sequential solver). */
  readonly newton: number;
  readonly fellBack: boolean;
}

/** hnn: the held-out orbits at the end. */
export interface HnnEvalRecord {
  readonly type: 'eval';
  readonly step: number;
  readonly loss: number;
  /** max_t |H(ŷ_t) − H(y_0)| / |H(y_0)| with the true H, over the held-out orbits. */
  readonly energyDrift: number;
  readonly examples: number;
}

export function readMetrics<R extends { type: string; step: number } = MetricRecord>(file: string): R[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as R];
      } catch {
        return []; // a line cut short by a crash
      }
    });
}

/** JSON lines, appended one record at a time. */
export class MetricsLog<R extends { type: string; step: number } = MetricRecord> {
  constructor(readonly file: string) {}

  /** Start fresh, or (resuming) keep the step records up to and including `step`. */
  reset(keepUpTo?: number): Extract<R, { type: 'step' }>[] {
    type S = Extract<R, { type: 'step' }>;
    const kept =
      keepUpTo === undefined
        ? []
        : readMetrics<R>(this.file).filter((r): r is S => r.type === 'step' && r.step <= keepUpTo);
    replaceFile(this.file, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    return kept;
  }

  append(r: R): void {
    appendFileSync(this.file, `${JSON.stringify(r)}\n`);
  }
}

/**
 * Mean time of the steps this process ran (those after `resumedAt`), or of every recorded step where
 * it ran none (a finished run resumed to evaluate again had reported 0 ms/step).
 */
export function meanStepMs(history: readonly { readonly step: number; readonly ms: number }[], resumedAt = 0): number {
  const ran = history.filter((h) => h.step > resumedAt);
  const over = ran.length > 0 ? ran : history;
  return over.length > 0 ? over.reduce((a, h) => a + h.ms, 0) / over.length : Number.NaN;
}
