import { createCpuBackend } from '@deerjs/cpu';
import onnxProto from 'onnx-proto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildRecurrentModel,
  loadOnnxModel,
  type OnnxInput,
  OnnxInputError,
  OnnxUnsupportedError,
  ortReference,
  randomRecurrentWeights,
  runOnnxModel,
} from '../src/index.js';

const { onnx } = onnxProto;
type Model = InstanceType<typeof onnx.ModelProto>;

// Forms that one operator set has and another lacks: deerjs refuses a model exactly when
// onnxruntime (the reference) refuses it as invalid.
describe('operator-set forms, as onnxruntime takes them', () => {
  const backend = createCpuBackend({ dtype: 'float32' });
  afterAll(() => backend.destroy());
  const [m, n, B, T] = [3, 4, 2, 5];
  const weights = randomRecurrentWeights({ op: 'GRU', inputSize: m, hiddenSize: n, seed: 1, scale: 1 });
  const X = { data: Float32Array.from({ length: T * B * m }, (_, i) => Math.sin(i)), dims: [T, B, m] };
  const gru = (edit: (g: Model) => void, spec: { opset?: number; sequenceLens?: boolean } = {}) => {
    const model = onnx.ModelProto.decode(buildRecurrentModel({ op: 'GRU', inputSize: m, hiddenSize: n, weights, batchSize: B, seqLength: T, ...spec }));
    edit(model);
    return onnx.ModelProto.encode(model).finish();
  };
  const setOpset = (opset: number) => (g: Model) => {
    g.opsetImport = [{ domain: '', version: opset }];
  };
  const squeezeHidden = (form: 'attribute' | 'input') => (g: Model) => {
    const graph = g.graph!;
    graph.node!.push(
      form === 'attribute'
        ? { name: 'sq', opType: 'Squeeze', input: ['Y_h'], output: ['h'], attribute: [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [0] }] }
        : { name: 'sq', opType: 'Squeeze', input: ['Y_h', 'ax'], output: ['h'] },
    );
    if (form === 'input') graph.initializer!.push({ name: 'ax', dims: [1], dataType: onnx.TensorProto.DataType.INT64, int64Data: [0] });
    graph.output = [{ name: 'h', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: B }, { dimValue: n }] } } } }];
  };
  const int64Lens = (g: Model) => {
    for (const i of g.graph!.input!) if (i.name === 'sequence_lens') i.type!.tensorType!.elemType = onnx.TensorProto.DataType.INT64;
  };

  const outcome = async (bytes: Uint8Array, inputs: Record<string, OnnxInput>) => {
    const ours = await Promise.resolve()
      .then(async () => runOnnxModel(loadOnnxModel(bytes), backend, inputs))
      .then(() => 'ran', (e: unknown) => e);
    const theirs = await ortReference(bytes, inputs as never).then(() => 'ran', () => 'refused');
    return { ours, theirs };
  };

  it.each([
    ['layout at opset 7', gru(setOpset(7)), OnnxUnsupportedError, /layout exists from opset 14; the model imports opset 7/],
    ['Squeeze axes as an attribute at opset 14', gru(squeezeHidden('attribute')), OnnxUnsupportedError, /axes as an input \(opset ≥ 13\)/],
    ['Squeeze axes as an input at opset 11', gru(squeezeHidden('input'), { opset: 11 }), OnnxUnsupportedError, /axes as an attribute \(opset < 13\)/],
  ] as const)('refuses %s', async (_, bytes, type, message) => {
    const { ours, theirs } = await outcome(bytes, { X });
    expect(theirs).toBe('refused');
    expect(ours).toBeInstanceOf(type);
    expect((ours as Error).message).toMatch(message);
  });

  it('refuses int64 sequence_lens (the operator takes int32)', async () => {
    const lens = { data: BigInt64Array.from([5n, 3n]), dims: [B] };
    const { ours, theirs } = await outcome(gru(int64Lens, { sequenceLens: true }), { X, sequence_lens: lens });
    expect(theirs).toBe('refused');
    expect(ours).toBeInstanceOf(OnnxInputError);
    expect((ours as Error).message).toMatch(/expected int32 values/);
  });

  it.each([
    ['opset 7 without layout', gru(() => {}, { opset: 7 })],
    ['Squeeze axes as an input at opset 14', gru(squeezeHidden('input'))],
    ['Squeeze axes as an attribute at opset 11', gru(squeezeHidden('attribute'), { opset: 11 })],
  ] as const)('runs %s, as onnxruntime does', async (_, bytes) => {
    const { ours, theirs } = await outcome(bytes, { X });
    expect(theirs).toBe('ran');
    expect(ours).toBe('ran');
  });
});
