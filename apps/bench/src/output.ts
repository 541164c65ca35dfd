import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { replaceFile } from '@deerjs/app-shared';
import { speedupSvg } from './plot.js';
import type { BenchReport } from './report.js';

/**
 * results/<backend>-<date and time to the second>, with -2, -3, … where that folder exists: two quick
 * runs in one minute had written into one folder, the second replacing the first's results.
 */
export function defaultOutDir(backend: string, now = new Date()): string {
  const stamp = now.toISOString().slice(0, 19).replace(/:/g, '-');
  const base = path.join(resultsDir(), `${backend}-${stamp}`);
  let dir = base;
  for (let k = 2; existsSync(dir); k++) dir = `${base}-${k}`;
  return dir;
}

/** The app's folder (apps/bench in the repository), wherever the command runs from. */
export function appDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
}

/** The app's results folder (apps/bench/results in the repository), wherever the command runs from. */
export function resultsDir(): string {
  return path.join(appDir(), 'results');
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
