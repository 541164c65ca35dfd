import { describe, expect, it } from 'vitest';
import { CellDefinitionError, cells, DeerError, defineCell, lang, type Vec } from '../src/index.js';

const { add, clip, concat, grad, matvec, matvecT, slice, sum, tanh } = lang;

/** The thrown error, checked to be a CellDefinitionError whose message matches. */
function definitionError(f: () => unknown, message: RegExp): CellDefinitionError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(CellDefinitionError);
  expect(caught).toBeInstanceOf(DeerError);
  const err = caught as CellDefinitionError;
  expect(err.name).toBe('CellDefinitionError');
  expect(err.message).toMatch(message);
  return err;
}

describe('CellDefinitionError', () => {
  it('names the argument, what was expected and what came', () => {
    const err = definitionError(
      () => defineCell({ state: 2.5, input: 1, params: {} }, (h) => h),
      /state: expected a positive integer/,
    );
    expect(err.argument).toMatch(/state/);
    expect(err.expected).toMatch(/positive integer/);
    expect(err.got).toBe('2.5');
  });

  it('rejects bad state and input sizes', () => {
    definitionError(
      () => defineCell({ state: 0, input: 1, params: {} }, (h) => h),
      /state: expected a positive integer.*got 0/,
    );
    definitionError(() => defineCell({ state: 2.5, input: 1, params: {} }, (h) => h), /got 2\.5/);
    definitionError(
      () => defineCell({ state: 2, input: -1, params: {} }, (h) => h),
      /input: expected an integer ≥ 0.*got -1/,
    );
  });

  it('rejects a body that returns the wrong size or no vector', () => {
    definitionError(
      () => defineCell({ state: 3, input: 1, params: { W: [2, 3] } }, (h, _x, p) => matvec(p.W!, h)),
      /return value: expected a vector of the state size 3, got a vector of size 2/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (() => 1) as unknown as (h: Vec) => Vec),
      /return value: expected a vector \(Vec\) of the state size, got 1/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (() => [1, 2, 3]) as unknown as (h: Vec) => Vec),
      /got an array of length 3/,
    );
  });

  it('rejects bad parameter shapes', () => {
    definitionError(
      () => defineCell({ state: 2, input: 1, params: { W: [2, 0] } }, (h) => h),
      /params\.W: expected a shape of 1–3 positive integer dims.*got \[2, 0\]/,
    );
    definitionError(
      () => defineCell({ state: 2, input: 1, params: { W: [] } }, (h) => h),
      /params\.W.*got \[\]/,
    );
    definitionError(
      () => defineCell({ state: 2, input: 1, params: { W: [1, 2, 2, 2] } }, (h) => h),
      /params\.W.*got \[1, 2, 2, 2\]/,
    );
    definitionError(
      () => defineCell({ state: 2, input: 1, params: { W: [2.5] } }, (h) => h),
      /params\.W.*got \[2\.5\]/,
    );
    // Names that plain records inherit: gradients of such a param were summed onto the inherited member.
    for (const name of ['toString', 'constructor', 'valueOf', 'hasOwnProperty']) {
      definitionError(() => defineCell({ state: 2, input: 1, params: { [name]: [2] } }, (h) => h), new RegExp(`params\\.${name}: expected a name that is not a member of Object\\.prototype`));
    }
    const proto = Object.defineProperty({}, '__proto__', { value: [2], enumerable: true });
    definitionError(() => defineCell({ state: 2, input: 1, params: proto }, (h) => h), /params\.__proto__/);
    // An array had been read as a parameter named '0'.
    definitionError(
      () => defineCell({ state: 2, input: 0, params: [[2]] as never }, (h) => h),
      /params: expected an object of parameter shapes.*got an array of length 1/,
    );
  });

  it('checks init when the cell is defined', () => {
    const define = (init: unknown) =>
      defineCell({ name: 'scaled', state: 2, input: 0, params: { w: [2], b: [2] }, init: init as never }, (h, _x, p) =>
        lang.add(lang.mul(h, p.w!), p.b!),
      );
    // Each of these had made NaN parameters in silence, or (an unknown name) been ignored.
    definitionError(() => define({ w: { foo: 1 } }), /cell scaled: init\.w: expected \{ uniform: bound \}.*got \{"foo":1\}/);
    definitionError(() => define({ w: { constant: 'x' } }), /init\.w\.constant: expected a finite number, got "x"/);
    definitionError(() => define({ w: { normal: Number.NaN } }), /init\.w\.normal: expected a finite number ≥ 0.*got NaN/);
    definitionError(() => define({ w: { uniform: -1 } }), /init\.w\.uniform: expected a finite number ≥ 0.*got -1/);
    definitionError(() => define({ w: { constant: Number.POSITIVE_INFINITY } }), /init\.w\.constant.*got Infinity/);
    definitionError(() => define({ w: { constant: 1, uniform: 1 } }), /init\.w: expected/);
    definitionError(() => define({ w: null }), /init\.w: expected.*got null/);
    definitionError(() => define({ w: 0.5 }), /init\.w: expected.*got 0\.5/);
    definitionError(() => define({ v: { constant: 1 } }), /init\.v: expected the name of a parameter of the cell \('w', 'b'\), got a parameter the cell does not have/);
    definitionError(() => define([{ constant: 1 }]), /cell scaled: init: expected an object of per-parameter inits/);
    definitionError(() => define('uniform'), /init: expected.*got "uniform"/);
    // An init function's values are checked when init() calls it.
    const bad = define({ w: () => new Float64Array([1, Number.NaN]) });
    definitionError(() => bad.init(), /init\.w\[1\]: expected a function returning 2 finite numbers.*got NaN/);
    definitionError(() => define({ w: () => undefined }).init(), /init\.w: expected a function returning 2 finite numbers.*got undefined/);
    // Valid specs are taken as before (and a plain array from a function becomes a Float64Array).
    const ok = define({ w: { constant: 0.5 }, b: { normal: 0 } }).init({ seed: 3 });
    expect(Array.from(ok.w!)).toEqual([0.5, 0.5]);
    expect(Array.from(ok.b!, Math.abs)).toEqual([0, 0]);
    const fromArray = define({ w: () => [1, 2] as unknown as Float64Array }).init();
    expect(fromArray.w).toBeInstanceOf(Float64Array);
    expect(Array.from(fromArray.w!)).toEqual([1, 2]);
    expect(define({ w: { uniform: 0 } }).init().w).toEqual(new Float64Array(2));
  });

  it('rejects misuse of matvec, slice, concat and grad', () => {
    definitionError(
      () => defineCell({ state: 3, input: 1, params: { W: [3, 2] } }, (h, _x, p) => matvec(p.W!, h)),
      /matvec\(W, v\): v: expected a vector of size 2 \(W has shape \[3, 2\]\), got size 3/,
    );
    definitionError(
      () =>
        defineCell({ state: 3, input: 1, params: { W: [3, 2] } }, (h, _x, p) =>
          matvecT(p.W!, slice(h, 0, 2)),
        ),
      /matvecT\(W, v\): v: expected a vector of size 3/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: { b: [3] } }, (h, _x, p) => matvec(p.b!, h)),
      /matvec\(b, v\): b: expected a matrix param.*got shape \[3\]/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (h) => matvec(h as never, h)),
      /matvec\(W, v\): W: expected a matrix parameter of the cell, got an object \(Vec\)/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (h) => slice(h, 2, 2)),
      /slice\(v, 2, 2\): expected .* ≤ 3.*got start 2, size 2/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (h) => slice(h, -1, 1)),
      /slice\(v, -1, 1\)/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, () => concat()),
      /concat: expected at least one vector, got none/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (h) => grad(h, h)),
      /grad\(s, v\): s: expected a scalar \(a vector of size 1\), got a vector of size 3/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (h) => add(grad(sum(h), 2 as never), h)),
      /grad\(s, v\): v: expected a Vec of the cell being defined, got number/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 2, params: {} }, (h, x) => add(h, x)),
      /add: expected operands of equal size.*got sizes 3 and 2/,
    );
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (h) => add(h, Number.NaN)),
      /add\(a, b\): b: expected a Vec or a finite number, got NaN/,
    );
    let other: Vec | undefined;
    defineCell({ state: 3, input: 1, params: {} }, (h) => {
      other = h;
      return h;
    });
    definitionError(
      () => defineCell({ state: 3, input: 1, params: {} }, (h) => add(h, other!)),
      /a vector from another cell/,
    );
    definitionError(() => tanh(1), /cell-language function: expected a call inside a defineCell body/);
  });

  it('rejects bad clip constants', () => {
    definitionError(
      () => defineCell({ state: 2, input: 1, params: {} }, (h) => clip(h, -1)),
      /clip\(v, c\): c: expected a finite number > 0, got -1/,
    );
    definitionError(
      () => defineCell({ state: 2, input: 1, params: {} }, (h) => clip(h, Number.POSITIVE_INFINITY)),
      /got Infinity/,
    );
  });

  it('rejects bad options of the built-in cells', () => {
    definitionError(
      () => cells.gru({ inputSize: 2, hiddenSize: 0 }),
      /cells\.gru: hiddenSize: expected a positive integer, got 0/,
    );
    definitionError(
      () => cells.gru({ inputSize: 0, hiddenSize: 2 }),
      /cells\.gru: inputSize: expected a positive integer, got 0/,
    );
    definitionError(
      () => cells.gru({ inputSize: 2, hiddenSize: 6, heads: 4 }),
      /heads: expected a positive integer that divides hiddenSize 6, got 4/,
    );
    definitionError(() => cells.multiHeadGru({ inputSize: 2, hiddenSize: 6, heads: 0 }), /heads.*got 0/);
    definitionError(
      () => cells.gru({ inputSize: 2, hiddenSize: 4, clip: -1 }),
      /cells\.gru: clip: expected a finite number > 0.*got -1/,
    );
    definitionError(() => cells.lstm({ inputSize: 2, hiddenSize: 4, clip: 0 }), /cells\.lstm: clip.*got 0/);
    definitionError(
      () => cells.elman({ inputSize: 2, hiddenSize: 4, clip: Number.NaN }),
      /cells\.elman: clip.*got NaN/,
    );
    definitionError(() => cells.lstm({ inputSize: 2, hiddenSize: 2.5 }), /cells\.lstm: hiddenSize.*got 2\.5/);
    definitionError(() => cells.elman({ inputSize: 2, hiddenSize: -3 }), /cells\.elman: hiddenSize.*got -3/);
    definitionError(
      () => cells.gru({ inputSize: 2, hiddenSize: 4, linearBeforeReset: 2 as 0 }),
      /linearBeforeReset: expected 0 or 1, got 2/,
    );
    definitionError(
      () => cells.gru({ inputSize: 2, hiddenSize: 4, activations: ['Tanh'] }),
      /cells\.gru: activations: expected 2 activations/,
    );
    definitionError(
      () => cells.lstm({ inputSize: 2, hiddenSize: 4, activations: ['Sigmoid', 'Tanh', 'Gelu' as 'Tanh'] }),
      /activations\[2\]: expected one of Sigmoid/,
    );
    definitionError(
      () =>
        cells.elman({ inputSize: 2, hiddenSize: 4, activations: [{ name: 'LeakyRelu', alpha: Number.NaN }] }),
      /activations\[0\]\.alpha: expected a finite number/,
    );
    definitionError(() => cells.mlp({ stateSize: 0 }), /cells\.mlp: stateSize.*got 0/);
    definitionError(() => cells.hamiltonian({ dof: 0 }), /cells\.hamiltonian: dof.*got 0/);
  });
});
