import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

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

export function readMetrics(file: string): MetricRecord[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as MetricRecord];
      } catch {
        return []; // a line cut short by a crash
      }
    });
}

/** JSON lines, appended one record at a time. */
export class MetricsLog {
  constructor(readonly file: string) {}

  /** Start fresh, or (resuming) keep the step records up to and including `step`. */
  reset(keepUpTo?: number): StepRecord[] {
    const kept =
      keepUpTo === undefined
        ? []
        : readMetrics(this.file).filter((r): r is StepRecord => r.type === 'step' && r.step <= keepUpTo);
    writeFileSync(this.file, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    return kept;
  }

  append(r: MetricRecord): void {
    appendFileSync(this.file, `${JSON.stringify(r)}\n`);
  }
}
