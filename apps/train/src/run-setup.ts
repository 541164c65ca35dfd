import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Checkpoint, CheckpointError, type Params, readCheckpoint, warmupCosine } from '@deerjs/nn';
import { parseCli } from './args.js';
import { epochRngOf } from './epoch-checkpoints.js';
import { TASKS, type TrainConfig } from './config.js';
import { OutputDirError, TrainInputError } from './errors.js';
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
  opts: { readonly resume?: boolean; readonly overwrite?: boolean; readonly log?: (line: string) => void },
): Promise<RunSetup> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  ensureOutputDir(cli.out);
  const ckptPath = join(cli.out, CHECKPOINT_FILE);
  // A fresh run would truncate metrics.jsonl but leave the old checkpoint, and a later --resume
  // would then continue the old run under the new one's metrics; removing it unasked could lose
  // hours of training. So: refused, unless the user says to start over.
  if (!opts.resume && existsSync(ckptPath)) {
    if (!opts.overwrite)
      throw new OutputDirError(
        cli.out,
        `holds an earlier run's ${CHECKPOINT_FILE}: pass --resume to continue that run, --overwrite to start a new one in its place, or another --out`,
      );
    rmSync(ckptPath);
    log(`--overwrite: removed the earlier run's ${ckptPath}`);
  }
  const ckpt = opts.resume ? await readCheckpoint(ckptPath) : undefined;
  let config = cli;
  if (ckpt) {
    const stored = ckpt.config as Partial<TrainConfig> | null;
    if (stored === null || typeof stored !== 'object' || !(TASKS as readonly unknown[]).includes(stored.task))
      throw new CheckpointError(ckptPath, 'holds no deer-train configuration (no known task)');
    if (stored.task !== cli.task)
      throw new CheckpointError(ckptPath, `is from task ${stored.task}, not ${cli.task}`);
    config = { ...storedConfig(ckptPath, stored as Record<string, unknown>), backend: cli.backend, out: cli.out };
    checkOptimizerFits(ckptPath, ckpt);
    if (!epochRngOf(ckpt))
      throw new CheckpointError(
        ckptPath,
        `holds no epoch generator state (extra.epochRng ${JSON.stringify((ckpt.extra as { epochRng?: unknown } | undefined)?.epochRng)}): not written by deer-train`,
      );
  }
  return { log, ckptPath, ckpt, config };
}

/** The command-line flags that give `key: value` of a configuration (none for a switch left off). */
function flagsOf(key: string, value: unknown): string[] {
  const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (key === 'residual') return value === false ? ['--no-residual'] : [];
  if (key === 'layerNorm' || key === 'synthetic') return value === true ? [flag] : [];
  return [`${flag}=${String(value)}`];
}

/**
 * A checkpoint's stored configuration, checked as the command line that would give it: a value no
 * flag accepts (a batch of 0, an lr that is a string) is a CheckpointError here, not a crash
 * after the resume has started.
 */
function storedConfig(ckptPath: string, stored: Record<string, unknown>): TrainConfig {
  // The data flags first (a task needs them); then only values that the command line built so far
  // would not give: some flags may not be given with others (--heads without --cell mhgru, --cell
  // on hnn), though their defaults are stored. Defaults depend on earlier flags (the cell sets the
  // default heads: a gru run stores heads 1, while fashion-mnist's default cell has 4), so they are
  // read again after each flag, the cell's first.
  const dataKeys = ['synthetic', 'data', 'testData', 'length'];
  const argv = [String(stored.task)];
  for (const key of dataKeys) if (stored[key] !== undefined) argv.push(...flagsOf(key, stored[key]));
  const defaults = () => {
    try {
      const p = parseCli(argv);
      return p.help ? {} : (p.config as unknown as Record<string, unknown>);
    } catch {
      return {}; // Reported below, with every flag.
    }
  };
  const keys = Object.keys(stored).sort((a, b) => Number(b === 'cell') - Number(a === 'cell'));
  for (const key of keys) {
    const value = stored[key];
    if (key === 'task' || dataKeys.includes(key) || value === undefined || Object.is(defaults()[key], value)) continue;
    argv.push(...flagsOf(key, value));
  }
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(argv);
  } catch (err) {
    if (err instanceof TrainInputError) throw new CheckpointError(ckptPath, `stored configuration: ${err.message}`);
    throw err;
  }
  if (parsed.help) throw new CheckpointError(ckptPath, 'stored configuration: not a configuration');
  const config = parsed.config as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(stored)) {
    if (!Object.is(config[key], value))
      throw new CheckpointError(ckptPath, `stored configuration: ${key} ${JSON.stringify(value)} is not what a command line gives (${JSON.stringify(config[key])})`);
  }
  return parsed.config;
}

/**
 * A resumed step within the run: past its total the loop would run nothing and report the run
 * done at a step it never had (a checkpoint edited, or written by another run length).
 */
export function checkResumeStep(ckptPath: string, ckpt: Checkpoint | undefined, total: number): void {
  if (ckpt && ckpt.step > total) throw new CheckpointError(ckptPath, `step ${ckpt.step} is past the run's ${total} steps`);
}

/**
 * The stored parameters finite, and the AdamW moments one per parameter, of its length, finite, the
 * second moment ≥ 0 (a run never writes anything else: an edited or foreign file would otherwise
 * turn every later step's update into NaN, read as an overflow).
 */
function checkOptimizerFits(ckptPath: string, ckpt: Checkpoint): void {
  for (const [name, p] of Object.entries(ckpt.params)) {
    checkEntries(ckptPath, `param/${name}`, p, Number.NEGATIVE_INFINITY);
    for (const [which, group, least] of [
      ['adam.m', ckpt.optimizer.m, Number.NEGATIVE_INFINITY],
      ['adam.v', ckpt.optimizer.v, 0],
    ] as const) {
      const got = group[name];
      if (got?.length !== p.length)
        throw new CheckpointError(ckptPath, `${which}/${name}: expected ${p.length} values (as the parameter), got ${got ? got.length : 'none'}`);
      checkEntries(ckptPath, `${which}/${name}`, got, least);
    }
  }
}

function checkEntries(ckptPath: string, what: string, values: ArrayLike<number>, least: number): void {
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (!Number.isFinite(x) || x < least)
      throw new CheckpointError(ckptPath, `${what}[${i}] is ${x}: expected a finite number${least === 0 ? ' ≥ 0 (a second moment)' : ''}`);
  }
}

/** Steps in all and epochs to loop over: --steps alone runs as many epochs as it needs. */
export function runLength(c: TrainConfig, perEpoch: number): { total: number; epochs: number } {
  if (c.epochs === undefined) {
    const total = c.steps ?? perEpoch;
    return { total, epochs: Math.ceil(total / perEpoch) };
  }
  return { total: Math.min(c.steps ?? Number.POSITIVE_INFINITY, c.epochs * perEpoch), epochs: c.epochs };
}

/** The learning rate at each step: warmup (default 5% of the run, at most 100 steps), then cosine down to 1% of --lr. */
export function lrSchedule(c: TrainConfig, total: number): (step: number) => number {
  const warmup = c.warmup ?? Math.min(100, Math.round(0.05 * total));
  return warmupCosine({ peak: c.lr, warmup: Math.min(warmup, total), total, min: c.lr * 0.01 });
}

/**
 * Refuse a checkpoint whose parameters are not the ones of the model that the stored configuration
 * and the data define now (`model` says which, e.g. the data's channels): a data file that changed
 * shape since the checkpoint was written would otherwise fail deep inside training.
 */
export function checkParamsFit(ckptPath: string, stored: Params, fresh: Params, model: string): void {
  const names = Object.keys(fresh);
  const problem =
    names.map((k) =>
      stored[k] === undefined
        ? `it lacks ${k}`
        : stored[k].length !== fresh[k]!.length
          ? `${k} has ${stored[k].length} values, the model needs ${fresh[k]!.length}`
          : undefined,
    ).find((p) => p !== undefined) ??
    Object.keys(stored)
      .filter((k) => !(k in fresh))
      .map((k) => `the model has no ${k}`)[0];
  if (problem !== undefined)
    throw new CheckpointError(ckptPath, `parameters do not fit the model (${model}): ${problem}`);
}
