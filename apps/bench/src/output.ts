import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { replaceFile } from '@deerjs/app-shared';
import { speedupSvg } from './plot.js';
import type { BenchReport } from './report.js';

/** apps/bench/results/<backend>-<date>/, whatever the working directory. */
export function defaultOutDir(backend: string, now = new Date()): string {
  const stamp = now.toISOString().slice(0, 16).replace(/:/g, '-');
  return path.join(resultsDir(), `${backend}-${stamp}`);
}

/** The app's results folder (apps/bench/results in the repository), wherever the command runs from. */
export function resultsDir(): string {
  return path.join(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'), 'results');
}

/** Writes results.json and the speedup plots; returns the paths written. */
export function writeOutputs(report: BenchReport, dir: string, o: { json?: boolean } = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [];
  if (o.json ?? true) files.push(['results.json', `${JSON.stringify(report, null, 2)}\n`]);
  files.push(['speedup-sequential.svg', speedupSvg(report, 'sequential')]);
  if (report.points.some((r) => r.speedupOrt !== undefined))
    files.push(['speedup-ort.svg', speedupSvg(report, 'ort')]);
  return files.map(([name, text]) => {
    const file = path.join(dir, name);
    replaceFile(file, text);
    return file;
  });
}
