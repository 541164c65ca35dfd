import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Checkpoint, readCheckpoint } from '@deerjs/nn';
import type { TrainConfig } from './config.js';

export const CHECKPOINT_FILE = 'checkpoint.ckpt';

/** Where a run writes, where its status lines go, and — when resuming — its checkpoint. */
export interface RunSetup {
  readonly log: (line: string) => void;
  readonly ckptPath: string;
  readonly ckpt: Checkpoint | undefined;
  /** The checkpoint's stored configuration when resuming (bar backend and out), else the CLI's. */
  readonly config: TrainConfig;
}

export async function setupRun(
  cli: TrainConfig,
  opts: { readonly resume?: boolean; readonly log?: (line: string) => void },
): Promise<RunSetup> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  mkdirSync(cli.out, { recursive: true });
  const ckptPath = join(cli.out, CHECKPOINT_FILE);
  const ckpt = opts.resume ? await readCheckpoint(ckptPath) : undefined;
  const config: TrainConfig = ckpt
    ? { ...(ckpt.config as TrainConfig), backend: cli.backend, out: cli.out }
    : cli;
  return { log, ckptPath, ckpt, config };
}
