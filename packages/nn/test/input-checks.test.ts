import { deerWithGrad, InvalidArgumentError, NonFiniteError, Rng, ShapeError, UnsupportedOptionError } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { describe, expect, it } from 'vitest';
import {
  AdamW,
  type ClassifierConfig,
  clipGradNorm,
  decodeCheckpoint,
  encodeCheckpoint,
  globalNorm,
  layerCell,
  layerNormCell,
  Linear,
  runLayer,
  runLayerNorm,
  SequenceClassifier,
  softmaxCrossEntropy,
  stateSize,
  trainStep,
  warmupCosine,
} from '../src/index.js';
import { randomBatch } from './helpers.js';

const base: ClassifierConfig = { inputSize: 2, classes: 3, cell: 'gru', hiddenSize: 3, layers: 1, residual: false, pooling: 'mean' };

describe('nn refuses what it would otherwise misread', () => {
  it('a configuration with an unknown cell, pooling or key (each fell through to another, or was ignored)', () => {
    for (const bad of [
      { cell: 'rnn' }, // built an LSTM
      { pooling: 'max' }, // mean forward, last-step backward: wrong gradients
      { heads: 2 }, // heads on a plain GRU
      { dropout: 0.5 },
      { layers: 0 },
      { classes: 1 },
      { hiddenSize: 2.5 },
      { layerNorm: 'yes' },
      { layerNorm: true, hiddenSize: 1 }, // a constant output: every recurrent gradient 0
    ]) {
      expect(() => new SequenceClassifier({ ...base, ...bad } as never), JSON.stringify(bad)).toThrow(UnsupportedOptionError);
    }
    expect(() => new SequenceClassifier({ ...base, cell: 'mhgru', heads: 3 })).not.toThrow();
  });

  it('run options: an unknown solver or key, and padded batches, which pooling and the sequential solver would not mask', async () => {
    const backend = createCpuBackend({ dtype: 'float64' });
    const model = new SequenceClassifier(base);
    const params = model.init(1);
    const { x: xs, labels } = randomBatch(3, 2, 4, 2, 3);
    const x = backend.tensor(xs, [2, 4, 2], 'float64');
    try {
      for (const opts of [{ solver: 'newton' }, { solver: 'deer', lr: 1 }, { solver: 'sequential', deer: { lengths: [4, 2] } }, { solver: 'deer', deer: { h0: [1, 2, 3] } }]) {
        await expect(model.lossAndGrad(backend, params, x, labels, opts as never), JSON.stringify(opts)).rejects.toThrow(UnsupportedOptionError);
      }
      // Head parameters of the wrong size (a checkpoint of another class count): too short gave NaN, too long used a prefix.
      for (const W of [new Float64Array(2), new Float64Array(20)]) {
        await expect(model.lossAndGrad(backend, { ...params, 'head.W': W }, x, labels, { solver: 'deer' })).rejects.toThrow(ShapeError);
      }
      await expect(model.lossAndGrad(backend, params, x, [0], { solver: 'deer' })).rejects.toThrow(ShapeError);
      // A parameter left undefined (a TypeError from the finite check), one of another kind, and a name the
      // model does not have (accepted here, refused by AdamW only after the step).
      await expect(model.lossAndGrad(backend, { ...params, 'head.W': undefined } as never, x, labels, { solver: 'deer' })).rejects.toThrow(/head\.W: expected 9 values, got nothing \(missing\)/);
      await expect(model.lossAndGrad(backend, { ...params, 'head.b': 'abc' } as never, x, labels, { solver: 'deer' })).rejects.toThrow(InvalidArgumentError);
      await expect(model.lossAndGrad(backend, { ...params, 'rnn.1.W': new Float64Array(3) }, x, labels, { solver: 'deer' })).rejects.toThrow(/rnn\.1\.W: .*an unknown name/);
      expect(backend.liveTensors()).toBe(1);
    } finally {
      backend.dispose(x);
    }
  });

  it('init refuses seeds outside [0, 2**32) and non-integers (they had all given seed 0)', () => {
    const model = new SequenceClassifier(base);
    for (const seed of [Number.NaN, Number.POSITIVE_INFINITY, 0.5, -1, 2 ** 32, '1']) {
      expect(() => model.init(seed as number), String(seed)).toThrow(InvalidArgumentError);
    }
    expect(model.init(2 ** 32 - 1)['head.W']).not.toEqual(model.init(0)['head.W']);
  });

  it('NaN or ±Inf in the data, the weights or the logits: a NonFiniteError naming it, not a NaN loss', async () => {
    const backend = createCpuBackend({ dtype: 'float64' });
    const model = new SequenceClassifier({ ...base, layers: 2 });
    const params = model.init(2);
    const { x: xs, labels } = randomBatch(4, 2, 4, 2, 3);
    for (const solver of ['deer', 'sequential'] as const) {
      const bad = Float64Array.from(xs);
      bad[5] = Number.NaN;
      const x = backend.tensor(bad, [2, 4, 2], 'float64');
      try {
        await expect(model.lossAndGrad(backend, params, x, labels, { solver }), solver).rejects.toThrow(/x: expected finite values, got NaN at flat index 5/);
        await expect(model.logits(backend, params, x, { solver })).rejects.toThrow(NonFiniteError);
      } finally {
        backend.dispose(x);
      }
      // A weight of the second layer, which deer's own checks (off inside the stack) would not see.
      const good = backend.tensor(xs, [2, 4, 2], 'float64');
      try {
        const name = Object.keys(params).find((k) => k.startsWith('rnn.1.'))!;
        const w = Float64Array.from(params[name]!);
        w[0] = Number.POSITIVE_INFINITY;
        await expect(model.lossAndGrad(backend, { ...params, [name]: w }, good, labels, { solver })).rejects.toThrow(new RegExp(`${name.replace('.', '\\.')}: expected finite`));
        // Asked not to check, the model does not read x for it (and the loss is what it is).
        const r = await model.lossAndGrad(backend, params, good, labels, { solver, deer: { checkFinite: false } });
        expect(Number.isFinite(r.loss)).toBe(true);
      } finally {
        backend.dispose(good);
      }
    }
    expect(backend.liveTensors()).toBe(0);
    expect(() => softmaxCrossEntropy([0, Number.POSITIVE_INFINITY, 1], [1], 3)).toThrow(NonFiniteError);
    expect(() => softmaxCrossEntropy([0, 1, Number.NaN, 2, 0, 0], [0, 1], 3)).toThrow(/logits: expected finite values, got NaN at flat index 2/);
    // Large equal logits: max + log z had rounded back to max (loss 0, softmax [0, 1]).
    for (const big of [1e16, 1e30, -1e30]) {
      const eq = softmaxCrossEntropy([big, big], [0], 2);
      expect(eq.loss, String(big)).toBeCloseTo(Math.LN2, 12);
      expect(Array.from(eq.dLogits)).toEqual([-0.5, 0.5]);
    }
    const ok = softmaxCrossEntropy([1e300, -1e300, 0], [0], 3);
    expect(ok.loss).toBe(0);
    expect(Number.isFinite(ok.dLogits[1]!)).toBe(true);
  });

  it('gradient clipping: large norms without overflow, NaN or ±Inf a NonFiniteError', () => {
    const big = { a: Float64Array.of(1e200, 1e200) };
    expect(globalNorm(big)).toBeCloseTo(Math.SQRT2 * 1e200, -190);
    expect(clipGradNorm(big, 1)).toBeCloseTo(Math.SQRT2 * 1e200, -190);
    expect(big.a[0]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(big.a[1]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(globalNorm({ a: Float64Array.of(3, 4), b: Float64Array.of(0) })).toBe(5);
    // A norm past the largest double, of finite entries: clipped, not zeroed by maxNorm / ∞.
    const huge = { a: Float64Array.of(1.5e308, 1.5e308) };
    expect(clipGradNorm(huge, 1)).toBe(Number.POSITIVE_INFINITY);
    expect(huge.a[0]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(huge.a[1]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(() => clipGradNorm({ a: Float64Array.of(Number.POSITIVE_INFINITY, 1) }, 1)).toThrow(NonFiniteError);
    expect(() => clipGradNorm({ a: Float64Array.of(1), b: Float64Array.of(Number.NaN, 1e9) }, 1)).toThrow(/gradient b/);
  });

  it('AdamW: options by name and range, lr, gradients of unknown parameters, NaN gradients before any update', () => {
    const params = { w: Float64Array.of(1, 2), b: Float64Array.of(0.5) };
    for (const bad of [{ weight_decay: 0 }, { beta1: 1.5 }, { beta2: 1 }, { eps: -1 }, { weightDecay: Number.NaN }, { decays: 'all' }]) {
      expect(() => new AdamW(params, bad as never), JSON.stringify(bad)).toThrow(UnsupportedOptionError);
    }
    const opt = new AdamW(params);
    const grads = { w: Float64Array.of(0.1, 0.2), b: Float64Array.of(0.3) };
    for (const lr of [Number.NaN, -1, Number.POSITIVE_INFINITY]) expect(() => opt.step(params, grads, lr)).toThrow(InvalidArgumentError);
    expect(() => opt.step(params, { ...grads, v: Float64Array.of(1) }, 0.1)).toThrow(ShapeError);
    expect(() => opt.step(params, { w: Float64Array.of(0.1, 0.2), b: Float64Array.of(0.3, 0.4) }, 0.1)).toThrow(ShapeError);
    expect(() => opt.step(params, { w: Float64Array.of(0.1, Number.NaN), b: Float64Array.of(0.3) }, 0.1)).toThrow(NonFiniteError);
    expect(Array.from(params.w)).toEqual([1, 2]);
    expect(opt.state.step).toBe(0);
  });
});

describe('nn refuses what it had gone on with in silence', () => {
  it('AdamW: an update that overflows (a 1e160 gradient squares to +Inf and froze the parameter) or lr × weightDecay > 1 (the decay flipped signs) changes nothing', () => {
    const params = { w: Float64Array.of(1, 2), b: Float64Array.of(0.5) };
    const opt = new AdamW(params, { weightDecay: 0.5 });
    const err = (() => {
      try {
        opt.step(params, { w: Float64Array.of(0.1, 1e160), b: Float64Array.of(0.3) }, 0.01);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as Error).message).toMatch(/AdamW step 1: the second moment of w overflows \(nothing was updated\)/);
    expect(() => opt.step(params, { w: Float64Array.of(0.1, 0.2), b: Float64Array.of(0.3) }, 3)).toThrow(/lr × weightDecay > 1/);
    expect(Array.from(params.w)).toEqual([1, 2]);
    expect(Array.from(opt.state.v.w!)).toEqual([0, 0]);
    expect(opt.state.step).toBe(0);
    opt.step(params, { w: Float64Array.of(0.1, 0.2), b: Float64Array.of(0.3) }, 2);
    expect(opt.state.step).toBe(1);
    // Missing state: the message names it (it had read "expected … 3 values, got 3 values").
    const short = new AdamW(params);
    short.state = { step: 0, m: short.state.m, v: { w: Float64Array.of(0) } };
    expect(() => short.step(params, { w: Float64Array.of(0.1, 0.2), b: Float64Array.of(0.3) }, 0.1)).toThrow(/AdamW state: second moment of w: expected 2 values, got 1 value/);
    expect(() => short.step(params, { w: Float64Array.of(0.1, 0.2), b: Float64Array.of(0.3) }, 0.1)).not.toThrow(/first moment/);
  });

  it('clipGradNorm: maxNorm must be > 0 (0, −1, NaN and strings had clipped nothing); Infinity clips nothing', () => {
    for (const bad of [0, -1, Number.NaN, '1', undefined]) {
      expect(() => clipGradNorm({ a: Float64Array.of(3, 4) }, bad as never), String(bad)).toThrow(InvalidArgumentError);
    }
    const g = { a: Float64Array.of(3, 4) };
    expect(clipGradNorm(g, Number.POSITIVE_INFINITY)).toBe(5);
    expect(Array.from(g.a)).toEqual([3, 4]);
  });

  it('typed errors where TypeErrors or NaN came out: no schedule options, no run options, an empty batch, a short Linear input', async () => {
    expect(() => warmupCosine(undefined as never)).toThrow(InvalidArgumentError);
    const model = new SequenceClassifier(base);
    const backend = createCpuBackend({ dtype: 'float64' });
    const x = backend.tensor(new Float64Array(2 * 4 * 2), [2, 4, 2], 'float64');
    try {
      await expect(model.lossAndGrad(backend, model.init(1), x, [0, 1], undefined as never)).rejects.toThrow(InvalidArgumentError);
    } finally {
      backend.dispose(x);
    }
    expect(() => softmaxCrossEntropy([], [], 3)).toThrow(ShapeError);
    const lin = new Linear(3, 2);
    expect(() => lin.forward(new Float64Array(6), new Float64Array(2), new Float64Array(5), 2)).toThrow(/Linear x: expected 6 values/);
  });

  it('a weight finite in float64 but past float32 (1e39) is a NonFiniteError on a float32 backend (it became ±Inf there)', async () => {
    const backend = createCpuBackend({ dtype: 'float32' });
    const model = new SequenceClassifier(base);
    const params = model.init(3);
    const { x: xs, labels } = randomBatch(4, 2, 4, 2, 3);
    const name = Object.keys(params).find((k) => k.startsWith('rnn.0.'))!;
    const w = Float64Array.from(params[name]!);
    w[1] = 1e39;
    const x = backend.tensor(xs, [2, 4, 2], 'float32');
    try {
      await expect(model.lossAndGrad(backend, { ...params, [name]: w }, x, labels, { solver: 'deer' })).rejects.toThrow(NonFiniteError);
    } finally {
      backend.dispose(x);
    }
  });
});

describe('checkpoints', () => {
  it('encoding refuses what decoding would refuse (a file that could never be read back), decoding refuses duplicate and reserved names', () => {
    const good = { step: 3, params: { w: Float64Array.of(1) }, optimizer: { step: 3, m: { w: Float64Array.of(0) }, v: { w: Float64Array.of(0) } }, rng: [1, 2, 3, 4] as [number, number, number, number], config: {} };
    expect(decodeCheckpoint(encodeCheckpoint(good), 'mem').params.w![0]).toBe(1);
    for (const bad of [{ step: Number.NaN }, { step: -1 }, { rng: [1, 2, 3] }, { optimizer: { ...good.optimizer, step: 1.5 } }, { optimizer: undefined }, { params: null }]) {
      expect(() => encodeCheckpoint({ ...good, ...bad } as never), JSON.stringify(bad)).toThrow(InvalidArgumentError);
    }
    // A param named __proto__ (an own property): refused at encode, and in a crafted file at decode.
    const params = Object.defineProperty({}, '__proto__', { value: Float64Array.of(2), enumerable: true });
    expect(() => encodeCheckpoint({ ...good, params })).toThrow(InvalidArgumentError);
    const proto = encodeCheckpoint({ ...good, params: { aaaaaaaaa: Float64Array.of(2) } });
    const at = Buffer.from(proto).indexOf('param/aaaaaaaaa') + 'param/'.length;
    proto.set(new TextEncoder().encode('__proto__'), at);
    let h = 0x811c9dc5; // FNV-1a 32 over everything before the 4-byte trailer
    for (let i = 0; i < proto.length - 4; i++) h = Math.imul(h ^ proto[i]!, 0x01000193) >>> 0;
    new DataView(proto.buffer, proto.byteOffset).setUint32(proto.length - 4, h, true);
    expect(() => decodeCheckpoint(proto, 'mem')).toThrow(/reserved/);
  });
});

describe('nn review: typed errors and checks that had been missing', () => {
  it("layerCell refuses a kind it does not know (it had built an LSTM for 'GRU', 'rnn', …) and options it would not honour", () => {
    for (const kind of ['GRU', 'rnn', 'LSTM', '', undefined, 3]) {
      let err: unknown;
      try {
        layerCell({ kind: kind as never, inputSize: 2, inputUsed: 2, hiddenSize: 3 });
      } catch (e) {
        err = e;
      }
      expect(err, String(kind)).toBeInstanceOf(UnsupportedOptionError);
      expect((err as Error).message).toMatch(/option kind: expected one of 'gru', 'mhgru', 'lstm'/);
      expect(() => stateSize(kind as never, 3), String(kind)).toThrow(UnsupportedOptionError);
    }
    for (const bad of [
      { kind: 'gru', heads: 2 }, // heads are the multi-head GRU's
      { kind: 'lstm', heads: 3 },
      { kind: 'gru', inputUsed: 1 }, // a GRU reads its whole input
      { kind: 'lstm', inputUsed: 3 }, // more than there is
      { kind: 'lstm', inputUsed: 0 },
      { kind: 'gru', hidden: 3 }, // a misspelt name
    ]) {
      expect(() => layerCell({ inputSize: 2, inputUsed: 2, hiddenSize: 3, ...bad } as never), JSON.stringify(bad)).toThrow(UnsupportedOptionError);
    }
    expect(() => layerCell(null as never)).toThrow(InvalidArgumentError);
    // The kinds it knows build what they say.
    expect(layerCell({ kind: 'gru', inputSize: 2, inputUsed: 2, hiddenSize: 3 }).stateSize).toBe(3);
    expect(layerCell({ kind: 'mhgru', inputSize: 4, inputUsed: 4, hiddenSize: 4, heads: 2 }).stateSize).toBe(4);
    const lstm = layerCell({ kind: 'lstm', inputSize: 6, inputUsed: 3, hiddenSize: 3 });
    expect([lstm.stateSize, lstm.inputSize, stateSize('lstm', 3)]).toEqual([6, 6, 6]);
  });

  it("lossAndGrad checks the deer options whatever the solver (the sequential solver had taken { atol: 'abc' })", async () => {
    const backend = createCpuBackend({ dtype: 'float64' });
    const model = new SequenceClassifier({ ...base, layers: 2 });
    const params = model.init(5);
    const { x: xs, labels } = randomBatch(6, 2, 4, 2, 3);
    const x = backend.tensor(xs, [2, 4, 2], 'float64');
    try {
      for (const deer of [
        { atol: 'abc' },
        { rtol: -1 },
        { atol: 0, rtol: 0 },
        { maxIter: 0.5 },
        { clip: 0 },
        { window: 0 },
        { jacobian: 'sparse' },
        { jacobian: { block: 2 } }, // does not divide the state size 3
        { fallback: 'retry' },
        { method: 'newton' },
        { method: 'shoot', maxIter: 1 },
        { checkFinite: 'no' },
        { onIteration: 'log' },
        { atol: null },
        { tolerance: 1e-6 },
      ]) {
        for (const solver of ['sequential', 'deer'] as const) {
          await expect(model.lossAndGrad(backend, params, x, labels, { solver, deer } as never), `${solver} ${JSON.stringify(deer)}`).rejects.toThrow(UnsupportedOptionError);
        }
      }
      await expect(model.lossAndGrad(backend, params, x, labels, { solver: 'sequential', deer: { atol: 'abc' } } as never)).rejects.toThrow(/option atol: expected a finite number ≥ 0, got "abc"/);
      // The same error as core's own check under DEER.
      const core = await deerWithGrad(backend, model.cells[0]!, { W: new Float64Array(0) }, x, { atol: 'abc' } as never).catch((e: Error) => e.message);
      expect(core).toMatch(/^option atol: /);
      await expect(model.lossAndGrad(backend, params, x, labels, { solver: 'sequential', deer: { atol: 'abc' } } as never)).rejects.toThrow(core as string);
      // Good options are taken by both solvers.
      for (const solver of ['sequential', 'deer'] as const) {
        const r = await model.lossAndGrad(backend, params, x, labels, { solver, deer: { atol: 1e-9, rtol: 0, maxIter: 50, jacobian: 'diagonal', method: 'elk', window: 2, onIteration: () => {} } });
        expect(Number.isFinite(r.loss)).toBe(true);
      }
      // runLayer, exported, checks them too, and refuses what its sequential solver would ignore.
      const cell = model.cells[0]!;
      const lp = Object.fromEntries(cell.params.map((p) => [p.name, params[`rnn.0.${p.name}`]!]));
      await expect(runLayer(backend, cell, lp, x, { solver: 'sequential', residual: false, deer: { atol: 'abc' } as never })).rejects.toThrow(UnsupportedOptionError);
      await expect(runLayer(backend, cell, lp, x, { solver: 'sequential', residual: false, deer: { lengths: [4, 2] } })).rejects.toThrow(/deer\.lengths/);
      await expect(runLayer(backend, cell, lp, x, { solver: 'newton' as never, residual: false })).rejects.toThrow(UnsupportedOptionError);
      // An aborted signal stops either solver with its reason.
      const reason = new Error('stopped');
      const controller = new AbortController();
      controller.abort(reason);
      for (const solver of ['sequential', 'deer'] as const) {
        await expect(runLayer(backend, cell, lp, x, { solver, residual: false, deer: { signal: controller.signal } }), solver).rejects.toBe(reason);
        await expect(model.lossAndGrad(backend, params, x, labels, { solver, deer: { signal: controller.signal } }), solver).rejects.toBe(reason);
      }
      // The backward pass takes the layer's signal, or its own.
      for (const solver of ['sequential', 'deer'] as const) {
        const late = new AbortController();
        const run = await runLayer(backend, cell, lp, x, { solver, residual: false, deer: { signal: late.signal } });
        const dy = backend.zeros(run.out.shape, 'float64');
        try {
          late.abort(reason);
          await expect(run.vjp(dy), solver).rejects.toBe(reason);
          await expect(run.vjp(dy, { signal: 1 } as never), solver).rejects.toThrow(UnsupportedOptionError);
          const g = await run.vjp(dy, { signal: new AbortController().signal });
          for (const t of [...Object.values(g.params), g.x, g.h0]) backend.dispose(t);
        } finally {
          backend.dispose(dy);
          run.dispose();
        }
      }
      expect(backend.liveTensors()).toBe(1);
    } finally {
      backend.dispose(x);
    }
  });

  it('an x that is not a backend tensor (a Float64Array had been a raw TypeError), or labels that are not an array, is an InvalidArgumentError', async () => {
    const backend = createCpuBackend({ dtype: 'float64' });
    const model = new SequenceClassifier(base);
    const params = model.init(1);
    const { x: xs, labels } = randomBatch(3, 2, 4, 2, 3);
    for (const x of [xs, null, undefined, { shape: [2, 4, 2] }, [[1, 2]]]) {
      await expect(model.lossAndGrad(backend, params, x as never, labels, { solver: 'deer' }), String(x)).rejects.toThrow(InvalidArgumentError);
      await expect(model.logits(backend, params, x as never, { solver: 'sequential' })).rejects.toThrow(InvalidArgumentError);
    }
    await expect(model.lossAndGrad(backend, params, xs as never, labels, { solver: 'deer' })).rejects.toThrow(/^x: expected a backend tensor \[B, T, 2\]/);
    const wrong = backend.tensor(xs, [2, 8], 'float64');
    const x = backend.tensor(xs, [2, 4, 2], 'float64');
    try {
      await expect(model.lossAndGrad(backend, params, wrong, labels, { solver: 'deer' })).rejects.toThrow(ShapeError);
      await expect(model.lossAndGrad(backend, params, x, undefined as never, { solver: 'deer' })).rejects.toThrow(InvalidArgumentError);
      await expect(model.lossAndGrad(backend, params, x, 5 as never, { solver: 'deer' })).rejects.toThrow(InvalidArgumentError);
    } finally {
      backend.dispose(wrong);
      backend.dispose(x);
    }
    expect(backend.liveTensors()).toBe(0);
  });

  it('new SequenceClassifier(), new AdamW(null) and runLayerNorm without gamma are InvalidArgumentErrors, not TypeErrors', () => {
    for (const config of [undefined, null, 3, 'gru', [base]]) {
      expect(() => new SequenceClassifier(config as never), String(config)).toThrow(InvalidArgumentError);
    }
    for (const params of [null, undefined, 3, [Float64Array.of(1)], { w: [1, 2] }, { w: null }, { w: Float32Array.of(1) }]) {
      expect(() => new AdamW(params as never), JSON.stringify(params)).toThrow(InvalidArgumentError);
    }
    const params = { w: Float64Array.of(1, 2) };
    const opt = new AdamW(params);
    expect(() => opt.step(null as never, { w: Float64Array.of(0, 0) }, 0.1)).toThrow(InvalidArgumentError);
    expect(() => opt.step(params, null as never, 0.1)).toThrow(InvalidArgumentError);
    expect(() => opt.step(params, { w: 5 } as never, 0.1)).toThrow(InvalidArgumentError);
    // A string or BigInt entry is not a number, rather than a "non-finite" one.
    expect(() => opt.step(params, { w: [0.1, '0.2'] } as never, 0.1)).toThrow(/gradient w at index 1: expected a number, got "0\.2" \(a string\)/);
    expect(() => opt.step(params, { w: [0.1, 2n] } as never, 0.1)).toThrow(InvalidArgumentError);
    expect(() => clipGradNorm({ w: ['x', 1] } as never, 1)).toThrow(InvalidArgumentError);
    for (const grads of [null, undefined, 5, [Float64Array.of(1)]]) expect(() => clipGradNorm(grads as never, 1), String(grads)).toThrow(InvalidArgumentError);
    expect(Array.from(params.w)).toEqual([1, 2]);

    const backend = createCpuBackend({ dtype: 'float64' });
    const norm = layerNormCell(3);
    const y = backend.tensor(Float64Array.of(1, 2, 4, 0, 1, 0), [1, 2, 3], 'float64');
    try {
      for (const p of [{ beta: new Float64Array(3) }, { gamma: null, beta: new Float64Array(3) }, { gamma: 'abc', beta: new Float64Array(3) }, null]) {
        expect(() => runLayerNorm(backend, norm, p as never, y), JSON.stringify(p)).toThrow(InvalidArgumentError);
      }
      expect(() => runLayerNorm(backend, norm, { beta: new Float64Array(3) } as never, y)).toThrow(/layernorm\(n=3\) gamma: expected an array of 3 numbers, got nothing \(missing\)/);
      expect(() => runLayerNorm(backend, norm, { gamma: new Float64Array(2), beta: new Float64Array(3) }, y)).toThrow(ShapeError);
      // Nothing is left behind, and good parameters still run.
      expect(backend.liveTensors()).toBe(1);
      const run = runLayerNorm(backend, norm, { gamma: Float64Array.of(1, 1, 1), beta: new Float64Array(3) }, y);
      run.dispose();
      expect(backend.liveTensors()).toBe(1);
    } finally {
      backend.dispose(y);
    }
  });

  it('Linear.backward checks dy (and W, x) as forward checks its arguments: a short dy had read NaN, a long one a prefix', () => {
    const lin = new Linear(3, 2);
    const W = Float64Array.of(1, 2, 3, 4, 5, 6);
    const x = Float64Array.of(1, 0, -1, 2, 1, 0);
    const good = lin.backward(W, x, Float64Array.of(1, 0, 0, 1), 2);
    expect(Array.from(good.b)).toEqual([1, 1]);
    expect(Array.from(good.W)).toEqual([1, 0, -1, 2, 1, 0]);
    for (const dy of [new Float64Array(3), new Float64Array(5), new Float64Array(0)]) {
      expect(() => lin.backward(W, x, dy, 2), `dy of ${dy.length}`).toThrow(/Linear dy: expected 4 values \(\[2, 2\]\)/);
    }
    expect(() => lin.backward(W, x, null as never, 2)).toThrow(InvalidArgumentError);
    expect(() => lin.backward(new Float64Array(5), x, new Float64Array(4), 2)).toThrow(/Linear W/);
    expect(() => lin.backward(W, new Float64Array(5), new Float64Array(4), 2)).toThrow(/Linear x/);
    expect(() => lin.backward(W, x, new Float64Array(4), -1)).toThrow(InvalidArgumentError);
    expect(() => lin.forward(W, undefined as never, x, 2)).toThrow(InvalidArgumentError);
  });

  it('layerNormCell refuses eps ≤ 0 or not finite (a constant input divided by √0) and n that is not a size', async () => {
    for (const eps of [0, -1e-5, Number.NaN, Number.POSITIVE_INFINITY, '1e-5']) {
      expect(() => layerNormCell(4, eps as never), String(eps)).toThrow(InvalidArgumentError);
    }
    for (const n of [0, 2.5, Number.NaN]) expect(() => layerNormCell(n), String(n)).toThrow(InvalidArgumentError);
    // A constant row normalises to β with a positive ε, not to NaN.
    const backend = createCpuBackend({ dtype: 'float64' });
    const norm = layerNormCell(3, 1e-3);
    const y = backend.tensor(Float64Array.of(2, 2, 2), [1, 1, 3], 'float64');
    const run = runLayerNorm(backend, norm, { gamma: Float64Array.of(1, 1, 1), beta: Float64Array.of(0.5, -1, 0) }, y);
    try {
      expect(Array.from(await backend.read(run.out))).toEqual([0.5, -1, 0]);
    } finally {
      run.dispose();
      backend.dispose(y);
    }
  });

  it("converged is false when core stops with stopReason 'rounding' (a tolerance finer than float32 resolves), the answer kept and no fallback", async () => {
    const backend = createCpuBackend({ dtype: 'float32' });
    const model = new SequenceClassifier({ ...base, hiddenSize: 4 });
    const params = model.init(7);
    const { x: xs, labels } = randomBatch(8, 2, 6, 2, 3);
    const x = backend.tensor(xs, [2, 6, 2], 'float32');
    try {
      const fine = await model.lossAndGrad(backend, params, x, labels, { solver: 'deer', deer: { atol: 0, rtol: 1e-12 } });
      const loose = await model.lossAndGrad(backend, params, x, labels, { solver: 'deer' });
      expect([fine.converged, fine.fellBack, loose.converged, loose.fellBack]).toEqual([false, false, true, false]);
      // The answer kept is as good as float32 allows: the loss is the converged one's.
      expect(fine.loss).toBeCloseTo(loose.loss, 5);
      // The layer's own solve says why.
      const cell = model.cells[0]!;
      const lp = Object.fromEntries(cell.params.map((p) => [p.name, params[`rnn.0.${p.name}`]!]));
      const r = await deerWithGrad(backend, cell, lp, x, { atol: 0, rtol: 1e-12 });
      try {
        expect([r.stats.converged, r.stats.fellBack, r.stats.stopReason, r.stats.roundingRows]).toEqual([false, false, 'rounding', 2]);
      } finally {
        r.dispose();
      }
    } finally {
      backend.dispose(x);
    }
  });

  it('trainStep refuses a bad lr before the forward and backward passes', async () => {
    const backend = createCpuBackend({ dtype: 'float64' });
    const model = new SequenceClassifier(base);
    const params = model.init(3);
    const { x: xs, labels } = randomBatch(4, 2, 5, 2, 3);
    const x = backend.tensor(xs, [2, 5, 2], 'float64');
    let passes = 0;
    const own = model.lossAndGrad.bind(model);
    model.lossAndGrad = (...args: Parameters<typeof own>) => {
      passes++;
      return own(...args);
    };
    try {
      for (const lr of [Number.NaN, -1, Number.POSITIVE_INFINITY, '0.1']) {
        await expect(trainStep(backend, model, params, new AdamW(params), x, labels, { solver: 'deer', lr: lr as number }), String(lr)).rejects.toThrow(InvalidArgumentError);
      }
      // Nor a thing that is not an optimizer, or no options at all (TypeErrors, the first after both passes).
      for (const opt of [{}, null, { step: 1 }]) {
        await expect(trainStep(backend, model, params, opt as never, x, labels, { solver: 'deer', lr: 0.01 }), JSON.stringify(opt)).rejects.toThrow(InvalidArgumentError);
      }
      await expect(trainStep(backend, model, params, new AdamW(params), x, labels, undefined as never)).rejects.toThrow(InvalidArgumentError);
      expect(passes, 'no forward pass was run').toBe(0);
      await trainStep(backend, model, params, new AdamW(params), x, labels, { solver: 'deer', lr: 0.01 });
      expect(passes).toBe(1);
    } finally {
      backend.dispose(x);
    }
  });

  it("converged stays false where some rows fell back and others were kept under 'rounding'", async () => {
    // Rows of very different input scales: with few iterations the slow ones fall back (exact) and
    // the rest are kept as rounded. It had said true whenever any row fell back.
    const backend = createCpuBackend({ dtype: 'float32' });
    const model = new SequenceClassifier({ ...base, hiddenSize: 4 });
    const params = model.init(7);
    const [B, T] = [6, 40];
    const rng = new Rng(8);
    const amp = [0.001, 0.3, 1, 3, 10, 30];
    const xs = Float64Array.from({ length: B * T * 2 }, (_, i) => amp[Math.floor(i / (T * 2))]! * (rng.uniform() - 0.5));
    const x = backend.tensor(xs, [B, T, 2], 'float32');
    try {
      const deer = { atol: 0, rtol: 1e-12, maxIter: 13 };
      const cell = model.cells[0]!;
      const lp = Object.fromEntries(cell.params.map((p) => [p.name, params[`rnn.0.${p.name}`]!]));
      const r = await deerWithGrad(backend, cell, lp, x, deer);
      const s = r.stats;
      r.dispose();
      expect(s.fellBack, 'some rows fell back').toBe(true);
      expect(s.roundingRows, 'others were kept as rounded').toBeGreaterThan(0);
      expect(s.fallbackRows + s.roundingRows).toBeLessThanOrEqual(B);
      const m = await model.lossAndGrad(backend, params, x, [0, 1, 2, 0, 1, 2], { solver: 'deer', deer });
      expect([m.converged, m.fellBack]).toEqual([false, true]);
    } finally {
      backend.dispose(x);
    }
  });
});
