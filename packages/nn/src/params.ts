import { describeValue, InvalidArgumentError, NonFiniteError } from '@deerjs/core';

/** Host-side parameters: one flat row-major Float64Array per name. The training master copy. */
export type Params = Record<string, Float64Array>;

/** A parameter's name and shape. */
export interface ParamShape {
  readonly name: string;
  readonly shape: readonly number[];
}

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Total number of scalars. */
export function parameterCount(params: Readonly<Params>): number {
  let n = 0;
  for (const v of Object.values(params)) n += v.length;
  return n;
}

/** Zeros with the same names and sizes. */
export function zerosLike(params: Readonly<Params>): Params {
  const out: Params = {};
  for (const [k, v] of Object.entries(params)) out[k] = new Float64Array(v.length);
  return out;
}

/** A deep copy. */
export function cloneParams(params: Readonly<Params>): Params {
  const out: Params = {};
  for (const [k, v] of Object.entries(params)) out[k] = Float64Array.from(v);
  return out;
}

/**
 * A NonFiniteError naming the first NaN or ±Inf entry of `values` (`what` names the array); an
 * entry that is not a number at all (a string, a BigInt, a hole) is an InvalidArgumentError — it
 * had been a NonFiniteError that called '1' or 1n a non-finite value.
 */
export function checkFiniteValues(what: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    const v: unknown = values[i];
    if (typeof v !== 'number') throw new InvalidArgumentError(`${what} at index ${i}`, 'a number', `${describeValue(v)} (a ${typeof v})`);
    if (!Number.isFinite(v)) throw new NonFiniteError(what, i, v);
  }
}
