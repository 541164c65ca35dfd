import type { GridPoint } from './grid.js';

/**
 * Predicts the seconds one more point of a series will take from the last finished point of the
 * same series, assuming cost linear in T (both DEER's work and the sequential loop are O(T)).
 */
export class CostPredictor {
  private readonly last = new Map<string, { T: number; ms: number }>();

  record(p: GridPoint, msPerRun: number): void {
    this.last.set(p.series, { T: p.T, ms: msPerRun });
  }

  /** Seconds for one DEER and one sequential run, or undefined when nothing is known yet. */
  predictSeconds(p: GridPoint): number | undefined {
    const prev = this.last.get(p.series);
    return prev ? (prev.ms * (p.T / prev.T)) / 1000 : undefined;
  }
}
