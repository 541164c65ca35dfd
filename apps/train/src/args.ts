import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { KNOWN_BACKENDS } from '@deerjs/core';
import { stateSize } from '@deerjs/nn';
import { TASK_DEFAULTS, TASKS, type Task, type TrainConfig } from './config.js';
import { FlagError, UsageError } from './errors.js';

export const HELP = `deer-train — train recurrent networks with DEER on any deerjs backend

Usage: pnpm train TASK [flags]        (or: node apps/train/dist/cli.js TASK [flags])

Tasks:
  fashion-mnist   pixel-by-pixel Fashion-MNIST (T = 784, 1 channel), multi-head GRU
  eigenworms      UEA EigenWorms (T = 17 984, 6 channels, 5 classes), GRU stack
  hnn             two-body gravity, Hamiltonian neural network fitted to orbits (neural ODE, 8 states)

Flags:
  --backend NAME         cpu | webgpu | tfjs (default cpu)
  --dtype D              float32 | float64 (default float32; hnn float64)
  --solver S             deer | sequential (default deer): how each layer (hnn: the ODE) is
                         evaluated; hnn sequential = Dormand–Prince forward, adjoint gradient
  --epochs N             passes over the training set (default 1; with --steps, as many as it needs)
  --steps N              stop after N optimizer steps in all
  --batch N              batch size (fashion-mnist 16, eigenworms 4, hnn 4 orbits)
  --lr X                 peak learning rate (warm-up, then cosine decay)
  --warmup N             warm-up steps (default: 5% of the run, at most 100)
  --weight-decay X       AdamW decoupled weight decay (default 0.01)
  --clip X               clip the global gradient norm (default 1; 0 = off)
  --seed N               seed of init and shuffling (default 0)
  --limit N              use only the first N examples of each split
  --checkpoint-every N   write OUT/checkpoint.ckpt every N steps (default 0: at the end only)
  --resume               continue from OUT/checkpoint.ckpt: its stored configuration rules (data,
                         model, optimizer); only --out and --backend may be given with it
  --out DIR              output folder (default runs/TASK)
  --overwrite            start a fresh run in an --out that holds an earlier run's checkpoint
                         (removed); without it such a folder is refused, so no run is lost
  --data PATH            fashion-mnist: folder of IDX files (.gz or raw; default
                         /usr/share/datasets/fashion-mnist); eigenworms: the _TRAIN.ts file
  --test-data FILE       eigenworms: test .ts file (default: the _TEST.ts beside --data, else 20% held out)
  --synthetic            eigenworms: a seeded synthetic set of the same shape instead of --data
  --length T             synthetic sequence length (default 17984, at most 1048576)
  --cell C               gru | mhgru | lstm
  --hidden N --layers N --heads N --pooling mean|last --no-residual --layer-norm
  --max-iter N           Newton iterations before falling back to sequential (default 100)
  --orbits N             hnn: training trajectories (default 4); --test-orbits N held out (default 2)
  --points N             hnn: grid points per trajectory, t_0 included (default 10000)
  --t-end X              hnn: the grid spans [0, X] (default 10, at most 1000)
  --help                 this text

A bad flag, path or data file prints one line and exits with code 2 before training starts (flags
before any data is read); so does a flag given twice, and a fresh run into an --out that holds a
checkpoint.

Writes OUT/metrics.jsonl (one JSON object per step, then the evaluation), OUT/checkpoint.ckpt,
OUT/plot.svg (loss and accuracy; hnn: loss and energy drift, plus OUT/orbits.svg) and OUT/summary.json.`;

export type ParsedArgs = { help: true } | { help: false; config: TrainConfig; resume: boolean; overwrite: boolean };

/** Largest number of values (float32) a dataset may hold in memory: 2 GiB. */
export const MAX_VALUES = 2 ** 29;

/**
 * Longest sequence (time steps) a run takes: --length, a .ts @seriesLength, IDX rows × cols. A
 * step's working set grows with T, so a longer one exhausts memory in training, not at load.
 */
export const MAX_LENGTH = 2 ** 20;

/** hnn: largest --t-end (the reference Dormand–Prince needs ~100 steps per time unit) and grid spacing. */
export const MAX_T_END = 1000;
export const MIN_T_STEP = 1e-9;

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

interface IntRange {
  readonly min: number;
  readonly max: number;
}

/** An integer flag in [min, max] (1e3 is accepted; 1.5, 1e20, '', 0x10 are not). */
function int(name: string, v: string | undefined, fallback: number, r: IntRange): number {
  if (v === undefined) return fallback;
  const x = NUMBER.test(v.trim()) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(x) || x < r.min || x > r.max) {
    const range =
      r.min === 1 ? `a positive integer ≤ ${r.max}` : `an integer, at least ${r.min} and at most ${r.max}`;
    throw new FlagError(name, range, JSON.stringify(v));
  }
  return x;
}

/** A finite number flag: > 0 when `positive`, else ≥ 0. */
function real(name: string, v: string | undefined, fallback: number, positive: boolean, max = 1e12): number {
  if (v === undefined) return fallback;
  const x = NUMBER.test(v.trim()) ? Number(v) : Number.NaN;
  if (!Number.isFinite(x) || (positive ? !(x > 0) : !(x >= 0)) || x > max)
    throw new FlagError(name, `a number ${positive ? '> 0' : '≥ 0'} and ≤ ${max}`, JSON.stringify(v));
  return x;
}

function oneOf<T extends string>(name: string, v: string | undefined, allowed: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v))
    throw new FlagError(name, allowed.join(' | '), JSON.stringify(v));
  return v as T;
}

const STRING_FLAGS = [
  'backend',
  'dtype',
  'solver',
  'epochs',
  'steps',
  'batch',
  'lr',
  'warmup',
  'weight-decay',
  'clip',
  'seed',
  'limit',
  'checkpoint-every',
  'out',
  'data',
  'test-data',
  'length',
  'cell',
  'hidden',
  'layers',
  'heads',
  'pooling',
  'max-iter',
  'orbits',
  'test-orbits',
  'points',
  't-end',
] as const;
const BOOLEAN_FLAGS = ['help', 'resume', 'overwrite', 'synthetic', 'no-residual', 'layer-norm'] as const;

/**
 * `--lr -1` → `--lr=-1`: node's parseArgs refuses a value that starts with '-' as ambiguous, so a
 * negative number would not reach the range check that explains what is wrong with it.
 */
function joinNegativeValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    if (
      name !== undefined &&
      (STRING_FLAGS as readonly string[]).includes(name) &&
      next !== undefined &&
      /^-[\d.]/.test(next)
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

const FLAT = (m: string) => m.replace(/\s*\n\s*/g, ' ');

export function parseCli(argv: readonly string[]): ParsedArgs {
  const options = Object.fromEntries([
    ...STRING_FLAGS.map((f) => [f, { type: 'string' as const }]),
    ...BOOLEAN_FLAGS.map((f) => [f, { type: 'boolean' as const }]),
  ]) as Record<string, { type: 'string' } | { type: 'boolean' }>;
  let parsed: {
    values: Record<string, string | boolean | (string | boolean)[] | undefined>;
    positionals: string[];
    tokens: { kind: string; name?: string }[];
  };
  try {
    parsed = parseArgs({ args: joinNegativeValues(argv), allowPositionals: true, options, tokens: true });
  } catch (err) {
    // Node's own text for an unknown flag runs on about '--' and leaves a quote open.
    const unknown = /^Unknown option '([^']*)'/.exec((err as Error).message);
    throw new UsageError(`${unknown ? `unknown flag '${unknown[1]}'` : FLAT((err as Error).message)} (see --help)`);
  }
  // parseArgs keeps the last of repeated flags; a repeat is more likely a mistake than an override.
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || t.name === undefined) continue;
    if (seen.has(t.name)) throw new UsageError(`--${t.name} given twice`);
    seen.add(t.name);
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const str = (k: string) => v[k] as string | undefined;
  const given = (k: string) => v[k] !== undefined;
  if (v.help) return { help: true };
  if (parsed.positionals.length !== 1)
    throw new UsageError(
      `expected one TASK (${TASKS.join(' | ')}), got ${parsed.positionals.length === 0 ? 'none' : parsed.positionals.join(' ')} (see --help)`,
    );
  const task = oneOf<Task>('task', parsed.positionals[0], TASKS, 'fashion-mnist');
  const resume = v.resume === true;
  const overwrite = v.overwrite === true;
  if (resume && overwrite) throw new UsageError('--resume continues the run in --out and --overwrite replaces it: give one');
  if (resume) {
    const ignored = [...seen].filter((k) => !['resume', 'backend', 'out'].includes(k));
    if (ignored.length > 0)
      throw new UsageError(
        `--resume takes the run's configuration from its checkpoint; only --backend and --out may be given with it, not ${ignored.map((k) => `--${k}`).join(', ')}`,
      );
  }
  const d = TASK_DEFAULTS[task];
  const backends = Object.keys(KNOWN_BACKENDS);
  const backend = oneOf('backend', str('backend'), backends, 'cpu');
  const opt = <T>(k: string, f: (s: string) => T) => (given(k) ? f(str(k)!) : undefined);
  const steps = opt('steps', (s) => int('steps', s, 0, { min: 1, max: 1e9 }));
  const epochs = opt('epochs', (s) => int('epochs', s, 0, { min: 1, max: 1e6 }));
  const limit = opt('limit', (s) => int('limit', s, 0, { min: 1, max: 2 ** 31 - 1 }));
  const length = opt('length', (s) => int('length', s, 0, { min: 1, max: MAX_LENGTH }));
  const warmup = opt('warmup', (s) => int('warmup', s, 0, { min: 0, max: 1e9 }));
  const cell = oneOf('cell', str('cell'), ['gru', 'mhgru', 'lstm'] as const, d.cell ?? 'gru');
  const hidden = int('hidden', str('hidden'), d.hidden ?? 32, { min: 1, max: 65_536 });
  const config: TrainConfig = {
    task,
    backend,
    dtype: oneOf('dtype', str('dtype'), ['float32', 'float64'] as const, d.dtype ?? 'float32'),
    solver: oneOf('solver', str('solver'), ['deer', 'sequential'] as const, 'deer'),
    // With --steps alone the run goes on for as many epochs as the steps need.
    ...(epochs !== undefined || steps === undefined ? { epochs: epochs ?? 1 } : {}),
    ...(steps !== undefined ? { steps } : {}),
    batch: int('batch', str('batch'), d.batch ?? 8, { min: 1, max: 65_536 }),
    lr: real('lr', str('lr'), d.lr ?? 1e-3, true, 1e3),
    ...(warmup !== undefined ? { warmup } : {}),
    weightDecay: real('weight-decay', str('weight-decay'), 0.01, false, 1e3),
    clip: real('clip', str('clip'), 1, false),
    seed: int('seed', str('seed'), 0, { min: 0, max: 2 ** 31 - 1 }),
    ...(limit !== undefined ? { limit } : {}),
    checkpointEvery: int('checkpoint-every', str('checkpoint-every'), 0, { min: 0, max: 1e9 }),
    out: str('out') ?? `runs/${task}`,
    // Absolute: the checkpoint stores them, and --resume may run from another directory.
    ...(given('data') ? { data: resolve(str('data')!) } : {}),
    ...(given('test-data') ? { testData: resolve(str('test-data')!) } : {}),
    synthetic: v.synthetic === true,
    ...(length !== undefined ? { length } : {}),
    cell,
    hidden,
    layers: int('layers', str('layers'), d.layers ?? 2, { min: 1, max: 1024 }),
    heads: int('heads', str('heads'), cell === 'mhgru' ? (d.heads ?? 4) : 1, { min: 1, max: hidden }),
    pooling: oneOf('pooling', str('pooling'), ['mean', 'last'] as const, d.pooling ?? 'mean'),
    residual: v['no-residual'] !== true,
    layerNorm: v['layer-norm'] === true,
    maxIter: int('max-iter', str('max-iter'), 100, { min: 1, max: 1e6 }),
    ...(task === 'hnn'
      ? {
          orbits: int('orbits', str('orbits'), d.orbits ?? 4, { min: 1, max: 1e6 }),
          testOrbits: int('test-orbits', str('test-orbits'), d.testOrbits ?? 2, { min: 1, max: 1e6 }),
          points: int('points', str('points'), d.points ?? 10_000, { min: 2, max: MAX_VALUES }),
          tEnd: real('t-end', str('t-end'), d.tEnd ?? 10, true, MAX_T_END),
        }
      : {}),
  };
  if (str('out') === '') throw new FlagError('out', 'a folder', '""');
  // AdamW's decoupled decay multiplies the weights by 1 − lr·weightDecay each step.
  if (config.lr * config.weightDecay > 1)
    throw new UsageError(`--lr ${config.lr} × --weight-decay ${config.weightDecay} > 1: the decay would flip the weights' sign every step`);
  // Flags that would be silently ignored are errors.
  if (task !== 'hnn')
    for (const k of ['orbits', 'test-orbits', 'points', 't-end'])
      if (given(k)) throw new UsageError(`--${k} is for hnn only (task ${task})`);
  if (task === 'hnn') {
    for (const k of ['data', 'test-data', 'synthetic', 'length', 'limit'])
      if (given(k)) throw new UsageError(`--${k}: hnn generates its data, so it takes no --${k}`);
    for (const k of ['cell', 'heads', 'pooling', 'no-residual', 'layer-norm'])
      if (given(k))
        throw new UsageError(`--${k} does not apply to hnn (its model is an MLP: --hidden, --layers)`);
    // Below this spacing the grid's times stop being distinct (5e-324 / 2 is 0) and the orbits do not move.
    const spacing = config.tEnd! / (config.points! - 1);
    if (!(spacing >= MIN_T_STEP))
      throw new FlagError(
        't-end',
        `a grid spacing --t-end / (--points − 1) of at least ${MIN_T_STEP} (with --points ${config.points}: --t-end ≥ ${MIN_T_STEP * (config.points! - 1)})`,
        `${JSON.stringify(str('t-end') ?? String(config.tEnd))} (spacing ${spacing})`,
      );
    const values = (config.orbits! + config.testOrbits!) * config.points! * 8;
    if (values > MAX_VALUES)
      throw new UsageError(
        `--orbits ${config.orbits} + --test-orbits ${config.testOrbits} with --points ${config.points}: ${values} values, more than the ${MAX_VALUES} this app holds in memory`,
      );
  }
  if (given('heads') && config.cell !== 'mhgru')
    throw new UsageError(`--heads ${config.heads} needs --cell mhgru (the ${config.cell} cell has no heads)`);
  if (config.cell === 'mhgru' && config.hidden % config.heads !== 0)
    throw new UsageError(`--heads ${config.heads} must divide --hidden ${config.hidden}`);
  // As the model would refuse it, but before a backend starts or data is read.
  if (task !== 'hnn' && config.layerNorm && stateSize(config.cell, config.hidden) === 1)
    throw new UsageError(`--layer-norm needs more than one unit: --hidden 1 with --cell ${config.cell} (a norm over one unit is constant)`);
  if (task === 'fashion-mnist')
    for (const k of ['synthetic', 'length', 'test-data'])
      if (given(k)) throw new UsageError(`--${k} is for eigenworms only (fashion-mnist reads --data DIR)`);
  if (task === 'eigenworms') {
    if (config.synthetic && (given('data') || given('test-data')))
      throw new UsageError('eigenworms: give --synthetic or --data FILE, not both');
    if (!config.synthetic && given('length'))
      throw new UsageError('--length is for --synthetic (a .ts file declares its own @seriesLength)');
    if (!config.synthetic && config.data === undefined && !resume)
      throw new UsageError('eigenworms needs --data FILE (the _TRAIN.ts file) or --synthetic');
    if (config.synthetic) {
      const n = config.limit ?? 128;
      const values = (n + Math.max(config.batch, Math.ceil(n / 4))) * (config.length ?? 17_984) * 6;
      if (values > MAX_VALUES)
        throw new UsageError(
          `--synthetic with --limit ${n} and --length ${config.length ?? 17_984}: ${values} values, more than the ${MAX_VALUES} this app holds in memory`,
        );
    }
  }
  return { help: false, config, resume, overwrite };
}
