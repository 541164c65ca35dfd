import type { Backend } from '@deerjs/core';
import type { BenchOptions } from './args.js';
import { type Bandwidth, bandwidthBytes, bandwidthShape, measureBandwidth } from './bandwidth.js';
import { formatBytes } from './format.js';
import { buildGrid, type GridPoint } from './grid.js';
import { gitCommit, machineInfo, onnxruntimeVersion } from './machine.js';
import { appDir } from './output.js';
import { PointRunner } from './point.js';
import type { BenchReport, PointResult } from './report.js';
import { loadOnnxPackage } from './runners/ort.js';

export interface BenchHooks {
  /** Before a point runs (index is 0-based). */
  readonly onStart?: (p: GridPoint, index: number, total: number) => void;
  readonly onPoint?: (r: PointResult, index: number, total: number) => void;
  /** Non-fatal problems, e.g. onnxruntime missing. */
  readonly onWarning?: (message: string) => void;
  /** Before the scan bandwidth is measured on [B, T, n]. */
  readonly onBandwidth?: (shape: readonly [number, number, number]) => void;
}

/** Run every grid point on one backend; a failing or skipped point is recorded and the run goes on. */
export async function runBench(
  backend: Backend,
  o: BenchOptions,
  hooks: BenchHooks = {},
): Promise<BenchReport> {
  const startedAt = new Date();
  const t0 = performance.now();
  const grid = buildGrid(o);
  let onnx: Awaited<ReturnType<typeof loadOnnxPackage>> | null = null;
  if (o.ort) {
    try {
      onnx = await loadOnnxPackage();
    } catch (err) {
      hooks.onWarning?.(
        `onnxruntime baseline disabled: @deerjs/onnx could not be loaded (${(err as Error).message})`,
      );
    }
  }
  const runner = new PointRunner({
    backend,
    dtype: o.dtype,
    seed: o.seed,
    maxIter: o.maxIter,
    maxMemory: o.maxMemory,
    maxTime: o.maxTime,
    measure: { warmup: o.warmup, repeats: o.repeats, budgetMs: o.budget * 1000 },
    onnx,
  });
  const points: PointResult[] = [];
  for (const [i, p] of grid.entries()) {
    hooks.onStart?.(p, i, grid.length);
    const late = (performance.now() - t0) / 1000 > o.deadline;
    const r: PointResult = late
      ? { point: p, status: 'skipped', reason: `past --deadline ${o.deadline} s`, estimatedBytes: 0, wallMs: 0 }
      : await runner.run(p);
    points.push(r);
    hooks.onPoint?.(r, i, grid.length);
  }
  // The limits hold for the bandwidth section too (it had run [16, 1e6, 1] past --max-memory and
  // --deadline), and it says it is running: 10 s on cpu without --quick.
  let bandwidth: Bandwidth | { error: string };
  const shape = bandwidthShape(backend, o.quick);
  const bytes = bandwidthBytes(shape, o.dtype);
  if ((performance.now() - t0) / 1000 > o.deadline) bandwidth = { error: `skipped: past --deadline ${o.deadline} s` };
  else if (bytes > o.maxMemory) bandwidth = { error: `skipped: needs ~${formatBytes(bytes)} > --max-memory ${formatBytes(o.maxMemory)}` };
  else {
    hooks.onBandwidth?.(shape);
    try {
      bandwidth = await measureBandwidth(backend, shape, o.dtype, o.seed);
    } catch (err) {
      bandwidth = { error: err instanceof Error ? err.message.split('\n')[0]! : String(err) };
    }
  }
  const caps = backend.capabilities;
  return {
    tool: 'deer-bench',
    version: 1,
    startedAt: startedAt.toISOString(),
    wallMs: performance.now() - t0,
    machine: machineInfo(),
    backend: { name: backend.name, device: caps.device, maxBufferBytes: caps.maxBufferBytes },
    dtype: o.dtype,
    // deerjs's commit, not that of the directory the command runs in.
    git: gitCommit(appDir()),
    onnxruntime: onnx ? onnxruntimeVersion() : null,
    options: {
      nh: o.nh,
      T: o.T,
      batch: o.batch,
      heads: o.heads,
      headsSize: o.headsSize,
      quasi: o.quasi,
      warmup: o.warmup,
      repeats: o.repeats,
      budgetSeconds: o.budget,
      maxIter: o.maxIter,
      maxTimeSeconds: Number.isFinite(o.maxTime) ? o.maxTime : null,
      deadlineSeconds: Number.isFinite(o.deadline) ? o.deadline : null,
      maxMemoryBytes: o.maxMemory,
      seed: o.seed,
      quick: o.quick,
      sequentialKernel: o.sequentialKernel,
      scanKernel: o.scanKernel,
      denseScanKernel: o.denseScanKernel,
      // The round trip in effect (the flag's, else the backend's default; null where none).
      iterationOverhead: caps.iterationOverhead ?? null,
      timestamps: o.timestamps,
    },
    points,
    bandwidth,
  };
}
