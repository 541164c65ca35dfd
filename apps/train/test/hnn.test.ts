import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCpuBackend } from '@deerjs/cpu';
import { describe, expect, it } from 'vitest';
import { parseCli } from '../src/args.js';
import { UsageError } from '../src/errors.js';
import { maxRelativeDrift, trainHnn } from '../src/hnn/train-hnn.js';
import { generateOrbits, STATE, timeGrid } from '../src/hnn/two-body.js';
import { type HnnEvalRecord, type HnnStepRecord, readMetrics } from '../src/metrics.js';
import { configOf, mean, quiet, tempDir } from './helpers.js';

const small = (out: string, ...extra: string[]) =>
  configOf([
    'hnn',
    '--points',
    '41',
    '--t-end',
    '2',
    '--orbits',
    '4',
    '--test-orbits',
    '1',
    '--hidden',
    '8',
    '--layers',
    '1',
    '--out',
    out,
    ...extra,
  ]);

const steps = (dir: string) =>
  readMetrics<HnnStepRecord | HnnEvalRecord>(join(dir, 'metrics.jsonl')).filter(
    (r): r is HnnStepRecord => r.type === 'step',
  );

describe('two-body data', () => {
  it('the reference trajectories conserve energy (1e-8 relative) and total momentum', async () => {
    const cpu = createCpuBackend({ dtype: 'float64' });
    try {
      const t = timeGrid(1001, 10);
      const d = await generateOrbits(cpu, 3, t, 7);
      expect(d.y).toHaveLength(3 * 1000 * STATE);
      expect(maxRelativeDrift(d, 1000)).toBeLessThan(1e-8);
      let moved = 0;
      let momentum = 0;
      for (let k = 0; k < 3 * 1000; k++) {
        const o = k * STATE;
        moved = Math.max(moved, Math.abs(d.y[o]! - d.y0[Math.floor(k / 1000) * STATE]!));
        momentum = Math.max(
          momentum,
          Math.abs(d.y[o + 4]! + d.y[o + 6]!),
          Math.abs(d.y[o + 5]! + d.y[o + 7]!),
        );
      }
      expect(moved).toBeGreaterThan(0.3); // the bodies really orbit
      expect(momentum).toBeLessThan(1e-10);
    } finally {
      await cpu.destroy();
    }
  });
});

describe('hnn training', () => {
  it('lowers the loss on a short CPU run and writes metrics, checkpoint and plots', async () => {
    const out = tempDir('hnn-run');
    const s = await trainHnn(
      small(out, '--steps', '16', '--epochs', '16', '--batch', '4', '--lr', '3e-2', '--warmup', '0'),
      quiet,
    );
    const rec = steps(out);
    expect(rec.map((r) => r.step)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(mean(rec.slice(-3).map((r) => r.loss))).toBeLessThan(
      0.8 * mean(rec.slice(0, 3).map((r) => r.loss)),
    );
    expect(rec.every((r) => r.newton > 0 && !r.fellBack)).toBe(true);
    expect(s.dataEnergyDrift).toBeLessThan(1e-8);
    expect(Number.isFinite(s.test.loss) && Number.isFinite(s.test.energyDrift)).toBe(true);
    for (const f of ['plot.svg', 'orbits.svg'])
      expect(readFileSync(join(out, f), 'utf8')).toMatch(/^<\?xml[\s\S]*<svg[\s\S]*<path [\s\S]*<\/svg>\n$/);
    expect(existsSync(join(out, 'checkpoint.ckpt'))).toBe(true);
  });

  it('DEER and Dormand–Prince give close first losses and gradients', async () => {
    const first = async (solver: string) => {
      const out = tempDir(`hnn-${solver}`);
      await trainHnn(small(out, '--steps', '1', '--solver', solver), quiet);
      return steps(out)[0]!;
    };
    const a = await first('deer');
    const b = await first('sequential');
    expect(b.newton).toBe(0);
    // Both converge tightly (float64: Newton to 1e-10, DP to 1e-10); the adjoint is the same at both.
    expect(Math.abs(a.loss - b.loss) / b.loss).toBeLessThan(1e-5);
    expect(Math.abs(a.gradNorm - b.gradNorm) / b.gradNorm).toBeLessThan(1e-5);
  });

  it('rejects hnn flags on other tasks and a one-point grid', () => {
    expect(() => parseCli(['eigenworms', '--synthetic', '--orbits', '3'])).toThrow(UsageError);
    expect(() => parseCli(['hnn', '--points', '1'])).toThrow(/at least 2/);
    const p = parseCli(['hnn']);
    expect(p.help === false && [p.config.dtype, p.config.points, p.config.tEnd, p.config.hidden]).toEqual([
      'float64',
      10_000,
      10,
      64,
    ]);
  });
});
