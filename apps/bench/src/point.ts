import { type Backend, DTYPE_BYTES, type DType, type TypedArray } from '@deerjs/core';
import { backendBytes } from './backend.js';
import { formatBytes, formatMs } from './format.js';
import { estimateBytes, type GridPoint } from './grid.js';
import { MemorySampler } from './memory.js';
import { CostPredictor } from './predict.js';
import { makeProblem, type Problem } from './problem.js';
import type { DeerTiming, PointResult, Timing } from './report.js';
import { type KernelProfile, runDeer } from './runners/deer.js';
import { type loadOnnxPackage, openOrtRunner } from './runners/ort.js';
import { runSequential } from './runners/sequential.js';
import { maxAbsDiff, median } from './stats.js';
import { type MeasureOptions, type Measured, measure } from './timing.js';

export interface PointContext {
  readonly backend: Backend;
  readonly dtype: DType;
  readonly seed: number;
  readonly maxIter: number;
  readonly maxMemory: number;
  /** Seconds; points predicted to take longer (one DEER + one sequential run) are skipped. */
  readonly maxTime: number;
  readonly measure: MeasureOptions;
  /** null: onnxruntime is not run. */
  readonly onnx: Awaited<ReturnType<typeof loadOnnxPackage>> | null;
}

/** Baseline results of one model and length, reused by the quasi-DEER twin of a dense point. */
interface Baseline {
  readonly key: string;
  readonly sequential: Timing;
  readonly ySeq: TypedArray;
  readonly ort: PointResult['ort'];
  readonly maxDiffOrt: number | undefined;
}

const baselineKey = (p: GridPoint) => `${p.hiddenSize}/${p.heads ?? 'dense'}/${p.T}/${p.batch}`;

function timing<Out>(m: Measured<Out>): Timing {
  return {
    medianMs: median(m.samplesMs),
    samplesMs: m.samplesMs,
    warmupRuns: m.warmupRuns,
    ...(m.note === undefined ? {} : { note: m.note }),
  };
}

function message(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message.split('\n')[0]}` : String(err);
}

/** Runs grid points one after another, keeping the last point's baseline for its quasi twin. */
export class PointRunner {
  private last: Baseline | undefined;
  private readonly predictor = new CostPredictor();

  constructor(private readonly ctx: PointContext) {}

  async run(p: GridPoint): Promise<PointResult> {
    const started = performance.now();
    const estimatedBytes = estimateBytes(p, DTYPE_BYTES[this.ctx.dtype]);
    if (estimatedBytes > this.ctx.maxMemory) {
      return {
        point: p,
        status: 'skipped',
        reason: `needs ~${formatBytes(estimatedBytes)} (Jacobian T·B·n·s + sequences) > --max-memory ${formatBytes(this.ctx.maxMemory)}`,
        estimatedBytes,
        wallMs: 0,
      };
    }
    const predicted = this.predictor.predictSeconds(p);
    if (predicted !== undefined && predicted > this.ctx.maxTime) {
      return {
        point: p,
        status: 'skipped',
        reason: `predicted ~${formatMs(predicted * 1000)} per run > --max-time ${formatMs(this.ctx.maxTime * 1000)}`,
        estimatedBytes,
        wallMs: 0,
      };
    }
    const sampler = new MemorySampler(() => backendBytes(this.ctx.backend)).start();
    let problem: Problem | undefined;
    try {
      problem = makeProblem(this.ctx.backend, p, this.ctx.dtype, this.ctx.seed);
      const base = await this.baseline(problem);
      const parts: { solveMs: number; readbackMs: number; deviceMs?: number; deviceKernels?: KernelProfile }[] = [];
      const d = await measure(
        async () => {
          const r = await runDeer(this.ctx.backend, problem!, {
            maxIter: this.ctx.maxIter,
            onIteration: () => sampler.sample(),
          });
          parts.push(r.output);
          return r;
        },
        () => {},
        this.ctx.measure,
      );
      const stats = d.output.stats;
      // The timed runs are the last samplesMs.length ones.
      const timed = parts.slice(parts.length - d.samplesMs.length);
      const deviceTimes = timed.flatMap((t) => (t.deviceMs === undefined ? [] : [t.deviceMs]));
      const deviceMedian = deviceTimes.length === timed.length && timed.length > 0 ? median(deviceTimes) : undefined;
      const kernelsRun =
        deviceMedian === undefined
          ? timed.at(-1)
          : timed.reduce((best, t) => (Math.abs(t.deviceMs! - deviceMedian) < Math.abs(best.deviceMs! - deviceMedian) ? t : best));
      const deer: DeerTiming = {
        ...timing(d),
        iterations: stats.iterations,
        converged: stats.converged,
        fellBack: stats.fellBack,
        structure: stats.structure,
        exactJacobian: stats.exactJacobian,
        windows: stats.windows,
        solveMs: median(timed.map((t) => t.solveMs)),
        readbackMs: median(timed.map((t) => t.readbackMs)),
        ...(deviceMedian !== undefined ? { deviceMs: deviceMedian } : {}),
        // The kernels of the run whose device time is the median's (the last run's had been shown
        // beside the median, a kernel then taking longer than the whole).
        ...(kernelsRun?.deviceKernels ? { deviceKernels: kernelsRun.deviceKernels } : {}),
        ...(stats.device
          ? { device: { ...stats.device, submitsPerIteration: stats.device.submits / Math.max(1, stats.iterations) } }
          : {}),
      };
      const auto = p.jacobian === 'diagonal' ? undefined : await this.auto(problem);
      const shoot = p.jacobian === 'diagonal' ? undefined : await this.shoot(problem, base.ySeq);
      this.predictor.record(p, deer.medianMs + base.sequential.medianMs);
      const ortMs = base.ort && 'medianMs' in base.ort ? base.ort.medianMs : undefined;
      return {
        point: p,
        status: 'ok',
        deer,
        sequential: base.sequential,
        ...(auto === undefined ? {} : { auto, speedupAuto: base.sequential.medianMs / auto.medianMs }),
        ...(shoot === undefined ? {} : { shoot, speedupShoot: base.sequential.medianMs / shoot.medianMs }),
        ...(base.ort === undefined ? {} : { ort: base.ort }),
        speedupSequential: base.sequential.medianMs / deer.medianMs,
        ...(ortMs === undefined ? {} : { speedupOrt: ortMs / deer.medianMs }),
        maxDiffDeer: maxAbsDiff(d.output.y, base.ySeq),
        ...(base.maxDiffOrt === undefined ? {} : { maxDiffOrt: base.maxDiffOrt }),
        estimatedBytes,
        memory: sampler.stop(),
        wallMs: performance.now() - started,
      };
    } catch (err) {
      return {
        point: p,
        status: 'error',
        reason: message(err),
        estimatedBytes,
        memory: sampler.stop(),
        wallMs: performance.now() - started,
      };
    } finally {
      problem?.dispose();
    }
  }

  /** `method: 'auto'` on the problem: its time and its cost model's choice. */
  private async auto(problem: Problem): Promise<NonNullable<PointResult['auto']>> {
    const a = await measure(
      () => runDeer(this.ctx.backend, problem, { maxIter: this.ctx.maxIter, method: 'auto' }),
      () => {},
      this.ctx.measure,
    );
    const st = a.output.stats;
    return {
      ...timing(a),
      iterations: st.iterations,
      choice: st.stopReason === 'sequential' ? 'sequential' : st.structure === 'none' ? 'shooting' : st.structure,
      reason: st.plan?.reason ?? st.switches[0] ?? 'no cost model (the backend states no parallelism)',
      ...(st.plan ? { plan: st.plan } : {}),
    };
  }

  /** `method: 'shoot'` on the problem: its time, sweeps, and distance from the sequential answer. */
  private async shoot(problem: Problem, ySeq: ArrayLike<number>): Promise<NonNullable<PointResult['shoot']>> {
    const a = await measure(
      () => runDeer(this.ctx.backend, problem, { maxIter: this.ctx.maxIter, method: 'shoot' }),
      () => {},
      this.ctx.measure,
    );
    const st = a.output.stats;
    return { ...timing(a), sweeps: st.shootingSweeps, converged: st.converged, maxDiff: maxAbsDiff(a.output.y, ySeq) };
  }

  private async baseline(problem: Problem): Promise<Baseline> {
    const key = baselineKey(problem.point);
    if (this.last?.key === key) return this.last;
    this.last = undefined;
    const s = await measure(
      () => runSequential(this.ctx.backend, problem),
      () => {},
      this.ctx.measure,
    );
    const ySeq = s.output;
    let ort: PointResult['ort'];
    let maxDiffOrt: number | undefined;
    if (this.ctx.onnx) {
      try {
        const runner = await openOrtRunner(this.ctx.onnx, problem);
        try {
          const o = await measure(
            () => runner.run(),
            () => {},
            this.ctx.measure,
          );
          ort = timing(o);
          maxDiffOrt = maxAbsDiff(o.output, ySeq);
        } finally {
          await runner.release();
        }
      } catch (err) {
        ort = { error: message(err) };
      }
    }
    this.last = { key, sequential: timing(s), ySeq, ort, maxDiffOrt };
    return this.last;
  }
}

