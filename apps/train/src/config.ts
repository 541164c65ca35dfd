import type { DType } from '@deerjs/core';
import type { CellKind, Pooling, Solver } from '@deerjs/nn';

export const TASKS = ['fashion-mnist', 'eigenworms', 'hnn'] as const;
export type Task = (typeof TASKS)[number];

/** Everything that defines a run; stored in checkpoints, so a resumed run trains the same way. */
export interface TrainConfig {
  readonly task: Task;
  readonly backend: string;
  readonly dtype: DType;
  readonly solver: Solver;
  /** Passes over the training set; absent when --steps alone bounds the run. */
  readonly epochs?: number;
  /** Stop after this many optimizer steps in all (default: every batch of every epoch). */
  readonly steps?: number;
  readonly batch: number;
  readonly lr: number;
  /** Warm-up steps; default 5% of the run, at most 100. */
  readonly warmup?: number;
  readonly weightDecay: number;
  readonly clip: number;
  readonly seed: number;
  /** Use the first N examples of each split. */
  readonly limit?: number;
  readonly checkpointEvery: number;
  readonly out: string;
  readonly data?: string;
  readonly testData?: string;
  readonly synthetic: boolean;
  readonly length?: number;
  readonly cell: CellKind;
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number;
  readonly pooling: Pooling;
  readonly residual: boolean;
  /** Layer-normalise every recurrent layer's output. */
  readonly layerNorm?: boolean;
  readonly maxIter: number;
  /** hnn: training trajectories (orbits), held-out ones, grid points per trajectory (t_0 included), t_end. */
  readonly orbits?: number;
  readonly testOrbits?: number;
  readonly points?: number;
  readonly tEnd?: number;
}

/** Per-task defaults: the model and the optimizer settings that suit it. */
export const TASK_DEFAULTS: Record<Task, Partial<TrainConfig>> = {
  'fashion-mnist': { cell: 'mhgru', hidden: 32, heads: 4, layers: 2, batch: 16, lr: 3e-3, pooling: 'mean' },
  eigenworms: { cell: 'gru', hidden: 32, heads: 1, layers: 5, batch: 4, lr: 1e-3, pooling: 'mean' },
  // hnn: --hidden/--layers give the MLP of H; float64 since the targets come from a 1e-12 integrator.
  hnn: {
    hidden: 64,
    layers: 2,
    batch: 4,
    lr: 3e-3,
    dtype: 'float64',
    orbits: 4,
    testOrbits: 2,
    points: 10_000,
    tEnd: 10,
  },
};
