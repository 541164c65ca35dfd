import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseArgs, resolveOptions } from '../src/args.js';
import { openBackend } from '../src/backend.js';
import { runBench } from '../src/bench.js';
import { writeOutputs } from '../src/output.js';
import { type BenchReport, reportProblem } from '../src/report.js';
import { resultsTable, speedupPivot } from '../src/table.js';

const dir = mkdtempSync(path.join(tmpdir(), 'deer-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the best available backend', () => {
  it('is never an emulated one while the cpu backend is installed', async () => {
    // deer-bench's settings for tfjs (the wasm engine) and webgpu (timestamps) had read as a request
    // for each: the README's first command then ran on llvmpipe, 2–46× slower than cpu here.
    const backend = await openBackend(undefined, 'float32');
    try {
      expect(backend.capabilities.emulated, backend.capabilities.device).not.toBe(true);
    } finally {
      await backend.destroy();
    }
  });
});

describe('a tiny grid on the cpu backend', () => {
  it('writes JSON and SVG with sane numbers', async () => {
    const options = resolveOptions(
      parseArgs([
        // --quick (its bandwidth section on 16 × 1e5, not 1e6: 6 s on cpu); the flags below win
        // over its grid, and --quasi over its no-quasi.
        '--quick',
        '--quasi',
        '--backend',
        'cpu',
        '--nh',
        '1,3',
        '--T',
        '30,200',
        '--batch',
        '2',
        '--heads',
        '2',
        '--heads-size',
        '4',
        '--dtype',
        'float64',
        '--warmup',
        '1',
        '--repeats',
        '2',
        '--out',
        dir,
      ]),
    );
    const backend = await openBackend('cpu', 'float64');
    const lines: string[] = [];
    let report: BenchReport;
    try {
      report = await runBench(backend, options, { onPoint: (r) => lines.push(r.point.id) });
      expect(backend.liveTensors()).toBe(0);
    } finally {
      await backend.destroy();
    }
    const files = writeOutputs(report, dir);
    expect(files.map((f) => path.basename(f))).toEqual(
      expect.arrayContaining(['results.json', 'speedup-sequential.svg']),
    );

    const json = JSON.parse(readFileSync(path.join(dir, 'results.json'), 'utf8')) as BenchReport;
    expect(reportProblem(json)).toBeUndefined(); // --from can re-plot it
    expect(json.backend.name).toBe('cpu');
    expect(json.dtype).toBe('float64');
    expect(json.machine.cores).toBeGreaterThan(0);
    expect(json.machine.node).toBe(process.version);
    // Per T: nh=1, nh=3, nh=3 quasi, 4 units in 2 heads.
    expect(json.points).toHaveLength(8);
    expect(lines).toHaveLength(8);
    for (const r of json.points) {
      expect(r.status, r.reason).toBe('ok');
      expect(r.deer!.iterations).toBeGreaterThanOrEqual(1);
      expect(r.deer!.converged).toBe(true);
      expect(r.deer!.fellBack).toBe(false);
      expect(r.deer!.samplesMs.length).toBeGreaterThanOrEqual(1);
      expect(r.deer!.medianMs).toBeGreaterThan(0);
      expect(r.sequential!.medianMs).toBeGreaterThan(0);
      expect(r.speedupSequential).toBeCloseTo(r.sequential!.medianMs / r.deer!.medianMs, 10);
      expect(r.maxDiffDeer).toBeLessThanOrEqual(1e-9);
      expect(r.memory!.rssBytes).toBeGreaterThan(0);
      if (r.ort && 'medianMs' in r.ort) {
        // onnxruntime runs float32: agreement to single precision.
        expect(r.maxDiffOrt).toBeLessThan(1e-5);
        expect(r.speedupOrt).toBeGreaterThan(0);
      }
    }
    const quasi = json.points.filter((r) => r.point.series === 'nh=3 quasi');
    expect(quasi.every((r) => r.deer!.exactJacobian === false && r.deer!.structure === 'diagonal')).toBe(
      true,
    );
    const heads = json.points.filter((r) => r.point.heads === 2);
    expect(heads.every((r) => r.deer!.exactJacobian && r.deer!.structure === 'block(2)')).toBe(true);

    const svg = readFileSync(path.join(dir, 'speedup-sequential.svg'), 'utf8');
    expect(svg.match(/<polyline /g)).toHaveLength(4);
    expect(resultsTable(json.points)).toContain('nh=3 quasi');
    const pivot = speedupPivot(json.points, 'sequential').split('\n');
    // Header, rule, one row per line of the plot.
    expect(pivot).toHaveLength(2 + 4);
    expect(pivot[0]).toMatch(/30\s+200$/);
  });

  it('replaces its output files whole: a symlink at their name is replaced, not written through', () => {
    const out = path.join(dir, 'replace');
    const precious = path.join(dir, 'precious.txt');
    writeFileSync(precious, 'keep me');
    const report = JSON.parse(readFileSync(path.join(dir, 'results.json'), 'utf8')) as BenchReport;
    mkdirSync(out);
    symlinkSync(precious, path.join(out, 'results.json'));
    writeOutputs(report, out);
    expect(readFileSync(precious, 'utf8')).toBe('keep me');
    expect(lstatSync(path.join(out, 'results.json')).isSymbolicLink()).toBe(false);
    expect(JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'))).toEqual(report);
    expect(readdirSync(out).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('records a point that cannot fit as skipped and goes on', async () => {
    const options = resolveOptions(
      parseArgs([
        // --quick: the bandwidth section on 16 × 1e5 rather than 16 × 1e6 (6 s of this test on cpu).
        '--quick',
        '--nh',
        '2',
        '--T',
        '10,100000',
        '--heads',
        'none',
        '--no-quasi',
        '--no-ort',
        '--max-memory',
        '1MiB',
        '--dtype',
        'float64',
      ]),
    );
    const backend = await openBackend('cpu', 'float64');
    try {
      const report = await runBench(backend, options);
      expect(report.points.map((r) => r.status)).toEqual(['ok', 'skipped']);
      // In units that show the numbers (GiB to two places had read "~0.00 GiB > 0.00 GiB").
      expect(report.points[1]!.reason).toMatch(/needs ~\d+(\.\d+)? MiB .* > --max-memory 1 MiB$/);
      // The bandwidth section keeps to the limit too (it had run on 16 × 1e5 whatever the limit).
      expect(report.bandwidth).toEqual({ error: expect.stringMatching(/^skipped: needs ~\d+(\.\d+)? MiB > --max-memory 1 MiB$/) });
    } finally {
      await backend.destroy();
    }
  });

  it('records a point that throws and goes on', async () => {
    const options = resolveOptions(
      parseArgs([
        // --quick: the bandwidth section on 16 × 1e5 rather than 16 × 1e6 (6 s of this test on cpu).
        '--quick',
        '--nh',
        '2',
        '--T',
        '10,20,30',
        '--heads',
        'none',
        '--no-quasi',
        '--no-ort',
        '--dtype',
        'float64',
      ]),
    );
    const cpu = await openBackend('cpu', 'float64');
    // A backend whose sequential loop fails for T = 20 only.
    const failing = new Proxy(cpu, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver);
        if (key !== 'runSequential' || typeof v !== 'function')
          return typeof v === 'function' ? v.bind(target) : v;
        return (program: unknown, inputs: { input?: { shape: readonly number[] } }) => {
          if (inputs.input?.shape[1] === 20) throw new Error('device fell over');
          return v.call(target, program, inputs);
        };
      },
    });
    try {
      const report = await runBench(failing, options);
      expect(report.points.map((r) => r.status)).toEqual(['ok', 'error', 'ok']);
      expect(report.points[1]!.reason).toMatch(/device fell over/);
      expect(cpu.liveTensors()).toBe(0);
    } finally {
      await cpu.destroy();
    }
  });
});
