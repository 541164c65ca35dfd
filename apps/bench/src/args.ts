import { type DType, DeerError } from '@deerjs/core';

/** Everything the command line can set. */
export interface BenchOptions {
  /** Backend name; undefined = the best available one. */
  readonly backend: string | undefined;
  readonly quick: boolean;
  readonly nh: readonly number[];
  readonly T: readonly number[];
  readonly batch: number;
  /** Head counts of the multi-head GRU points (hidden size `headsSize`); empty = none. */
  readonly heads: readonly number[];
  readonly headsSize: number;
  /** Add quasi-DEER points (diagonal Jacobian on the dense GRU). */
  readonly quasi: boolean;
  readonly dtype: DType;
  readonly warmup: number;
  readonly repeats: number;
  /** Seconds per method per point after which fewer repeats are run. */
  readonly budget: number;
  /** Seconds: skip a point predicted (from the previous T of its series) to take longer. */
  readonly maxTime: number;
  /** Seconds since the start: points that would start later are skipped (Infinity: none). */
  readonly deadline: number;
  readonly maxIter: number;
  /** Points whose estimated working set exceeds this many bytes are skipped. */
  readonly maxMemory: number;
  readonly ort: boolean;
  /** webgpu's sequential kernel (`createWebGpuBackend`'s `sequentialKernel`). */
  readonly sequentialKernel: SequentialKernel;
  /** webgpu's diagonal scan kernels (`createWebGpuBackend`'s `scanKernel`). */
  readonly scanKernel: ScanKernel;
  /** webgpu's dense scan serial passes (`createWebGpuBackend`'s `denseScanKernel`). */
  readonly denseScanKernel: DenseScanKernel;
  /** webgpu: timestamp queries for device time (default on; off measures wall time without their reads). */
  readonly timestamps: boolean;
  /** webgpu's `iterationOverhead` (undefined: the adapter's default). */
  readonly iterationOverhead: number | undefined;
  readonly out: string | undefined;
  /** Re-render the table and plots of an earlier results.json instead of running. */
  readonly from: string | undefined;
  readonly seed: number;
  readonly help: boolean;
}

export type SequentialKernel = 'auto' | 'row' | 'workgroup';
export type ScanKernel = 'auto' | 'tiled' | 'chunked';
export type DenseScanKernel = 'auto' | 'invocation' | 'workgroup';

/** A bad command line; the CLI prints it as one line and exits with code 2. */
export class ArgError extends DeerError {
  override name = 'ArgError';
}

/** Grid and timing defaults; flags given on the command line override them. */
export interface Profile {
  readonly nh: readonly number[];
  readonly T: readonly number[];
  readonly heads: readonly number[];
  readonly headsSize: number;
  readonly quasi: boolean;
  readonly budget: number;
}

export const FULL_PROFILE: Profile = {
  nh: [1, 2, 4, 8, 16, 32, 64],
  T: [1e3, 1e4, 1e5, 1e6],
  heads: [8, 64],
  headsSize: 64,
  quasi: true,
  budget: 30,
};

/** --quick on a GPU: the paper's shape, shrunk. */
export const QUICK_PROFILE: Profile = {
  nh: [1, 8, 32],
  T: [1e3, 1e4],
  heads: [8],
  headsSize: 32,
  quasi: true,
  budget: 5,
};

/**
 * --quick where the backend computes on CPU cores (the cpu backend, tfjs on cpu or wasm, a software adapter): the
 * reference CPU backend needs seconds for nh = 16 at T = 1e3, so this stays under a minute on 2 cores.
 */
export const QUICK_CPU_PROFILE: Profile = {
  nh: [1, 4, 16],
  T: [1e2, 1e3],
  heads: [4],
  headsSize: 16,
  quasi: false,
  budget: 1,
};

export const HELP = `deer-bench: DEER vs sequential vs onnxruntime's GRU, on one deerjs backend

Usage: deer-bench [flags]        (from the repository root: pnpm bench [flags])

  --backend NAME     cpu | webgpu | tfjs (default: the best available)
  --quick            a small grid that runs in under a minute on a CPU
  --out DIR          where the JSON and SVG go (default apps/bench/results/<backend>-<date>/)
  --nh LIST          GRU hidden sizes, input size = hidden size (default 1,2,4,8,16,32,64)
  --T LIST           sequence lengths; 1e4 and 10k are accepted (default 1e3,1e4,1e5,1e6)
  --batch N          batch size (default 16)
  --heads LIST       multi-head GRU points with these head counts, or 'none' (default 8,64)
  --heads-size N     hidden size of the multi-head GRU (default 64)
  --quasi, --no-quasi  add quasi-DEER points: diagonal Jacobian on the dense GRU (default on)
  --dtype D          float32 | float64 (default float32)
  --warmup N         untimed runs before timing (default 1)
  --repeats N        timed runs; the median is reported (default 3)
  --budget S         seconds per method and point; slower runs get fewer repeats (default 30)
  --max-time S       skip a point when the one before in its series predicts more than S seconds
                     for one DEER + one sequential run (scaled by T; default: no limit)
  --deadline S       skip the points that would start more than S seconds after the run began
                     (the run ends about one point after S; default: no limit)
  --max-iter N       Newton iteration cap, ≥ 2 (default 100)
  --max-memory SIZE  skip points whose working set would exceed it: 4GiB, 512MiB, bytes (default 4GiB)
  --no-ort           do not run onnxruntime
  --sequential-kernel K  webgpu's sequential kernel: auto | row | workgroup (default auto: a workgroup
                     per batch row on a GPU from nh = 9, one invocation per row otherwise)
  --scan-kernel K    webgpu's diagonal scan: auto | tiled | chunked (default auto: tiled on a GPU
                     for states up to 8)
  --dense-scan-kernel K  webgpu's dense scan serial passes: auto | invocation | workgroup (default
                     auto: a workgroup per chain on a GPU for blocks of 8 or more)
  --no-timestamps    webgpu: no timestamp queries (no device time; wall time without their reads)
  --iteration-overhead N  webgpu's per-iteration round trip in the cost model's units (default: 2e5
                     on a GPU, none on a software adapter); 0 measures every Newton step
  --from FILE        print the table of an earlier results.json and rewrite its plots (into --out,
                     default the file's folder); runs nothing
  --seed N           seed of weights and inputs (default 0)
  -h, --help         this text

--quick runs a small grid: nh 1,8,32, T 1e3,1e4, heads 8 (of 32), quasi, budget 5 s on a GPU;
nh 1,4,16, T 100,1000, heads 4 (of 16), no quasi, budget 1 s on the cpu backend or a software
adapter. Flags given with --quick still win.
`;

/** Upper bounds of the integer flags: safe integers that fit in memory, not 1e20. */
export const LIMITS = {
  nh: 65_536,
  T: 2 ** 31,
  batch: 65_536,
  heads: 65_536,
  headsSize: 65_536,
  warmup: 10_000,
  repeats: 10_000,
  maxIter: 1_000_000,
  seed: 2 ** 32 - 1,
  /** --max-memory: 1 PiB. */
  bytes: 2 ** 50,
  /** --budget and --max-time, seconds: about 4 months. */
  seconds: 1e7,
} as const;

function intList(flag: string, v: string, max: number): number[] {
  return v.split(',').map((s) => positiveInt(flag, s.trim(), max));
}

/** Accepts 1000, 1e4, 10k, 1M, up to `max` (a safe integer). */
function positiveInt(flag: string, v: string, max: number): number {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)([kKmM]?)$/.exec(v);
  const scale = m?.[2] === '' || m?.[2] === undefined ? 1 : /k/i.test(m[2]) ? 1e3 : 1e6;
  const n = m ? Number(m[1]) * scale : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw new ArgError(`${flag}: expected a positive integer up to ${max}, got '${v}'`);
  return n;
}

/** 0 however it is written (0, 00, 0.0, .0, 0e3): the positive parsers refuse every zero. */
const isZero = (v: string) => /^(0+\.?0*|\.0+)(e[+-]?\d+)?$/i.test(v.trim());

function nonNegativeInt(flag: string, v: string, max: number): number {
  return isZero(v) ? 0 : positiveInt(flag, v, max);
}

function positiveNumber(flag: string, v: string, max: number): number {
  const n = /^\d*\.?\d+(?:e[+-]?\d+)?$/i.test(v.trim()) ? Number(v) : Number.NaN;
  if (!(n > 0) || !(n <= max))
    throw new ArgError(`${flag}: expected a positive number up to ${max}, got '${v}'`);
  return n;
}

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
};

export function parseBytes(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new ArgError(`${flag}: expected a size like 4GiB, 512MiB or a byte count, got '${v}'`);
  const n = Number(m[1]) * unit;
  if (!(n >= 1) || n > LIMITS.bytes)
    throw new ArgError(`${flag}: expected a size from 1 byte up to 1PiB (${LIMITS.bytes} bytes), got '${v}'`);
  return Math.floor(n);
}

type Setter = (value: string) => void;

/** What the command line said; unset grid values are filled from a profile by `resolveOptions`. */
export type ParsedArgs = Partial<Omit<BenchOptions, 'quick' | 'help' | 'backend' | 'out' | 'from'>> &
  Pick<BenchOptions, 'quick' | 'help' | 'backend' | 'out' | 'from'>;

/** Every head count divides the multi-head GRU's hidden size. */
export function checkHeads(heads: readonly number[], headsSize: number): void {
  for (const h of heads) {
    if (headsSize % h !== 0) throw new ArgError(`--heads: ${h} heads do not divide --heads-size ${headsSize}`);
  }
}

/** Parse argv (without node and script). Throws ArgError with a message naming the flag. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const set: { -readonly [K in keyof ParsedArgs]?: ParsedArgs[K] } = {};
  const withValue: Record<string, Setter> = {
    backend: (v) => (set.backend = v),
    out: (v) => {
      if (v === '') throw new ArgError("--out: expected a folder, got ''");
      set.out = v;
    },
    from: (v) => (set.from = v),
    nh: (v) => (set.nh = intList('--nh', v, LIMITS.nh)),
    t: (v) => (set.T = intList('--T', v, LIMITS.T)),
    batch: (v) => (set.batch = positiveInt('--batch', v, LIMITS.batch)),
    heads: (v) => (set.heads = v === 'none' || v === '' ? [] : intList('--heads', v, LIMITS.heads)),
    'heads-size': (v) => (set.headsSize = positiveInt('--heads-size', v, LIMITS.headsSize)),
    dtype: (v) => {
      if (v !== 'float32' && v !== 'float64')
        throw new ArgError(`--dtype: expected float32 or float64, got '${v}'`);
      set.dtype = v;
    },
    warmup: (v) => (set.warmup = nonNegativeInt('--warmup', v, LIMITS.warmup)),
    repeats: (v) => (set.repeats = positiveInt('--repeats', v, LIMITS.repeats)),
    budget: (v) => (set.budget = positiveNumber('--budget', v, LIMITS.seconds)),
    'max-time': (v) => (set.maxTime = positiveNumber('--max-time', v, LIMITS.seconds)),
    deadline: (v) => (set.deadline = positiveNumber('--deadline', v, LIMITS.seconds)),
    'max-iter': (v) => {
      set.maxIter = positiveInt('--max-iter', v, LIMITS.maxIter);
      // The shoot column's sweeps share the cap, and parallel shooting needs two.
      if (set.maxIter < 2) throw new ArgError(`--max-iter: expected at least 2 (the shoot column's sweeps share it), got '${v}'`);
    },
    'max-memory': (v) => (set.maxMemory = parseBytes('--max-memory', v)),
    seed: (v) => (set.seed = nonNegativeInt('--seed', v, LIMITS.seed)),
    'sequential-kernel': (v) => {
      if (v !== 'auto' && v !== 'row' && v !== 'workgroup')
        throw new ArgError(`--sequential-kernel: expected auto, row or workgroup, got '${v}'`);
      set.sequentialKernel = v;
    },
    'iteration-overhead': (v) => (set.iterationOverhead = isZero(v) ? 0 : positiveNumber('--iteration-overhead', v, 1e12)),
    'scan-kernel': (v) => {
      if (v !== 'auto' && v !== 'tiled' && v !== 'chunked')
        throw new ArgError(`--scan-kernel: expected auto, tiled or chunked, got '${v}'`);
      set.scanKernel = v;
    },
    'dense-scan-kernel': (v) => {
      if (v !== 'auto' && v !== 'invocation' && v !== 'workgroup')
        throw new ArgError(`--dense-scan-kernel: expected auto, invocation or workgroup, got '${v}'`);
      set.denseScanKernel = v;
    },
  };
  const switches: Record<string, () => void> = {
    quick: () => (set.quick = true),
    quasi: () => (set.quasi = true),
    'no-quasi': () => (set.quasi = false),
    'no-ort': () => (set.ort = false),
    'no-timestamps': () => (set.timestamps = false),
    help: () => (set.help = true),
    h: () => (set.help = true),
  };
  // Flags given, by the option they set (--quasi and --no-quasi, -h and --help are one each).
  const given = new Map<string, string>();
  const same: Record<string, string> = { 'no-quasi': 'quasi', h: 'help' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/.exec(arg);
    if (!m) throw new ArgError(`unexpected argument '${arg}' (flags start with --; see --help)`);
    const name = m[1]!.toLowerCase();
    // Own entries only: the records inherit Object.prototype, and '--constructor X' had run Object(X).
    const known = (table: Record<string, unknown>) => Object.hasOwn(table, name);
    const key = same[name] ?? name;
    const before = given.get(key);
    const flag = arg.split('=')[0]!;
    if (before !== undefined && (known(withValue) || known(switches)))
      throw new ArgError(
        before.toLowerCase() === flag.toLowerCase() ? `${flag} given twice` : `${before} and ${flag} given together`,
      );
    given.set(key, flag);
    const setter = known(withValue) ? withValue[name] : undefined;
    if (setter) {
      const value = m[2] ?? argv[++i];
      if (value === undefined || (m[2] === undefined && value.startsWith('--'))) {
        throw new ArgError(`--${m[1]} needs a value (see --help)`);
      }
      setter(value);
      continue;
    }
    const sw = known(switches) ? switches[name] : undefined;
    if (!sw) throw new ArgError(`unknown flag '${arg}' (see --help)`);
    if (m[2] !== undefined) throw new ArgError(`--${m[1]} takes no value`);
    sw();
  }
  // Both given: checked now, before a backend starts or a folder is written (with one of them, the
  // other comes from the profile, which the backend decides: cli.ts checks the grid before writing).
  if (set.heads !== undefined && set.headsSize !== undefined) checkHeads(set.heads, set.headsSize);
  // --from runs nothing, so a run flag beside it would be silently ignored.
  if (set.from !== undefined && set.help !== true) {
    const ignored = [...given].filter(([k]) => k !== 'from' && k !== 'out').map(([, flag]) => flag);
    if (ignored.length > 0)
      throw new ArgError(`--from re-plots an earlier run and takes only --out, not ${ignored.join(', ')}`);
  }
  return {
    ...set,
    quick: set.quick === true,
    help: set.help === true,
    backend: set.backend,
    out: set.out,
    from: set.from,
  };
}

/** Fill what the command line left unset from a profile and the fixed defaults. */
export function resolveOptions(
  a: ParsedArgs,
  profile: Profile = a.quick ? QUICK_PROFILE : FULL_PROFILE,
): BenchOptions {
  return {
    backend: a.backend,
    quick: a.quick,
    nh: a.nh ?? profile.nh,
    T: a.T ?? profile.T,
    batch: a.batch ?? 16,
    heads: a.heads ?? profile.heads,
    headsSize: a.headsSize ?? profile.headsSize,
    quasi: a.quasi ?? profile.quasi,
    dtype: a.dtype ?? 'float32',
    warmup: a.warmup ?? 1,
    repeats: a.repeats ?? 3,
    budget: a.budget ?? profile.budget,
    maxTime: a.maxTime ?? Number.POSITIVE_INFINITY,
    deadline: a.deadline ?? Number.POSITIVE_INFINITY,
    maxIter: a.maxIter ?? 100,
    maxMemory: a.maxMemory ?? 4 * 2 ** 30,
    ort: a.ort ?? true,
    sequentialKernel: a.sequentialKernel ?? 'auto',
    scanKernel: a.scanKernel ?? 'auto',
    denseScanKernel: a.denseScanKernel ?? 'auto',
    iterationOverhead: a.iterationOverhead,
    timestamps: a.timestamps ?? true,
    out: a.out,
    from: a.from,
    seed: a.seed ?? 0,
    help: a.help,
  };
}

/** The --quick profile for a backend: the small one where it computes on CPU cores. */
export function quickProfile(backendName: string, device: string): Profile {
  const software = backendName === 'cpu' || /llvmpipe|lavapipe|swiftshader|software|cpu|wasm/i.test(device);
  return software ? QUICK_CPU_PROFILE : QUICK_PROFILE;
}
