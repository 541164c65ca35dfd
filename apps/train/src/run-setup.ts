import { join } from 'node:path';
import { type Checkpoint, CheckpointError, readCheckpoint } from '@deerjs/nn';
import { TASKS, type TrainConfig } from './config.js';
import { ensureOutputDir } from './out-dir.js';

export const CHECKPOINT_FILE = 'checkpoint.ckpt';

/** Where a run writes, where its status lines go, and — when resuming — its checkpoint. */
export interface RunSetup {
  readonly log: (line: string) => void;
  readonly ckptPath: string;
  readonly ckpt: Checkpoint | undefined;
  /** The checkpoint's stored configuration when resuming (bar backend and out), else the CLI's. */
  readonly config: TrainConfig;
}

/**
 * Check the output folder (created, writable) and, when resuming, read the checkpoint and take its
 * configuration — all before any data is loaded or a backend created.
 */
export async function setupRun(
  cli: TrainConfig,
  opts: { readonly resume?: boolean; readonly log?: (line: string) => void },
): Promise<RunSetup> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  ensureOutputDir(cli.out);
  const ckptPath = join(cli.out, CHECKPOINT_FILE);
  const ckpt = opts.resume ? await readCheckpoint(ckptPath) : undefined;
  let config = cli;
  if (ckpt) {
    const stored = ckpt.config as Partial<TrainConfig> | null;
    if (stored === null || typeof stored !== 'object' || !(TASKS as readonly unknown[]).includes(stored.task))
      throw new CheckpointError(ckptPath, 'holds no deer-train configuration (no known task)');
    if (stored.task !== cli.task)
      throw new CheckpointError(ckptPath, `is from task ${stored.task}, not ${cli.task}`);
    config = { ...(stored as TrainConfig), backend: cli.backend, out: cli.out };
  }
  return { log, ckptPath, ckpt, config };
}

/** Steps in all and epochs to loop over: --steps alone runs as many epochs as it needs. */
export function runLength(c: TrainConfig, perEpoch: number): { total: number; epochs: number } {
  if (c.epochs === undefined) {
    const total = c.steps ?? perEpoch;
    return { total, epochs: Math.ceil(total / perEpoch) };
  }
  return { total: Math.min(c.steps ?? Number.POSITIVE_INFINITY, c.epochs * perEpoch), epochs: c.epochs };
}
