import { describe, expect, it } from 'vitest';
import { checkOpArgs, checkTensorData, checkTensorShape, InvalidArgumentError, ShapeError } from '../src/index.js';

/** The error `f` threw (undefined: none). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('checkTensorData (the contract of backend.tensor)', () => {
  it('takes arrays and numeric typed arrays of numbers, NaN and ±Infinity included', () => {
    for (const data of [
      [1, Number.NaN, Number.POSITIVE_INFINITY, -0],
      new Float64Array(4),
      new Float32Array(4),
      new Int32Array(4),
      new Uint8ClampedArray(4),
      { length: 4, 0: 1, 1: 2, 2: 3, 3: 4 },
    ]) {
      expect(thrown(() => checkTensorData(data, [2, 2]))).toBeUndefined();
    }
    expect(thrown(() => checkTensorData([], [0, 3]))).toBeUndefined();
    expect(thrown(() => checkTensorData([7], []))).toBeUndefined();
  });

  it('refuses what is not numbers with an InvalidArgumentError naming it', () => {
    const cases: [unknown, RegExp][] = [
      [new BigInt64Array(2), /tensor data: expected an array or typed array of numbers, got a BigInt64Array of 2 values/],
      [new BigUint64Array(2), /BigUint64Array/],
      [null, /got null/],
      [undefined, /got undefined/],
      ['ab', /got "ab"/],
      [2, /got 2/],
      [{ a: 1 }, /got \{"a":1\} \(not an array\)/],
      [new DataView(new ArrayBuffer(16)), /got a DataView/],
      [['a', 'b'], /tensor data\[0\]: expected a number.*got "a"/],
      [[1, 2n], /tensor data\[1\].*got 2/],
      [[1, null], /tensor data\[1\].*got null/],
      [new Array(2), /tensor data\[0\].*got undefined/],
    ];
    for (const [data, message] of cases) {
      const err = thrown(() => checkTensorData(data, [2]));
      expect(err, String(message)).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('refuses a wrong count or shape with a ShapeError', () => {
    for (const [data, shape, message] of [
      [[1, 2, 3], [2, 2], /tensor: expected 4 values for \[2, 2\], got 3 values$/],
      [[1], [2, 2], /tensor: expected 4 values for \[2, 2\], got 1 value$/],
      [[1, 2], [1], /tensor: expected 1 value for \[1\], got 2 values$/],
      // "shape" before a shape only, not before a count or a description of the dims.
      [[1, 2], [2, -1], /: expected non-negative integer dims, got \[2, -1\]/],
      [[1, 2], [2.5], /got \[2\.5\]/],
      [[1, 2], undefined, /got undefined/],
      [[1, 2], '2', /got "2"/],
      [[1, 2], [Number.NaN], /got \[NaN\]/],
    ] as const) {
      const err = thrown(() => checkTensorData(data, shape));
      expect(err).toBeInstanceOf(ShapeError);
      expect((err as Error).message).toMatch(message);
    }
    expect(checkTensorShape(Int32Array.from([2, 3]))).toEqual([2, 3]);
    expect(thrown(() => checkTensorShape([1, -1], 'zeros'))).toBeInstanceOf(ShapeError);
  });

  it('is the tensor and zeros contract of checkOpArgs', () => {
    expect(thrown(() => checkOpArgs('tensor', [new BigInt64Array(2), [2], 'float32']))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => checkOpArgs('tensor', [[1], [2], 'float32']))).toBeInstanceOf(ShapeError);
    expect(thrown(() => checkOpArgs('zeros', [[-1], 'float32']))).toBeInstanceOf(ShapeError);
    expect(thrown(() => checkOpArgs('tensor', [[1, 2], [2], 'float32']))).toBeUndefined();
  });
});
