import { type Backend, cells, DTypeError, deer, OutOfMemoryError, ShapeError, type Tensor, TensorStateError } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { ASYNC_TENSOR_METHODS, CpuBackend, TENSOR_METHODS } from '../src/backend.js';
import { FastCpuBackend } from '../src/index.js';

/**
 * Tensor lifecycles at the edges: a call given a disposed (or foreign) tensor makes nothing, a call
 * that throws after making its output leaves nothing behind, and an allocation the engine refuses
 * is an OutOfMemoryError.
 */

const B = 4;
const T = 6;
const m = 2;
const n = 3;
const s = 1;
const cell = cells.gru({ inputSize: m, hiddenSize: n });
const paramValues = cell.init({ seed: 1 });
const opts = { atol: 1e-6, rtol: 1e-6, clip: 1e6 };

/** Makes a tensor of `shape` (small smooth values) and records it. */
type Make = (shape: readonly number[]) => Tensor;
/** Makes a call's tensor arguments (each through `t`) and returns the call. */
type Case = (be: Backend, t: Make) => () => unknown;

const params = (t: Make): Record<string, Tensor> =>
  Object.fromEntries(Object.entries(paramValues).map(([k, v]) => [k, t([v.length])]));

/** Backend members that take no tensor. */
type NoTensors = 'name' | 'capabilities' | 'tensor' | 'zeros' | 'dispose' | 'liveTensors' | 'destroy' | 'counters';
/** Optional members the cpu backends do not have (a case is due when one of them gets them). */
const NOT_IMPLEMENTED = ['scanUpdate', 'scanUpdateUnread'] as const;

/** Every Backend method that takes tensors, with valid arguments (a new Backend method is a type error here). */
const cases: Record<Exclude<keyof Backend, NoTensors | (typeof NOT_IMPLEMENTED)[number]>, Case> = {
  read: (be, t) => {
    const x = t([B, T, n]);
    return () => be.read(x);
  },
  readSync: (be, t) => {
    const x = t([B, T, n]);
    return () => be.readSync!(x);
  },
  runStep: (be, t) => {
    // The residual program reads state, input and cotangent, and has a Jacobian.
    const inputs = { state: t([B, T, n]), input: t([B, T, m]), cotangent: t([B, T, n]), params: params(t) };
    return () => be.runStep(cell.residualProgram(s), inputs);
  },
  runSequential: (be, t) => {
    const inputs = { input: t([B, T, m]), y0: t([B, n]), params: params(t) };
    return () => be.runSequential(cell.stepProgram(), inputs);
  },
  scan: (be, t) => {
    const args = { A: t([B, T, n / s, s, s]), c: t([B, T, n]), y0: t([B, n]), blockSize: s, reverse: false };
    return () => be.scan(args);
  },
  dampedScan: (be, t) => {
    const args = { A: t([B, T, n / s, s, s]), c: t([B, T, n]), lambda: new Array(B).fill(0.5) };
    return () => be.dampedScan(args);
  },
  capTransitions: (be, t) => {
    const a = t([B, T, n / s, s, s]);
    return () => be.capTransitions(a, s, new Array(B).fill(0.5));
  },
  affineOffset: (be, t) => {
    const [F, A, y] = [t([B, T, n]), t([B, T, n / s, s, s]), t([B, T, n])];
    return () => be.affineOffset(F, A, y, s);
  },
  shiftTime: (be, t) => {
    const [x, fill] = [t([B, T, n]), t([B, n])];
    return () => be.shiftTime(x, fill, 1);
  },
  broadcastTime: (be, t) => {
    const x = t([B, n]);
    return () => be.broadcastTime(x, T);
  },
  sliceTime: (be, t) => {
    const x = t([B, T, n]);
    return () => be.sliceTime(x, 1, 2);
  },
  concatTime: (be, t) => {
    const parts = [t([B, T, n]), t([B, 2, n])];
    return () => be.concatTime(parts);
  },
  timeStep: (be, t) => {
    const x = t([B, T, n]);
    return () => be.timeStep(x, 2);
  },
  reshape: (be, t) => {
    const x = t([B, T, n]);
    return () => be.reshape(x, [B * T, 1, n]);
  },
  newtonUpdate: (be, t) => {
    const [raw, old] = [t([B, T, n]), t([B, T, n])];
    return () => be.newtonUpdate(raw, old, opts);
  },
  newtonUpdateSync: (be, t) => {
    const [raw, old] = [t([B, T, n]), t([B, T, n])];
    return () => be.newtonUpdateSync!(raw, old, opts);
  },
  deerStep: (be, t) => {
    const inputs = { input: t([B, T, m]), y0: t([B, n]), params: params(t) };
    const prev = t([B, T, n]);
    return () => be.deerStep!(cell.residualProgram(s), inputs, prev, opts);
  },
  findNonFinite: (be, t) => {
    const x = t([B, T, n]);
    return () => be.findNonFinite(x);
  },
  add: (be, t) => {
    const [a, b] = [t([B, T, n]), t([B, T, n])];
    return () => be.add(a, b);
  },
  sub: (be, t) => {
    const [a, b] = [t([B, T, n]), t([B, T, n])];
    return () => be.sub(a, b);
  },
  maskTime: (be, t) => {
    const x = t([B, T, n]);
    return () => be.maskTime(x, [1, 2, 3, T]);
  },
  gatherRows: (be, t) => {
    const x = t([B, T, n]);
    return () => be.gatherRows(x, [2, 0]);
  },
  scatterRows: (be, t) => {
    const [into, src] = [t([B, T, n]), t([1, T, n])];
    return () => be.scatterRows(into, [1], src);
  },
  sumBatchTime: (be, t) => {
    const x = t([B, T, n]);
    return () => be.sumBatchTime(x);
  },
  outerSum: (be, t) => {
    const [l, r] = [t([B, T, n]), t([B, T, n])];
    return () => be.outerSum(l, r, 1);
  },
  blockMatmul: (be, t) => {
    const [a, b] = [t([B, T, n / s, s, s]), t([B, T, n / s, s, s])];
    return () => be.blockMatmul(a, b, s);
  },
  blockMatvec: (be, t) => {
    const [a, v] = [t([B, T, n / s, s, s]), t([B, T, n])];
    return () => be.blockMatvec(a, v, s);
  },
  scaleTime: (be, t) => {
    const x = t([B, T, n]);
    return () => be.scaleTime(x, new Array(T).fill(0.5), 2);
  },
  addIdentity: (be, t) => {
    const a = t([B, T, n / s, s, s]);
    return () => be.addIdentity(a, s, 0.5);
  },
  maxAbs: (be, t) => {
    const x = t([B, T, n]);
    return () => be.maxAbs(x);
  },
};

const backends: [string, () => CpuBackend][] = [
  ['reference float64', () => new CpuBackend()],
  ['reference float32', () => new CpuBackend({ dtype: 'float32' })],
  ['fast float64, 1 thread', () => new FastCpuBackend({ threads: 1, compileMin: 0 })],
  ['fast float32, 1 thread', () => new FastCpuBackend({ threads: 1, dtype: 'float32', compileMin: 0 })],
  ['fast float32, 2 threads', () => new FastCpuBackend({ threads: 2, dtype: 'float32', compileMin: 0 })],
  ['fast float64, 2 threads', () => new FastCpuBackend({ threads: 2, compileMin: 0 })],
];

/** Makes the tensors of a case on `be`, recording them. */
function maker(be: Backend): { t: Make; made: Tensor[] } {
  const made: Tensor[] = [];
  const t: Make = (shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const x = be.tensor(
      Array.from({ length: size }, (_, i) => 0.5 * Math.sin(0.7 * i + made.length)),
      shape,
    );
    made.push(x);
    return x;
  };
  return { t, made };
}

/** Disposes every tensor in what a call returned (a tensor, step outputs, a Newton update). */
function disposeResult(be: Backend, r: unknown): void {
  if (!r || typeof r !== 'object') return;
  if ('backendName' in r) be.dispose(r as Tensor);
  else if (Array.isArray(r)) for (const x of r) disposeResult(be, x);
  else if (!ArrayBuffer.isView(r)) for (const x of Object.values(r)) disposeResult(be, x);
}

/** The error a call threw or its promise rejected with (undefined: none). */
async function errorOf(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('a call given a disposed tensor', () => {
  it('covers every tensor method the backends wrap', () => {
    expect(new Set(Object.keys(cases))).toEqual(new Set([...TENSOR_METHODS, ...ASYNC_TENSOR_METHODS]));
    for (const [, make] of backends) {
      const be = make();
      for (const name of NOT_IMPLEMENTED) expect(be[name as keyof CpuBackend], name).toBeUndefined();
      be.destroy();
    }
  });

  for (const [label, make] of backends) {
    it(`throws TensorStateError and makes no tensor, for every tensor argument of every method (${label})`, async () => {
      const be = make();
      for (const [name, build] of Object.entries(cases)) {
        if (typeof (be as unknown as Record<string, unknown>)[name] !== 'function') continue;
        // With every input live the call works (so its arguments are valid), and leaves only its result.
        const ok = maker(be);
        const call = build(be, ok.t);
        const base = be.liveTensors();
        disposeResult(be, await call());
        expect(be.liveTensors(), `${name} with live inputs`).toBe(base);
        for (const x of ok.made) be.dispose(x);
        // Then with each of its tensors disposed in turn.
        for (let k = 0; k < ok.made.length; k++) {
          const { t, made } = maker(be);
          const run = build(be, t);
          be.dispose(made[k]!);
          const before = be.liveTensors();
          const err = await errorOf(run);
          expect(err, `${name}, tensor ${k} disposed`).toBeInstanceOf(TensorStateError);
          expect(be.liveTensors(), `${name}, tensor ${k} disposed`).toBe(before);
          for (const x of made) be.dispose(x);
        }
      }
      expect(be.liveTensors()).toBe(0);
      be.destroy();
    });
  }

  it("refuses another backend's tensor the same way", async () => {
    const be = new FastCpuBackend({ threads: 1, compileMin: 0 });
    const other = new CpuBackend();
    const foreign = other.tensor(new Float64Array(B * n), [B, n]);
    const x = be.tensor(new Float64Array(B * T * n), [B, T, n]);
    expect(() => be.shiftTime(x, foreign, 1)).toThrow(TensorStateError);
    expect(() => be.concatTime([x, other.zeros([B, T, n])])).toThrow(TensorStateError);
    expect(be.liveTensors()).toBe(1);
    be.destroy();
    other.destroy();
  });
});

describe('a call that throws after making its output', () => {
  for (const [label, make] of backends) {
    it(`leaves no tensor behind (${label})`, () => {
      const be = make();
      const { t, made } = maker(be);
      const x = t([B, T, n]);
      const one = t([1, T, n]);
      const base = be.liveTensors();
      // Rows are checked while the output is written.
      expect(() => be.gatherRows(x, [0, B])).toThrow(ShapeError);
      expect(() => be.scatterRows(x, [-1], one)).toThrow(ShapeError);
      // The program reads an input that is not given: found after the outputs are made.
      expect(() => be.runStep(cell.linearizeProgram(s), { state: x, params: params(t) })).toThrow();
      expect(be.liveTensors()).toBe(base + Object.keys(paramValues).length);
      for (const y of made) be.dispose(y);
      expect(be.liveTensors()).toBe(0);
      be.destroy();
    });
  }
});

describe('an allocation the engine refuses', () => {
  for (const [label, make] of backends) {
    it(`is an OutOfMemoryError, and leaks nothing (${label})`, () => {
      const be = make();
      const x = be.tensor(new Float64Array(B * n), [B, n]);
      // 2^53 entries: more than any engine's typed arrays or array buffers take, so the engine
      // refuses at once (nothing is allocated).
      const huge = [2 ** 26, 2 ** 26, 2] as const;
      const err = (() => {
        try {
          be.zeros(huge);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(OutOfMemoryError);
      expect((err as OutOfMemoryError).backend).toBe('cpu');
      expect((err as OutOfMemoryError).bytes).toBe(2 ** 53 * (be.capabilities.defaultDType === 'float32' ? 4 : 8));
      // Inside an op, after its inputs are read: the op's output is the allocation.
      expect(() => be.broadcastTime(x, 2 ** 51)).toThrow(OutOfMemoryError);
      expect(be.liveTensors()).toBe(1);
      // A shape that is no size at all is a ShapeError, not an allocation failure.
      expect(() => be.zeros([2.5])).toThrow(ShapeError);
      expect(() => be.zeros([-1, 2])).toThrow(ShapeError);
      be.dispose(x);
      expect(be.liveTensors()).toBe(0);
      be.destroy();
    });
  }
});

describe('memory the engine refuses inside an op', () => {
  it('(a WebAssembly instance, a memory.grow) is an OutOfMemoryError too, not a RangeError', () => {
    // The refusal as V8 words it when a kernel's WebAssembly instance cannot get its memory.
    class Starved extends FastCpuBackend {
      override scaleTime(_x: Tensor, _h: ArrayLike<number>, _alpha: number): Tensor {
        throw new RangeError('WebAssembly.Instance(): Out of memory: Cannot allocate Wasm memory for new instance');
      }
    }
    const be = new Starved({ dtype: 'float32', threads: 1 });
    const x = be.tensor(new Float64Array(6), [1, 3, 2]);
    expect(() => be.scaleTime(x, [1, 1, 1], 1)).toThrow(/^cpu: out of memory \(WebAssembly.Instance\(\): Out of memory/);
    expect(() => be.scaleTime(x, [1, 1, 1], 1)).toThrow(OutOfMemoryError);
    // And as it words a memory.grow it refuses.
    class Stunted extends FastCpuBackend {
      override scaleTime(_x: Tensor, _h: ArrayLike<number>, _alpha: number): Tensor {
        throw new RangeError('WebAssembly.Memory.grow(): Unable to grow instance memory');
      }
    }
    const grown = new Stunted({ dtype: 'float32', threads: 1 });
    const gx = grown.tensor(new Float64Array(6), [1, 3, 2]);
    expect(() => grown.scaleTime(gx, [1, 1, 1], 1)).toThrow(OutOfMemoryError);
    grown.destroy();
    be.dispose(x);
    expect(be.liveTensors()).toBe(0);
    be.destroy();
  });
});

describe('a batch whose one time step does not fit', () => {
  it('is an OutOfMemoryError naming what to do (it was a ShapeError, as if the input were malformed)', async () => {
    const be = new FastCpuBackend({ dtype: 'float64', threads: 1, maxBufferBytes: 64 * 1024 });
    const cell = cells.gru({ inputSize: 2, hiddenSize: 32 });
    const x = be.tensor(new Float64Array(16 * 10 * 2), [16, 10, 2]);
    await expect(deer(be, cell, cell.init({ seed: 1 }), x)).rejects.toThrow(OutOfMemoryError);
    await expect(deer(be, cell, cell.init({ seed: 1 }), x)).rejects.toThrow(/split the batch/);
    be.dispose(x);
    expect(be.liveTensors()).toBe(0);
    be.destroy();
  });
});

describe('operands of two dtypes', () => {
  it('are a DTypeError (cpu had added a float32 tensor to a float64 one)', () => {
    const be = new FastCpuBackend({ dtype: 'float64', threads: 1 });
    const a = be.tensor([1, 2], [2], 'float64');
    const b = be.tensor([1, 2], [2], 'float32');
    expect(() => be.add(a, b)).toThrow(DTypeError);
    expect(() => be.sub(b, a)).toThrow(DTypeError);
    be.dispose(a);
    be.dispose(b);
    expect(be.liveTensors()).toBe(0);
    be.destroy();
  });
});
