import { readFileSync } from 'node:fs';
import { MAX_LENGTH, MAX_VALUES } from '../args.js';
import { DataFormatError } from '../errors.js';
import { ArrayDataset, labelArray } from './dataset.js';

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

export interface TsHeader {
  readonly problemName: string;
  readonly dimensions: number;
  readonly seriesLength: number;
  readonly classLabels: readonly string[];
}

/**
 * Parse a sktime/UEA `.ts` file with equal-length, multivariate (or univariate) series and class
 * labels: header lines `@key value`, then `@data`, then one case per line — dimensions separated by
 * ':', values by ',', the class label last.
 */
export function parseTs(text: string, file: string): { header: TsHeader; data: ArrayDataset } {
  const lines = text.split(/\r?\n/);
  const tags = new Map<string, string>();
  let i = 0;
  let sawData = false;
  for (; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!line.startsWith('@'))
      throw new DataFormatError(file, `line ${i + 1}: expected a header line starting with '@' before @data`);
    const sp = line.search(/\s/);
    const key = (sp < 0 ? line.slice(1) : line.slice(1, sp)).toLowerCase();
    const value = sp < 0 ? '' : line.slice(sp + 1).trim();
    if (key === 'data') {
      sawData = true;
      i++;
      break;
    }
    tags.set(key, value);
  }
  if (!sawData) throw new DataFormatError(file, 'no @data line');
  const need = (key: string) => {
    const v = tags.get(key.toLowerCase());
    if (v === undefined) throw new DataFormatError(file, `header lacks @${key}`);
    return v;
  };
  const problemName = need('problemName');
  const univariate = need('univariate').toLowerCase() === 'true';
  const dimensions = univariate ? 1 : Number(need('dimensions'));
  if (!Number.isSafeInteger(dimensions) || dimensions < 1)
    throw new DataFormatError(
      file,
      `@dimensions ${JSON.stringify(tags.get('dimensions'))}: expected a positive integer`,
    );
  if (need('equalLength').toLowerCase() !== 'true')
    throw new DataFormatError(file, '@equalLength false: only equal-length series are supported');
  const seriesLength = Number(need('seriesLength'));
  if (!Number.isSafeInteger(seriesLength) || seriesLength < 1)
    throw new DataFormatError(
      file,
      `@seriesLength ${JSON.stringify(tags.get('serieslength'))}: expected a positive integer`,
    );
  const cl = need('classLabel').split(/\s+/);
  if (cl[0]?.toLowerCase() !== 'true' || cl.length < 3)
    throw new DataFormatError(file, '@classLabel must be "true" followed by at least two labels');
  const classLabels = cl.slice(1);
  const dup = classLabels.findIndex((l, k) => classLabels.indexOf(l) !== k);
  if (dup >= 0)
    throw new DataFormatError(file, `@classLabel lists ${JSON.stringify(classLabels[dup])} twice`);
  const cases = lines
    .slice(i)
    .map((l, k) => ({ text: l.trim(), line: i + k + 1 }))
    .filter((c) => c.text !== '' && !c.text.startsWith('#'));
  if (cases.length === 0) throw new DataFormatError(file, 'no cases after @data');
  // Check the declared sizes against the text before allocating: every value takes at least one
  // character, so a huge @seriesLength or @dimensions cannot be backed by the file.
  const per = seriesLength * dimensions;
  const chars = cases.reduce((a, c) => a + c.text.length, 0);
  if (cases.length * per > chars)
    throw new DataFormatError(
      file,
      `@seriesLength ${seriesLength} × @dimensions ${dimensions} = ${per} values per case cannot fit: its ${cases.length} case(s) hold ${chars} characters in all`,
    );
  if (seriesLength > MAX_LENGTH)
    throw new DataFormatError(
      file,
      `@seriesLength ${seriesLength} exceeds the ${MAX_LENGTH} time steps this app takes in a sequence`,
    );
  if (cases.length * per > MAX_VALUES)
    throw new DataFormatError(
      file,
      `${cases.length} cases of ${per} values: more than the ${MAX_VALUES} this app holds in memory`,
    );
  const values = new Float32Array(cases.length * per);
  const labels = labelArray(cases.length, classLabels.length);
  cases.forEach(({ text, line }, r) => {
    const parts = text.split(':');
    if (parts.length !== dimensions + 1) {
      throw new DataFormatError(
        file,
        `line ${line}: ${parts.length - 1} dimensions (plus label), expected ${dimensions}`,
      );
    }
    const label = classLabels.indexOf(parts[dimensions]!.trim());
    if (label < 0)
      throw new DataFormatError(
        file,
        `line ${line}: label ${JSON.stringify(parts[dimensions]!.trim())} is not one of @classLabel ${classLabels.join(' ')}`,
      );
    labels[r] = label;
    for (let d = 0; d < dimensions; d++) {
      const vals = parts[d]!.split(',');
      if (vals.length !== seriesLength) {
        throw new DataFormatError(
          file,
          `line ${line}: dimension ${d + 1} has ${vals.length} values, expected @seriesLength ${seriesLength}`,
        );
      }
      for (let t = 0; t < seriesLength; t++) {
        const s = vals[t]!.trim();
        // Decimal only: Number() also takes '0x10', '0b11', '0o7' and '' (0).
        const v = DECIMAL.test(s) ? Number(s) : Number.NaN;
        if (!Number.isFinite(v))
          throw new DataFormatError(
            file,
            `line ${line}: dimension ${d + 1}, value ${t + 1} is ${JSON.stringify(vals[t])}, not a number`,
          );
        // Stored as float32: 1e39 would become Infinity there.
        if (!Number.isFinite(Math.fround(v)))
          throw new DataFormatError(
            file,
            `line ${line}: dimension ${d + 1}, value ${t + 1} is ${JSON.stringify(vals[t])}, outside float32 range (±3.4e38)`,
          );
        values[r * per + t * dimensions + d] = v;
      }
    }
  });
  const header = { problemName, dimensions, seriesLength, classLabels };
  return { header, data: new ArrayDataset(values, labels, seriesLength, dimensions, classLabels.length) };
}

export function loadTs(file: string): { header: TsHeader; data: ArrayDataset } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DataFormatError(
      file,
      `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  return parseTs(text, file);
}
