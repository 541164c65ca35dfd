import { parseArgs } from 'node:util';
import { TASK_DEFAULTS, TASKS, type Task, type TrainConfig } from './config.js';
import { UsageError } from './errors.js';

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
  --epochs N             passes over the training set (default 1)
  --steps N              stop after N optimizer steps in all
  --batch N              batch size (fashion-mnist 16, eigenworms 4, hnn 4 orbits)
  --lr X                 peak learning rate (warm-up, then cosine decay)
  --warmup N             warm-up steps (default: 5% of the run, at most 100)
  --weight-decay X       AdamW decoupled weight decay (default 0.01)
  --clip X               clip the global gradient norm (default 1; 0 = off)
  --seed N               seed of init and shuffling (default 0)
  --limit N              use only the first N examples of each split
  --checkpoint-every N   write OUT/checkpoint.ckpt every N steps (default 0: at the end only)
  --resume               continue from OUT/checkpoint.ckpt (its stored configuration rules)
  --out DIR              output folder (default runs/TASK)
  --data PATH            fashion-mnist: folder of IDX files (.gz or raw; default
                         /usr/share/datasets/fashion-mnist); eigenworms: the _TRAIN.ts file
  --test-data FILE       eigenworms: test .ts file (default: the _TEST.ts beside --data, else 20% held out)
  --synthetic            eigenworms: a seeded synthetic set of the same shape instead of --data
  --length T             synthetic sequence length (default 17984)
  --cell C               gru | mhgru | lstm
  --hidden N --layers N --heads N --pooling mean|last --no-residual --layer-norm
  --max-iter N           Newton iterations before falling back to sequential (default 100)
  --orbits N             hnn: training trajectories (default 4); --test-orbits N held out (default 2)
  --points N             hnn: grid points per trajectory, t_0 included (default 10000)
  --t-end X              hnn: the grid spans [0, X] (default 10)
  --help                 this text

Writes OUT/metrics.jsonl (one JSON object per step, then the evaluation), OUT/checkpoint.ckpt,
OUT/plot.svg (loss and accuracy; hnn: loss and energy drift, plus OUT/orbits.svg) and OUT/summary.json.`;

export type ParsedArgs = { help: true } | { help: false; config: TrainConfig; resume: boolean };

function num(
  name: string,
  v: string | undefined,
  fallback: number,
  kind: 'int' | 'pos-int' | 'float' = 'float',
): number {
  if (v === undefined) return fallback;
  const x = Number(v);
  const ok =
    kind === 'float'
      ? Number.isFinite(x) && x >= 0
      : Number.isInteger(x) && x >= (kind === 'pos-int' ? 1 : 0);
  if (!ok)
    throw new UsageError(
      `--${name}: expected ${kind === 'float' ? 'a number ≥ 0' : kind === 'pos-int' ? 'a positive integer' : 'an integer ≥ 0'}, got ${JSON.stringify(v)}`,
    );
  return x;
}

function oneOf<T extends string>(name: string, v: string | undefined, allowed: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v))
    throw new UsageError(`--${name}: expected ${allowed.join(' | ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

export function parseCli(argv: readonly string[]): ParsedArgs {
  const s = { type: 'string' } as const;
  const b = { type: 'boolean' } as const;
  let parsed: ReturnType<
    typeof parseArgs<{ options: Record<string, typeof s | typeof b>; allowPositionals: true; args: string[] }>
  >;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        help: b,
        resume: b,
        synthetic: b,
        'no-residual': b,
        'layer-norm': b,
        backend: s,
        dtype: s,
        solver: s,
        epochs: s,
        steps: s,
        batch: s,
        lr: s,
        warmup: s,
        'weight-decay': s,
        clip: s,
        seed: s,
        limit: s,
        'checkpoint-every': s,
        out: s,
        data: s,
        'test-data': s,
        length: s,
        cell: s,
        hidden: s,
        layers: s,
        heads: s,
        pooling: s,
        'max-iter': s,
        orbits: s,
        'test-orbits': s,
        points: s,
        't-end': s,
      },
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nRun with --help for the flags.`);
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const str = (k: string) => v[k] as string | undefined;
  if (v.help) return { help: true };
  if (parsed.positionals.length !== 1)
    throw new UsageError(
      `expected one TASK (${TASKS.join(' | ')}), got ${parsed.positionals.length === 0 ? 'none' : parsed.positionals.join(' ')}\nRun with --help for the flags.`,
    );
  const task = oneOf<Task>('task', parsed.positionals[0], TASKS, 'fashion-mnist');
  const d = TASK_DEFAULTS[task];
  const limit = str('limit') === undefined ? undefined : num('limit', str('limit'), 0, 'pos-int');
  const steps = str('steps') === undefined ? undefined : num('steps', str('steps'), 0, 'pos-int');
  const length = str('length') === undefined ? undefined : num('length', str('length'), 0, 'pos-int');
  const cell = oneOf('cell', str('cell'), ['gru', 'mhgru', 'lstm'] as const, d.cell ?? 'gru');
  const config: TrainConfig = {
    task,
    backend: str('backend') ?? 'cpu',
    dtype: oneOf('dtype', str('dtype'), ['float32', 'float64'] as const, d.dtype ?? 'float32'),
    solver: oneOf('solver', str('solver'), ['deer', 'sequential'] as const, 'deer'),
    epochs: num('epochs', str('epochs'), 1, 'pos-int'),
    ...(steps !== undefined ? { steps } : {}),
    batch: num('batch', str('batch'), d.batch ?? 8, 'pos-int'),
    lr: num('lr', str('lr'), d.lr ?? 1e-3),
    ...(str('warmup') !== undefined ? { warmup: num('warmup', str('warmup'), 0, 'int') } : {}),
    weightDecay: num('weight-decay', str('weight-decay'), 0.01),
    clip: num('clip', str('clip'), 1),
    seed: num('seed', str('seed'), 0, 'int'),
    ...(limit !== undefined ? { limit } : {}),
    checkpointEvery: num('checkpoint-every', str('checkpoint-every'), 0, 'int'),
    out: str('out') ?? `runs/${task}`,
    ...(str('data') !== undefined ? { data: str('data') } : {}),
    ...(str('test-data') !== undefined ? { testData: str('test-data') } : {}),
    synthetic: v.synthetic === true,
    ...(length !== undefined ? { length } : {}),
    cell,
    hidden: num('hidden', str('hidden'), d.hidden ?? 32, 'pos-int'),
    layers: num('layers', str('layers'), d.layers ?? 2, 'pos-int'),
    heads: num('heads', str('heads'), cell === 'mhgru' ? (d.heads ?? 4) : 1, 'pos-int'),
    pooling: oneOf('pooling', str('pooling'), ['mean', 'last'] as const, d.pooling ?? 'mean'),
    residual: v['no-residual'] !== true,
    layerNorm: v['layer-norm'] === true,
    maxIter: num('max-iter', str('max-iter'), 100, 'pos-int'),
    ...(task === 'hnn'
      ? {
          orbits: num('orbits', str('orbits'), d.orbits ?? 4, 'pos-int'),
          testOrbits: num('test-orbits', str('test-orbits'), d.testOrbits ?? 2, 'pos-int'),
          points: num('points', str('points'), d.points ?? 10_000, 'pos-int'),
          tEnd: num('t-end', str('t-end'), d.tEnd ?? 10),
        }
      : {}),
  };
  if (task !== 'hnn')
    for (const k of ['orbits', 'test-orbits', 'points', 't-end'])
      if (v[k] !== undefined) throw new UsageError(`--${k} is for hnn only`);
  if (task === 'hnn') {
    if (config.points! < 2) throw new UsageError(`--points: need at least 2, got ${config.points}`);
    if (!(config.tEnd! > 0)) throw new UsageError(`--t-end: expected a number > 0, got ${config.tEnd}`);
    if (config.synthetic || config.data !== undefined)
      throw new UsageError('hnn generates its data: no --data or --synthetic');
  }
  if (config.cell === 'mhgru' && config.hidden % config.heads !== 0)
    throw new UsageError(`--heads ${config.heads} must divide --hidden ${config.hidden}`);
  if (task === 'eigenworms' && !config.synthetic && config.data === undefined)
    throw new UsageError('eigenworms needs --data FILE (the _TRAIN.ts file) or --synthetic');
  if (task === 'fashion-mnist' && config.synthetic)
    throw new UsageError('--synthetic is for eigenworms only');
  return { help: false, config, resume: v.resume === true };
}
