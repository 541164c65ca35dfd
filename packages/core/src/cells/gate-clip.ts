import { clip, type Vec } from '../cell/lang.js';
import { CellDefinitionError } from '../errors.js';

/** ONNX's cell clip as a function of a gate pre-activation (identity when no clip is set). */
export function gateClip(c: number | undefined, cell = 'cell'): (v: Vec) => Vec {
  if (c === undefined) return (v) => v;
  if (typeof c !== 'number' || !(c > 0) || !Number.isFinite(c)) {
    throw new CellDefinitionError(
      `${cell}: clip`,
      'a finite number > 0 (or undefined for no clip)',
      String(c),
    );
  }
  return (v) => clip(v, c);
}

/**
 * Check a built-in cell's options object: an object, with no names outside `known` (a misspelt
 * `peepholes` had built a plain LSTM, `hiden` the default MLP).
 */
export function checkCellOptions<T>(cell: string, options: T, known: readonly string[]): T {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new CellDefinitionError(`${cell}: options`, `an object of options (${known.join(', ')})`, String(options));
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new CellDefinitionError(`${cell}: ${key}`, `one of its options (${known.join(', ')})`, 'an unknown option');
  }
  return options;
}

/** Check a built-in cell's size option: an integer ≥ `min`. */
export function checkSize(cell: string, option: string, v: unknown, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new CellDefinitionError(
      `${cell}: ${option}`,
      min === 1 ? 'a positive integer' : `an integer ≥ ${min}`,
      String(v),
    );
  }
  return v;
}
