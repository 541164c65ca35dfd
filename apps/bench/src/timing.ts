import type { Backend } from '@deerjs/core';

/** One timed run: wall time and what it produced. */
export interface Run<Out> {
  readonly ms: number;
  readonly output: Out;
}

export interface MeasureOptions {
  readonly warmup: number;
  readonly repeats: number;
  /** Milliseconds one method may spend on timed runs of one point. */
  readonly budgetMs: number;
}

export interface Measured<Out> {
  readonly samplesMs: number[];
  readonly warmupRuns: number;
  /** Why fewer runs than asked were made, if so. */
  readonly note: string | undefined;
  /** The output of the last run (the caller releases it). */
  readonly output: Out;
}

/**
 * A warm-up longer than this (and than the budget) is kept as the only sample: compiling kernels
 * and JIT take well under it, so a second run would only double the cost of the largest points.
 */
export const LONG_RUN_MS = 10_000;

/**
 * Warm up, then time up to `repeats` runs. When one run costs more than the budget, the repeats
 * shrink to what fits (at least one).
 */
export async function measure<Out>(
  run: () => Promise<Run<Out>>,
  release: (out: Out) => void,
  o: MeasureOptions,
): Promise<Measured<Out>> {
  let last: Run<Out> | undefined;
  let warmupRuns = 0;
  const keep = (r: Run<Out>) => {
    if (last) release(last.output);
    last = r;
  };
  for (let i = 0; i < o.warmup; i++) {
    keep(await run());
    warmupRuns++;
    if (last!.ms > Math.max(o.budgetMs, LONG_RUN_MS)) {
      return {
        samplesMs: [last!.ms],
        warmupRuns: 0,
        note: '1 run, no warm-up',
        output: last!.output,
      };
    }
  }
  const samplesMs: number[] = [];
  let spent = 0;
  for (let i = 0; i < o.repeats; i++) {
    const expected = last?.ms ?? 0;
    if (i > 0 && spent + expected > o.budgetMs) break;
    keep(await run());
    samplesMs.push(last!.ms);
    spent += last!.ms;
  }
  const note = samplesMs.length < o.repeats ? `${samplesMs.length}/${o.repeats} runs` : undefined;
  return { samplesMs, warmupRuns, note, output: last!.output };
}

/** A backend's own device clock, in ms (webgpu with `timestamp-query`); optional, not part of the interface. */
export function deviceClock(backend: Backend): (() => Promise<number | undefined>) | undefined {
  const b = backend as unknown as { deviceTimeMs?: () => Promise<number | undefined> };
  return typeof b.deviceTimeMs === 'function' ? () => b.deviceTimeMs!() : undefined;
}
