#!/usr/bin/env node
import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { replaceFile } from '@deerjs/app-shared';
import { ArgError, FULL_PROFILE, HELP, parseArgs, quickProfile, resolveOptions } from './args.js';
import { BenchBackendError, openBackend } from './backend.js';
import { runBench } from './bench.js';
import { buildGrid } from './grid.js';
import { formatMs } from './format.js';
import { ensureOutputDir } from './out-dir.js';
import { defaultOutDir, writeOutputs } from './output.js';
import { type BenchReport, reportProblem } from './report.js';
import { progressLine, reportHeader, resultsTable, speedupPivot } from './table.js';

function printReport(report: BenchReport, files: readonly string[]): void {
  const rel = (f: string) => {
    const r = path.relative(process.cwd(), f);
    return r.startsWith('..') ? f : r;
  };
  const out = process.stdout;
  out.write(`\n${reportHeader(report)}\n\n${resultsTable(report.points)}\n\n`);
  out.write(`${speedupPivot(report.points, 'sequential')}\n\n`);
  if (report.points.some((r) => r.speedupOrt !== undefined))
    out.write(`${speedupPivot(report.points, 'ort')}\n\n`);
  const bw = report.bandwidth;
  if (bw && 'error' in bw) out.write(`scan bandwidth: not measured (${bw.error})\n\n`);
  else if (bw)
    out.write(
      `bandwidth [${bw.shape.join(', ')}]: diagonal scan ${bw.scanGBs.toFixed(2)} GB/s, elementwise add ${bw.addGBs.toFixed(2)} GB/s, copy kernel ${bw.copyKernelGBs.toFixed(2)} GB/s, buffer copy ${bw.copyGBs.toFixed(2)} GB/s (scan at ${(100 * bw.kernelRatio).toFixed(0)}% of the copy kernel, ${(100 * bw.ratio).toFixed(0)}% of the buffer copy; wall time)\n${
        bw.device
          ? `bandwidth in device time: diagonal scan ${bw.device.scanGBs.toFixed(2)} GB/s, elementwise add ${bw.device.addGBs.toFixed(2)} GB/s, copy kernel ${bw.device.copyKernelGBs.toFixed(2)} GB/s (scan at ${(100 * bw.device.kernelRatio).toFixed(0)}% of the copy kernel)\n`
          : ''
      }\n`,
    );
  const counts = ['ok', 'skipped', 'error'].map(
    (s) => `${report.points.filter((r) => r.status === s).length} ${s}`,
  );
  out.write(`${report.points.length} points (${counts.join(', ')}) in ${formatMs(report.wallMs)}\n`);
  out.write(`wrote ${files.map(rel).join('\n      ')}\n`);
}

function replot(file: string, outDir: string | undefined): number {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ArgError(`--from: cannot read ${file} (${(err as Error).message})`);
  }
  const problem = reportProblem(parsed);
  if (problem !== undefined) throw new ArgError(`--from: ${file}: ${problem}`);
  const report = parsed as BenchReport;
  const dir = outDir ?? path.dirname(file);
  ensureOutputDir(dir);
  const files = writeOutputs(report, dir, { json: outDir !== undefined });
  printReport(report, files);
  return 0;
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.from !== undefined) return replot(args.from, args.out);
  // A bad --out fails now, not after minutes of benchmarking.
  if (args.out !== undefined) ensureOutputDir(args.out);
  const backend = await openBackend(args.backend, args.dtype ?? 'float32', {
    ...(args.sequentialKernel ? { sequentialKernel: args.sequentialKernel } : {}),
    ...(args.scanKernel ? { scanKernel: args.scanKernel } : {}),
    ...(args.denseScanKernel ? { denseScanKernel: args.denseScanKernel } : {}),
    ...(args.iterationOverhead !== undefined ? { iterationOverhead: args.iterationOverhead } : {}),
    ...(args.timestamps === false ? { timestamps: false } : {}),
  });
  try {
    const caps = backend.capabilities;
    const options = resolveOptions(args, args.quick ? quickProfile(backend.name, caps.device) : FULL_PROFILE);
    // A grid the options cannot make fails before anything is written.
    buildGrid(options);
    const dir = options.out ?? defaultOutDir(backend.name);
    if (options.out === undefined) ensureOutputDir(dir);
    process.stderr.write(`deer-bench: backend ${backend.name} (${caps.device}), ${options.dtype}\n`);
    // One JSON line per point as it finishes, so a run cut short keeps what it measured.
    const lines = path.join(dir, 'points.jsonl');
    replaceFile(lines, ''); // a new file: a symlink at its name is replaced, not written through
    const report = await runBench(backend, options, {
      onStart: (_p, i, n) => {
        if (i === 0) process.stderr.write(`running ${n} points (each one appended to ${lines})\n`);
      },
      onPoint: (r, i, n) => {
        appendFileSync(lines, `${JSON.stringify(r)}\n`);
        process.stderr.write(`${progressLine(r, i, n)}\n`);
      },
      onWarning: (msg) => process.stderr.write(`warning: ${msg}\n`),
      onBandwidth: (shape) => process.stderr.write(`measuring the scan bandwidth on [${shape.join(', ')}]\n`),
    });
    printReport(report, writeOutputs(report, dir));
    return report.points.some((r) => r.status === 'error') ? 1 : 0;
  } finally {
    await backend.destroy();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ArgError || err instanceof BenchBackendError) {
      process.stderr.write(`deer-bench: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(
        `deer-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 1;
    }
  },
);
