import type { SolvePlan } from '@deerjs/core';
import type { KernelProfile } from './runners/deer.js';
import type { Bandwidth } from './bandwidth.js';
import type { GridPoint } from './grid.js';
import type { MemoryPeaks } from './memory.js';

export interface Timing {
  readonly medianMs: number;
  readonly samplesMs: readonly number[];
  readonly warmupRuns: number;
  readonly note?: string;
}

export interface DeerTiming extends Timing {
  readonly iterations: number;
  readonly converged: boolean;
  readonly fellBack: boolean;
  readonly structure: string;
  readonly exactJacobian: boolean;
  readonly windows: number;
  /** Median of the solve alone (until `deer` returned, y still on the device). */
  readonly solveMs?: number;
  /** Median of reading y back to the host (the rest of `medianMs`). */
  readonly readbackMs?: number;
  /** Median device time (timestamp queries: the sum of kernel passes), when the adapter offers it. */
  readonly deviceMs?: number;
  /** Device time by kernel label of one solve (the last timed run), where the backend breaks it down. */
  readonly deviceKernels?: KernelProfile;
  /** Device work of one solve (the last timed run), when the backend counts it. */
  readonly device?: {
    readonly dispatches: number;
    readonly submits: number;
    readonly reads: number;
    readonly bytesWritten: number;
    readonly bytesRead: number;
    /** submits / iterations. */
    readonly submitsPerIteration: number;
  };
}

export interface PointResult {
  readonly point: GridPoint;
  readonly status: 'ok' | 'skipped' | 'error';
  /** Why a point was skipped or failed. */
  readonly reason?: string;
  readonly deer?: DeerTiming;
  readonly sequential?: Timing;
  /** onnxruntime's GRU; absent when it was not run, `error` when it failed. */
  readonly ort?: Timing | { readonly error: string };
  /**
   * `method: 'auto'` on the same problem (exact-Jacobian points): its time, and what its cost
   * model chose ('sequential', or the structure DEER ran with) and why.
   */
  readonly auto?: Timing & {
    readonly iterations: number;
    readonly choice: string;
    readonly reason: string;
    /**
     * The cost model's estimates (time units: multiply-add latencies): sequential and DEER per
     * candidate structure — to set beside the measured times when calibrating it.
     */
    readonly plan?: SolvePlan;
  };
  /** sequential / auto median times: above 1, 'auto' is faster than sequential evaluation. */
  readonly speedupAuto?: number;
  /**
   * `method: 'shoot'` (parallel shooting, no Newton) on the same problem (exact-Jacobian points):
   * its time, its sweeps, and whether every row converged (else the fallback finished them).
   */
  readonly shoot?: Timing & { readonly sweeps: number; readonly converged: boolean; readonly maxDiff: number };
  /** sequential / shoot median times. */
  readonly speedupShoot?: number;
  /** sequential / DEER and ORT / DEER median times: above 1, DEER is faster. */
  readonly speedupSequential?: number;
  readonly speedupOrt?: number;
  /** max |y_DEER − y_sequential| and max |y_ORT − y_sequential| over all outputs. */
  readonly maxDiffDeer?: number;
  readonly maxDiffOrt?: number;
  readonly estimatedBytes: number;
  readonly memory?: MemoryPeaks;
  readonly wallMs: number;
}

export interface MachineInfo {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryBytes: number;
  readonly platform: string;
  readonly arch: string;
  readonly node: string;
  readonly hostname: string;
}

export interface BenchReport {
  readonly tool: 'deer-bench';
  readonly version: 1;
  readonly startedAt: string;
  readonly wallMs: number;
  readonly machine: MachineInfo;
  readonly backend: { readonly name: string; readonly device: string; readonly maxBufferBytes: number };
  readonly dtype: string;
  readonly git: { readonly commit: string; readonly dirty: boolean } | null;
  readonly onnxruntime: string | null;
  readonly options: Readonly<Record<string, unknown>>;
  readonly points: readonly PointResult[];
  /** The diagonal scan's bytes per second against an elementwise add's (absent in old reports). */
  readonly bandwidth?: Bandwidth | { readonly error: string };
}

export function isTiming(t: PointResult['ort']): t is Timing {
  return t !== undefined && 'medianMs' in t;
}

type Check = (v: unknown) => boolean;
const num: Check = (v) => typeof v === 'number' && !Number.isNaN(v);
const str: Check = (v) => typeof v === 'string';
const opt =
  (c: Check): Check =>
  (v) =>
    v === undefined || c(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** The first field of `v` (named `at`) that fails its check, as 'at.field'. */
function badField(v: unknown, at: string, fields: Record<string, Check>): string | undefined {
  if (!isObject(v)) return at;
  const bad = Object.entries(fields).find(([k, c]) => !c(v[k]));
  return bad && `${at}.${bad[0]}`;
}
const shape =
  (fields: Record<string, Check>): Check =>
  (v) =>
    badField(v, '', fields) === undefined;

const BANDWIDTH = {
  shape: (v: unknown) => Array.isArray(v),
  scanGBs: num,
  addGBs: num,
  copyKernelGBs: num,
  copyGBs: num,
  kernelRatio: num,
  ratio: num,
  device: opt(shape({ scanGBs: num, addGBs: num, copyKernelGBs: num, kernelRatio: num })),
};

const POINT = {
  series: str,
  T: num,
  hiddenSize: num,
  heads: opt(num),
  jacobian: str,
  blockSize: num,
};

/** A time: a number of milliseconds, not negative (a hand-edited -1 had printed as "-1.00 ms"). */
const ms: Check = (v) => num(v) && (v as number) >= 0;

/** What the table and the plots read of a point whose DEER and sequential runs both finished. */
const MEASURED = {
  deer: shape({ medianMs: ms, structure: str, iterations: num, windows: num }),
  sequential: shape({ medianMs: ms }),
  ort: opt((v) => isObject(v) && (ms(v.medianMs) || str(v.error))),
  auto: opt(shape({ medianMs: ms, choice: str })),
  shoot: opt(shape({ medianMs: ms, sweeps: num })),
  speedupSequential: num,
  speedupOrt: opt(num),
  maxDiffDeer: num,
  maxDiffOrt: opt(num),
  memory: opt(shape({ rssBytes: num })),
};

/**
 * Why `x` (parsed JSON) is not a results.json that `--from` can print and plot — the first field
 * missing or of the wrong type — or undefined when it is one.
 */
export function reportProblem(x: unknown): string | undefined {
  if (!isObject(x) || x.tool !== 'deer-bench') return 'not a deer-bench results.json (no "tool": "deer-bench")';
  const top = badField(x, 'results', {
    backend: shape({ name: str, device: str }),
    wallMs: num,
    dtype: str,
    machine: shape({ cpu: str, cores: num, memoryBytes: num, node: str }),
    options: isObject,
    points: Array.isArray,
    bandwidth: opt((v) => (isObject(v) && 'error' in v ? str(v.error) : shape(BANDWIDTH)(v))),
  });
  if (top !== undefined) return `${top} is missing or not what deer-bench writes`;
  const points = x.points as unknown[];
  for (const [i, p] of points.entries()) {
    const at = `points[${i}]`;
    const bad =
      badField(p, at, { point: isObject, status: (v) => v === 'ok' || v === 'skipped' || v === 'error' }) ??
      badField((p as Record<string, unknown>).point, `${at}.point`, POINT) ??
      ((p as PointResult).status === 'ok' && (p as PointResult).deer && (p as PointResult).sequential
        ? badField(p, at, MEASURED)
        : undefined);
    if (bad !== undefined) return `${bad} is missing or not what deer-bench writes`;
  }
  return undefined;
}
