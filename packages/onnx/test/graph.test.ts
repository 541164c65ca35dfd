import { Rng } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import onnxProto from 'onnx-proto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildRecurrentModel,
  loadOnnxModel,
  OnnxUnsupportedError,
  ortReference,
  randomRecurrentWeights,
  runOnnxModel,
} from '../src/index.js';
import { maxAbsDiff } from './helpers.js';

const { onnx } = onnxProto;
const backend = createCpuBackend({ dtype: 'float32' });
afterAll(() => backend.destroy());

const m = 4;
const n = 5;
const T = 9;
const B = 2;
const rng = new Rng(11);
const X = () => ({ data: Float32Array.from(rng.uniformArray(T * B * m)), dims: [T, B, m] });

describe('graphs around a recurrent node', () => {
  it('lists the recurrent node with its attributes and the run-time inputs', () => {
    const weights = randomRecurrentWeights({ op: 'LSTM', inputSize: m, hiddenSize: n, direction: 'reverse' });
    const model = loadOnnxModel(
      buildRecurrentModel({
        op: 'LSTM',
        inputSize: m,
        hiddenSize: n,
        direction: 'reverse',
        weights,
        initialState: true,
        nodeName: 'enc',
      }),
    );
    expect(model.opset).toBe(14);
    expect(model.irVersion).toBe(8);
    expect(model.inputs.map((i) => i.name)).toEqual(['X', 'initial_h', 'initial_c']);
    expect(model.inputs[0]!.dims).toEqual(['seq', 'batch', m]);
    expect(model.recurrentNodes).toHaveLength(1);
    const node = model.recurrentNodes[0]!;
    expect(node).toMatchObject({
      name: 'enc',
      op: 'LSTM',
      hiddenSize: n,
      direction: 'reverse',
      numDirections: 1,
      layout: 0,
    });
    expect(node.inputs).toMatchObject({
      X: 'X',
      W: 'W',
      R: 'R',
      B: 'B',
      initial_h: 'initial_h',
      initial_c: 'initial_c',
    });
    expect(model.initializers.get('W')!.dims).toEqual([1, 4 * n, m]);
  });

  it('runs sequence_lens when every length equals T', async () => {
    const weights = randomRecurrentWeights({ op: 'GRU', inputSize: m, hiddenSize: n, seed: 2, scale: 1 });
    const bytes = buildRecurrentModel({
      op: 'GRU',
      inputSize: m,
      hiddenSize: n,
      weights,
      sequenceLens: true,
    });
    const inputs = { X: X(), sequence_lens: { data: new Int32Array([T, T]), dims: [B] } };
    const got = await runOnnxModel(loadOnnxModel(bytes), backend, inputs);
    const ref = await ortReference(bytes, inputs);
    expect(maxAbsDiff(got.Y!, ref.Y!)).toBeLessThan(1e-5);
  });

  it('runs on a float64 backend, returning float32 for a float32 model', async () => {
    const f64 = createCpuBackend({ dtype: 'float64' });
    const weights = randomRecurrentWeights({
      op: 'LSTM',
      inputSize: m,
      hiddenSize: n,
      direction: 'bidirectional',
      seed: 9,
      scale: 1,
    });
    const bytes = buildRecurrentModel({
      op: 'LSTM',
      inputSize: m,
      hiddenSize: n,
      direction: 'bidirectional',
      weights,
    });
    const inputs = { X: X() };
    const got = await runOnnxModel(loadOnnxModel(bytes), f64, inputs, { dtype: 'float64' });
    const ref = await ortReference(bytes, inputs);
    expect(got.Y!.data).toBeInstanceOf(Float32Array);
    for (const k of ['Y', 'Y_h', 'Y_c']) expect(maxAbsDiff(got[k]!, ref[k]!)).toBeLessThan(1e-5);
    await f64.destroy();
  });

  it('runs a PyTorch-style batch-first graph: Transpose → GRU → Squeeze/Transpose', async () => {
    // x [B, T, m] → X [T, B, m] → GRU → Y [T, 1, B, n] → squeeze → [T, B, n] → out [B, T, n]; h = Y_h squeezed [B, n].
    const weights = randomRecurrentWeights({ op: 'GRU', inputSize: m, hiddenSize: n, seed: 4, scale: 1 });
    const inner = onnx.ModelProto.decode(
      buildRecurrentModel({
        op: 'GRU',
        inputSize: m,
        hiddenSize: n,
        linearBeforeReset: 1,
        weights,
        batchSize: B,
        seqLength: T,
      }),
    );
    const g = inner.graph as InstanceType<typeof onnx.GraphProto>;
    const ints = onnx.AttributeProto.AttributeType.INTS;
    g.node = [
      {
        name: 'to_time_major',
        opType: 'Transpose',
        input: ['x'],
        output: ['X'],
        attribute: [{ name: 'perm', type: ints, ints: [1, 0, 2] }],
      },
      ...g.node,
      { name: 'squeeze_y', opType: 'Squeeze', input: ['Y', 'axis1'], output: ['Ys'] },
      {
        name: 'to_batch_major',
        opType: 'Transpose',
        input: ['Ys'],
        output: ['out'],
        attribute: [{ name: 'perm', type: ints, ints: [1, 0, 2] }],
      },
      { name: 'squeeze_h', opType: 'Squeeze', input: ['Y_h', 'axis0'], output: ['h'] },
      { name: 'copy', opType: 'Identity', input: ['h'], output: ['h_copy'] },
    ];
    const i64 = (name: string, v: number) => ({
      name,
      dims: [1],
      dataType: onnx.TensorProto.DataType.INT64,
      int64Data: [v],
    });
    g.initializer.push(i64('axis0', 0), i64('axis1', 1));
    const vi = (name: string, dims: number[]) => ({
      name,
      type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
    });
    g.input = [vi('x', [B, T, m])];
    g.output = [vi('out', [B, T, n]), vi('h_copy', [B, n])];
    const bytes = onnx.ModelProto.encode(inner).finish();

    const x = Float32Array.from(rng.uniformArray(B * T * m));
    const model = loadOnnxModel(bytes);
    expect(model.inputs.map((i) => i.name)).toEqual(['x']);
    const got = await runOnnxModel(model, backend, { x }); // dims are static, so bare data is enough
    const ref = await ortReference(bytes, { x: { data: x, dims: [B, T, m] } });
    expect(got.out!.dims).toEqual([B, T, n]);
    expect(got.h_copy!.dims).toEqual([B, n]);
    expect(maxAbsDiff(got.out!, ref.out!)).toBeLessThan(1e-5);
    expect(maxAbsDiff(got.h_copy!, ref.h_copy!)).toBeLessThan(1e-5);
  });

  it('refuses a shape op attribute it does not take or of the wrong type, as onnxruntime does', async () => {
    // A misspelt `perm` had been ignored: the default reversal transposed [B, T, m] as if it were
    // right, and with B = m the GRU ran on the wrong axes without a word.
    const weights = randomRecurrentWeights({ op: 'GRU', inputSize: m, hiddenSize: n, seed: 4 });
    const ints = onnx.AttributeProto.AttributeType.INTS;
    const withFirst = (node: Record<string, unknown>) => {
      const inner = onnx.ModelProto.decode(buildRecurrentModel({ op: 'GRU', inputSize: m, hiddenSize: n, weights }));
      const g = inner.graph as InstanceType<typeof onnx.GraphProto>;
      g.node = [{ name: 'first', input: ['x'], output: ['X'], ...node }, ...g.node];
      g.input[0]!.name = 'x';
      return onnx.ModelProto.encode(inner).finish();
    };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ opType: 'Transpose', attribute: [{ name: 'perms', type: ints, ints: [1, 0, 2] }] }, /'first': perms \[1,0,2\] is not supported \(supported: Transpose takes only perm\)/],
      [{ opType: 'Identity', attribute: [{ name: 'bogus', type: onnx.AttributeProto.AttributeType.INT, i: 3 }] }, /'first': bogus 3 .*Identity takes no attributes/],
      [{ opType: 'Transpose', attribute: [{ name: 'perm', type: onnx.AttributeProto.AttributeType.INT, i: 1 }] }, /'first': perm 1 .*a list of integers/],
    ];
    for (const [node, message] of cases) {
      const bytes = withFirst(node);
      expect(() => loadOnnxModel(bytes)).toThrow(OnnxUnsupportedError);
      expect(() => loadOnnxModel(bytes)).toThrow(message);
      await expect(ortReference(bytes, { x: X() })).rejects.toThrow();
    }
  });
});
