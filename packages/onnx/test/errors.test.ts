import { readdirSync, readFileSync } from 'node:fs';
import { DeerError, InvalidArgumentError, Rng, ShapeError, UnsupportedOptionError } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import onnxProto from 'onnx-proto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildRecurrentModel,
  loadOnnxModel,
  OnnxFormatError,
  OnnxInputError,
  OnnxRuntimeError,
  OnnxRuntimeUnavailableError,
  OnnxUnsupportedError,
  openOrtSession,
  ortReference,
  type RecurrentModelSpec,
  randomRecurrentWeights,
  runOnnxModel,
} from '../src/index.js';

const { onnx } = onnxProto;
const backend = createCpuBackend({ dtype: 'float32' });
afterAll(() => backend.destroy());

const m = 3;
const n = 4;
const T = 5;
const B = 2;
const spec = (op: RecurrentModelSpec['op'], extra: Partial<RecurrentModelSpec> = {}): RecurrentModelSpec => ({
  op,
  inputSize: m,
  hiddenSize: n,
  weights: randomRecurrentWeights({ op, inputSize: m, hiddenSize: n, direction: extra.direction }),
  nodeName: 'rec_0',
  ...extra,
});
const X = { data: new Float32Array(T * B * m).fill(0.5), dims: [T, B, m] };

/** Edit a built model's proto and re-encode it. */
type Graph = InstanceType<typeof onnx.GraphProto>;
function edit(bytes: Uint8Array, change: (graph: Graph) => void): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  change(model.graph as Graph);
  return onnx.ModelProto.encode(model).finish();
}

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('malformed files', () => {
  const bytes = buildRecurrentModel(spec('GRU'));

  it('rejects empty bytes and non-bytes', () => {
    expect(() => loadOnnxModel(new Uint8Array())).toThrow(OnnxFormatError);
    expect(() => loadOnnxModel('model.onnx' as unknown as Uint8Array)).toThrow(/Uint8Array, got string/);
  });

  it('rejects random bytes that happen to decode (an empty graph under opset 0 had loaded)', () => {
    const rng = new Rng(2024);
    for (let k = 0; k < 200; k++) {
      const junk = Uint8Array.from(rng.uniformArray(50 + k * 10, 0, 256), Math.floor);
      const err = (() => {
        try {
          loadOnnxModel(junk);
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      expect(err, `junk ${k}`).toBeInstanceOf(DeerError);
    }
    // The low bytes of a linear congruential sequence decode without a protobuf error (the
    // review's case): a graph with no outputs under operator set 0.
    let state = 1;
    const lcg = new Uint8Array(2000).map(() => {
      state = (state * 1103515245 + 12345) >>> 0;
      return state & 255;
    });
    expect(() => loadOnnxModel(lcg)).toThrow(OnnxFormatError);
    expect(() => loadOnnxModel(lcg)).toThrow(/operator set 0|no IR version|no outputs/);
  });

  it('rejects the file truncated at every byte with OnnxFormatError', () => {
    for (let cut = 1; cut < bytes.length; cut++) {
      const err = catchError(() => loadOnnxModel(bytes.subarray(0, cut)));
      expect(err, `cut at ${cut}`).toBeInstanceOf(OnnxFormatError);
    }
  });

  it('rejects random bytes with a typed error', () => {
    const rng = new Rng(5);
    for (let trial = 0; trial < 200; trial++) {
      const junk = Uint8Array.from({ length: 1 + (rng.nextU32() % 300) }, () => rng.nextU32() & 255);
      const err = catchError(() => {
        const model = loadOnnxModel(junk);
        if (model.recurrentNodes.length === 0) throw new OnnxFormatError('no recurrent node');
      });
      expect(err).toBeInstanceOf(DeerError);
    }
  });

  it('rejects an initializer whose raw data does not match its dims', () => {
    const bad = edit(bytes, (graph) => {
      const w = graph.initializer.find((t) => t.name === 'W')!;
      w.rawData = w.rawData!.subarray(0, w.rawData!.length - 4);
    });
    expect(() => loadOnnxModel(bad)).toThrow(/initializer 'W': raw_data has/);
  });

  it('an initializer nothing reads is not decoded, whatever its type; one the graph reads is, and is named as an initializer', async () => {
    const withExtra = (extra: object) =>
      edit(bytes, (graph) => {
        graph.initializer.push(onnx.TensorProto.create({ name: 'extra', dims: [2], ...extra }));
      });
    const float16 = { dataType: onnx.TensorProto.DataType.FLOAT16, int32Data: [15360, 15360] };
    const external = { dataType: 1, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL };
    for (const extra of [float16, external]) {
      const model = loadOnnxModel(withExtra(extra));
      expect(model.initializers.has('extra')).toBe(false);
      const { Y } = await runOnnxModel(model, backend, { X });
      const ref = await runOnnxModel(loadOnnxModel(bytes), backend, { X });
      expect(Array.from(Y!.data as Float32Array)).toEqual(Array.from(ref.Y!.data as Float32Array));
    }
    // Read as the node's B: refused, worded as an initializer.
    const readF16 = edit(withExtra(float16), (graph) => {
      graph.node[0]!.input![3] = 'extra';
    });
    const err = catchError(() => loadOnnxModel(readF16));
    expect(err).toBeInstanceOf(OnnxUnsupportedError);
    expect((err as Error).message).toMatch(/^ONNX initializer 'extra' \(read by a node\): data_type FLOAT16 is not supported/);
  });
});

describe('unsupported features name the node and attribute', () => {
  function unsupported(f: () => unknown, attribute: string): OnnxUnsupportedError {
    const err = catchError(f) as OnnxUnsupportedError;
    expect(err).toBeInstanceOf(OnnxUnsupportedError);
    expect(err).toBeInstanceOf(UnsupportedOptionError);
    expect(err.node).toBe('rec_0');
    expect(err.attribute).toBe(attribute);
    expect(err.message).toContain(`'rec_0'`);
    expect(err.message).toContain(attribute);
    return err;
  }

  it('an activation ONNX does not define', () => {
    const err = unsupported(
      () => loadOnnxModel(buildRecurrentModel(spec('GRU', { activations: ['Gelu', 'Tanh'] }))),
      'activations',
    );
    expect(err.message).toContain('Gelu');
    expect(err.message).toContain('LeakyRelu');
  });

  it('the wrong number of activations', () => {
    const err = unsupported(
      () =>
        loadOnnxModel(
          buildRecurrentModel(spec('GRU', { direction: 'bidirectional', activations: ['Relu', 'Tanh'] })),
        ),
      'activations',
    );
    expect(err.message).toContain('4 names (2 per direction)');
  });

  it('accepts the default activations spelled out, for both directions', () => {
    const s = spec('LSTM', {
      direction: 'bidirectional',
      activations: ['Sigmoid', 'Tanh', 'Tanh', 'Sigmoid', 'Tanh', 'Tanh'],
    });
    expect(loadOnnxModel(buildRecurrentModel(s)).recurrentNodes[0]!.direction).toBe('bidirectional');
  });

  it('resolves activation α and β in order, with onnxruntime defaults where they run out', () => {
    const s = spec('LSTM', {
      activations: ['LeakyRelu', 'HardSigmoid', 'relu'],
      activationAlpha: [0.5],
      activationBeta: [0.25],
    });
    expect(loadOnnxModel(buildRecurrentModel(s)).recurrentNodes[0]!.activations).toEqual([
      [{ name: 'LeakyRelu', alpha: 0.5 }, { name: 'HardSigmoid', alpha: 0.2, beta: 0.25 }, { name: 'Relu' }],
    ]);
  });

  it('LSTM peepholes P of the wrong dims', async () => {
    const bytes = edit(buildRecurrentModel(spec('LSTM')), (graph) => {
      graph.node[0]!.input = ['X', 'W', 'R', 'B', '', '', '', 'P'];
      graph.input.push({
        name: 'P',
        type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }, { dimValue: 2 * n }] } } },
      });
    });
    const model = loadOnnxModel(bytes);
    const P = { data: new Float32Array(2 * n), dims: [1, 2 * n] };
    const err = await runOnnxModel(model, backend, { X, P }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxInputError);
    expect((err as Error).message).toContain(`expected dims [1, ${3 * n}]`);
  });

  it('LSTM input_forget other than 0 or 1', () => {
    const bytes = edit(buildRecurrentModel(spec('LSTM')), (graph) => {
      graph.node[0]!.attribute!.push({
        name: 'input_forget',
        type: onnx.AttributeProto.AttributeType.INT,
        i: 2,
      } as never);
    });
    unsupported(() => loadOnnxModel(bytes), 'input_forget');
  });

  it('a hidden size of 0 taken from R', async () => {
    const bytes = edit(buildRecurrentModel(spec('RNN', { weightsAsInputs: true })), (graph) => {
      graph.node[0]!.attribute = graph.node[0]!.attribute!.filter((a) => a.name !== 'hidden_size');
      for (const v of graph.input) {
        if (['W', 'R', 'B'].includes(v.name!)) {
          for (const d of v.type!.tensorType!.shape!.dim!) {
            d.dimParam = 'k';
            d.dimValue = undefined as never;
          }
        }
      }
    });
    const model = loadOnnxModel(bytes);
    const empty = (dims: number[]) => ({ data: new Float32Array(0), dims });
    const err = await runOnnxModel(model, backend, {
      X,
      W: empty([1, 0, m]),
      R: empty([1, 0, 0]),
      B: empty([1, 0]),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxInputError);
    expect((err as Error).message).toMatch(/expected a hidden size ≥ 1.*got 0/);
  });

  it('an attribute of the wrong type', () => {
    const bytes = edit(buildRecurrentModel(spec('GRU')), (graph) => {
      for (const a of graph.node[0]!.attribute!)
        if (a.name === 'layout') a.type = onnx.AttributeProto.AttributeType.FLOAT;
    });
    const err = unsupported(() => loadOnnxModel(bytes), 'layout');
    expect(err.message).toContain('an attribute of type FLOAT');
    expect(err.message).toContain('an attribute of type INT');
  });

  it('a node output that redefines a graph input (onnxruntime: "Duplicate definition")', () => {
    const bytes = edit(buildRecurrentModel(spec('RNN')), (graph) => {
      graph.node[0]!.output![0] = graph.input![0]!.name!;
    });
    expect(() => loadOnnxModel(bytes)).toThrow(OnnxFormatError);
    expect(() => loadOnnxModel(bytes)).toThrow(/defines '.*', which an initializer, graph input or earlier node already defines/);
  });

  it('an attribute given twice', () => {
    const bytes = edit(buildRecurrentModel(spec('RNN')), (graph) => {
      graph.node[0]!.attribute!.push({
        name: 'layout',
        type: onnx.AttributeProto.AttributeType.INT,
        i: 1,
      } as never);
    });
    expect(() => loadOnnxModel(bytes)).toThrow(OnnxFormatError);
    expect(() => loadOnnxModel(bytes)).toThrow(/attribute 'layout' appears twice/);
  });

  it('integer weights', async () => {
    const bytes = edit(buildRecurrentModel(spec('RNN')), (graph) => {
      const W = graph.initializer.find((t) => t.name === 'W')!;
      W.dataType = onnx.TensorProto.DataType.INT32;
    });
    const err = await runOnnxModel(loadOnnxModel(bytes), backend, { X }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxInputError);
    expect((err as Error).message).toMatch(/W.*expected float32 or float64 values, got Int32Array/);
  });

  it('a hidden_size attribute of 0', () => {
    const bytes = edit(buildRecurrentModel(spec('GRU')), (graph) => {
      for (const a of graph.node[0]!.attribute!) if (a.name === 'hidden_size') a.i = 0 as never;
    });
    unsupported(() => loadOnnxModel(bytes), 'hidden_size');
  });

  it('sequence_lens outside [0, T] or not integers', async () => {
    const model = loadOnnxModel(buildRecurrentModel(spec('RNN', { sequenceLens: true })));
    for (const lens of [new Int32Array([T, T + 1]), new Int32Array([-1, T])]) {
      const err = await runOnnxModel(model, backend, { X, sequence_lens: { data: lens, dims: [B] } }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OnnxInputError);
      expect((err as Error).message).toMatch(/expected lengths in \[0, 5\]/);
    }
    const floats = { data: new Float32Array([T, T]), dims: [B] };
    const err = await runOnnxModel(model, backend, { X, sequence_lens: floats }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxInputError);
  });

  it('an op outside the supported set', async () => {
    const bytes = edit(buildRecurrentModel(spec('GRU')), (graph) => {
      graph.node.push({ name: 'act', opType: 'Relu', input: ['Y'], output: ['Z'] } as never);
    });
    const err = await runOnnxModel(loadOnnxModel(bytes), backend, { X }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxUnsupportedError);
    expect((err as OnnxUnsupportedError).node).toBe('act');
    expect((err as OnnxUnsupportedError).attribute).toBe('op_type');
  });
});

describe('run-time inputs', () => {
  const model = loadOnnxModel(buildRecurrentModel(spec('GRU')));

  it('names a missing input', async () => {
    await expect(runOnnxModel(model, backend, {})).rejects.toThrow(OnnxInputError);
    await expect(runOnnxModel(model, backend, {})).rejects.toThrow(/'X': missing/);
  });

  it('names an input of the wrong shape or type', async () => {
    await expect(runOnnxModel(model, backend, { X: { data: X.data, dims: [T, B, m + 1] } })).rejects.toThrow(
      /'X'/,
    );
    await expect(
      runOnnxModel(model, backend, { X: { data: new Int32Array(T * B * m), dims: X.dims } }),
    ).rejects.toThrow(/declares float32, got int32/);
    // Float element types are strict too, as in onnxruntime: a float64 X for this float model had
    // run in float64 (and a float32 X for a double model in float32).
    await expect(
      runOnnxModel(model, backend, { X: { data: new Float64Array(T * B * m), dims: X.dims } }),
    ).rejects.toThrow(/declares float32, got float64/);
    await expect(runOnnxModel(model, backend, { X: X.data })).rejects.toThrow(/does not fix its dims/);
    await expect(runOnnxModel(model, backend, { X, extra: X })).rejects.toThrow(/'extra': not an input/);
  });

  it('refuses to override a constant initializer; one that is also a graph input may be overridden', async () => {
    const bytes = buildRecurrentModel(spec('GRU'));
    const W = { data: new Float32Array(3 * n * m), dims: [1, 3 * n, m] };
    const err = await runOnnxModel(loadOnnxModel(bytes), backend, { X, W }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxInputError);
    expect((err as OnnxInputError).input).toBe('W');
    expect((err as Error).message).toMatch(/'W': a constant initializer, not an input/);
    // W declared as a graph input as well: its initializer is a default the caller may replace.
    const wInfo = onnx.ModelProto.decode(
      buildRecurrentModel(spec('GRU', { weightsAsInputs: true })),
    ).graph?.input?.find((i) => i.name === 'W');
    const withDefault = loadOnnxModel(edit(bytes, (graph) => graph.input.push(wInfo!)));
    expect(withDefault.initializerInputs?.map((i) => i.name)).toEqual(['W']);
    const plain = await runOnnxModel(withDefault, backend, { X });
    const fed = await runOnnxModel(withDefault, backend, { X, W });
    expect(Array.from(fed.Y_h!.data as Float32Array)).not.toEqual(Array.from(plain.Y_h!.data as Float32Array));
    await expect(
      runOnnxModel(withDefault, backend, { X, W: { data: new Float32Array(4), dims: [4] } }),
    ).rejects.toThrow(/'W': the model declares dims/);
  });

  it('gives typed errors for null inputs or backend', async () => {
    await expect(runOnnxModel(model, backend, null as never)).rejects.toThrow(OnnxInputError);
    await expect(runOnnxModel(model, null as never, { X })).rejects.toThrow(InvalidArgumentError);
    // A null model had been a TypeError: its nodes were read before it was checked.
    await expect(runOnnxModel(null as never, backend, { X })).rejects.toThrow(InvalidArgumentError);
    await expect(runOnnxModel({ nodes: [] } as never, backend, { X })).rejects.toThrow(InvalidArgumentError);
  });

  it('gives typed errors for options that are not an object, or an onSolve that is not a function (before any solve)', async () => {
    for (const options of [null, 'x', [1]]) {
      const err = await runOnnxModel(model, backend, { X }, options as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(/^runOnnxModel options: expected an object of options/);
    }
    const live = backend.liveTensors();
    const err = await runOnnxModel(model, backend, { X }, { onSolve: 1 } as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/onSolve: expected a function, got 1/);
    expect(backend.liveTensors()).toBe(live);
  });

  it("refuses deer's h0 and lengths: initial_h and sequence_lens come from the model (they were overwritten in silence)", async () => {
    await expect(runOnnxModel(model, backend, { X }, { h0: [0, 0] } as never)).rejects.toThrow(UnsupportedOptionError);
    await expect(runOnnxModel(model, backend, { X }, { lengths: [1] } as never)).rejects.toThrow(UnsupportedOptionError);
  });
});

describe('spec checks of the model builders', () => {
  const weights = randomRecurrentWeights({ op: 'GRU', inputSize: 2, hiddenSize: 3 });
  it.each([
    ['op', { op: 'FOO' }],
    ['hiddenSize', { hiddenSize: 0 }],
    ['hiddenSize', { hiddenSize: 2.5 }],
    ['inputSize', { inputSize: -1 }],
    ['inputSize', { inputSize: 2.5 }],
    ['scale', { scale: Number.NaN }],
  ])('randomRecurrentWeights names a bad %s', (field, change) => {
    expect(() => randomRecurrentWeights({ op: 'GRU', inputSize: 2, hiddenSize: 3, ...change } as never)).toThrow(
      new RegExp(`spec\\.${field}: expected`),
    );
    expect(() => randomRecurrentWeights({ op: 'GRU', inputSize: 2, hiddenSize: 3, ...change } as never)).toThrow(
      InvalidArgumentError,
    );
  });
  it.each([
    ['op', { op: 'FOO' }],
    ['hiddenSize', { hiddenSize: 0 }],
    ['inputSize', { inputSize: 2.5 }],
    ['weights', { weights: null }],
    ['weights\\.R', { weights: { W: weights.W } }],
    // Written into the model before, for the loader (or onnxruntime) to refuse later, or never.
    ['layout', { layout: 2 }],
    ['linearBeforeReset', { linearBeforeReset: 2 }],
    ['clip', { clip: Number.NaN }],
    ['clip', { clip: -1 }],
    ['activations', { activations: [1, 2] }],
    ['activationAlpha', { activationAlpha: [Number.POSITIVE_INFINITY] }],
    ['opset', { opset: 0 }],
    ['inputForget', { inputForget: 0 }],
    ['seqLength', { seqLength: -3 }],
    ['batchSize', { batchSize: '' }],
    ['nodeName', { nodeName: 7 }],
  ])('buildRecurrentModel names a bad %s', (field, change) => {
    const bad = { op: 'GRU', inputSize: 2, hiddenSize: 3, weights, ...change } as never;
    expect(() => buildRecurrentModel(bad)).toThrow(InvalidArgumentError);
    expect(() => buildRecurrentModel(bad)).toThrow(new RegExp(`spec\\.${field}: expected`));
  });
  it.each([
    ['W', { W: weights.W.slice(1) }],
    ['R', { R: [...weights.R, 0] }],
    ['B', { B: new Array(100).fill(0) }],
  ])('buildRecurrentModel refuses weights.%s of the wrong size with a ShapeError (it had been a RangeError)', (key, change) => {
    const bad = { op: 'GRU', inputSize: 2, hiddenSize: 3, weights: { ...weights, ...change } } as never;
    expect(() => buildRecurrentModel(bad)).toThrow(ShapeError);
    expect(() => buildRecurrentModel(bad)).toThrow(new RegExp(`spec\\.weights\\.${key}: expected \\d+ values for \\[`));
  });
  it('buildRecurrentModel refuses one direction of weights for a bidirectional spec', () => {
    expect(() => buildRecurrentModel({ op: 'GRU', inputSize: 2, hiddenSize: 3, weights, direction: 'bidirectional' })).toThrow(ShapeError);
  });
});

describe('onnxruntime-node', () => {
  const bytes = buildRecurrentModel(spec('GRU'));

  it('a missing package gives a typed error naming it', async () => {
    const importer = () =>
      Promise.reject(
        Object.assign(new Error("Cannot find package 'onnxruntime-node'"), { code: 'ERR_MODULE_NOT_FOUND' }),
      );
    const err = await ortReference(bytes, { X }, { importer }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxRuntimeUnavailableError);
    expect((err as OnnxRuntimeUnavailableError).install).toBe('onnxruntime-node');
    expect((err as Error).message).toMatch(/not installed.*npm install onnxruntime-node/);
  });

  it('a misspelt option is refused before onnxruntime is imported (it had been ignored)', async () => {
    let imported = 0;
    const importer = async () => {
      imported++;
      return {};
    };
    await expect(ortReference(bytes, { X }, { importer, sesionOptions: {} } as never)).rejects.toThrow(UnsupportedOptionError);
    await expect(openOrtSession(bytes, { importer, sesionOptions: {} } as never)).rejects.toThrow(/known: importer, sessionOptions/);
    expect(imported).toBe(0);
  });

  it('a module that is not onnxruntime gives the same typed error', async () => {
    await expect(ortReference(bytes, { X }, { importer: async () => ({}) })).rejects.toThrow(
      OnnxRuntimeUnavailableError,
    );
  });

  it('an importer resolving to null gives the same typed error', async () => {
    await expect(ortReference(bytes, { X }, { importer: async () => null })).rejects.toThrow(
      OnnxRuntimeUnavailableError,
    );
  });

  it('unsupported input data gives OnnxInputError naming the input', async () => {
    const session = { inputNames: ['X'], outputNames: [], run: async () => ({}), release: async () => undefined };
    const fake = { InferenceSession: { create: async () => session }, Tensor: class {} };
    const err = await ortReference(
      bytes,
      { X: { data: new Uint8Array(T * B * m), dims: X.dims } } as never,
      { importer: async () => fake },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxInputError);
    expect((err as Error).message).toMatch(/'X': unsupported data type Uint8Array/);
  });

  it('a feed onnxruntime would drop is refused, never ignored', async () => {
    // W as a graph input beside its initializer: runOnnxModel takes it as an override, while
    // onnxruntime-node passes on only its session's input names (X here).
    const overridable = edit(bytes, (g) => {
      const w = g.initializer.find((t) => t.name === 'W')!;
      g.input!.push(
        onnx.ValueInfoProto.create({
          name: 'W',
          type: { tensorType: { elemType: 1, shape: { dim: w.dims!.map((d) => ({ dimValue: d })) } } },
        }),
      );
    });
    const W = { data: new Float32Array(3 * n * m).fill(0.1), dims: [1, 3 * n, m] };
    for (const feeds of [{ X, W }, { X, nonsense: W }] as Record<string, typeof X>[]) {
      const err = await ortReference(overridable, feeds).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OnnxInputError);
      expect((err as Error).message).toMatch(/onnxruntime does not take this input \(its inputs: X\)/);
    }
    expect(loadOnnxModel(overridable).initializerInputs?.map((i) => i.name)).toEqual(['W']);
  });

  it('a missing, mis-sized or empty feed is an OnnxInputError (onnxruntime aborts the process on empty X)', async () => {
    await expect(ortReference(bytes, {})).rejects.toThrow(/'X': missing/);
    await expect(ortReference(bytes, { X: { data: new Float32Array(4), dims: X.dims } })).rejects.toThrow(
      /'X': dims \[5, 2, 3\] hold 30 values, data has 4/,
    );
    await expect(ortReference(bytes, { X: { data: new Float32Array(0), dims: [0, B, m] } })).rejects.toThrow(
      /'X': empty tensor/,
    );
  });

  it("onnxruntime's own failures are typed: bytes it cannot load, a run it refuses", async () => {
    const corrupt = bytes.slice(0, 40);
    await expect(ortReference(corrupt, { X })).rejects.toThrow(OnnxFormatError);
    // Right size, wrong rank: onnxruntime's shape check refuses the run.
    const err = await ortReference(bytes, { X: { data: X.data, dims: [T * B * m] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxRuntimeError);
    expect((err as Error).message).toMatch(/^onnxruntime failed: /);
  });

  it('is imported lazily, only by ort.ts', () => {
    const dir = new URL('../src/', import.meta.url);
    for (const file of readdirSync(dir)) {
      const text = readFileSync(new URL(file, dir), 'utf8');
      expect(text, file).not.toMatch(/^import[^;]*from 'onnxruntime-node'/m);
      if (file !== 'ort.ts') expect(text, file).not.toContain("import('onnxruntime-node')");
    }
  });
});
