import { describeValue, InvalidArgumentError, Rng, ShapeError } from '@deerjs/core';
import { type OnnxTypes, onnx } from './proto.js';
import { type Direction, GATES, isRecurrentOp, type RecurrentOp } from './recurrent.js';
import { makeTensorProto } from './tensor.js';
import { encodeUtf8 } from './text.js';

/** Weights in ONNX layout, directions first: W [nd, k·n, m], R [nd, k·n, n], B [nd, 2·k·n] (k gates). */
export interface RecurrentWeights {
  readonly W: ArrayLike<number>;
  readonly R: ArrayLike<number>;
  readonly B?: ArrayLike<number>;
  /** LSTM peephole weights [nd, 3·n] (blocks i, o, f). */
  readonly P?: ArrayLike<number>;
}

export interface RecurrentModelSpec {
  readonly op: RecurrentOp;
  readonly inputSize: number;
  readonly hiddenSize: number;
  /** Default 'forward'. */
  readonly direction?: Direction;
  /** 0 (default): X [T, B, m], Y [T, nd, B, n]; 1: X [B, T, m], Y [B, T, nd, n]. */
  readonly layout?: 0 | 1;
  /** GRU only; default 0 (the ONNX default). */
  readonly linearBeforeReset?: 0 | 1;
  readonly clip?: number;
  readonly weights: RecurrentWeights;
  /** W, R and B become graph inputs (supplied at run time) instead of initializers. */
  readonly weightsAsInputs?: boolean;
  /** Add initial_h (and initial_c for LSTM) graph inputs. */
  readonly initialState?: boolean;
  /** Add a sequence_lens graph input (int32 [B]). */
  readonly sequenceLens?: boolean;
  /** Written as the activations attribute when given (nd × the op's count). */
  readonly activations?: readonly string[];
  /** Written as activation_alpha / activation_beta when given. */
  readonly activationAlpha?: readonly number[];
  readonly activationBeta?: readonly number[];
  /** LSTM only: written as input_forget when given. */
  readonly inputForget?: 0 | 1;
  /** Declared batch and sequence dims: numbers, or symbolic names (default 'batch' and 'seq'). */
  readonly batchSize?: number | string;
  readonly seqLength?: number | string;
  /** Default 14 (the first opset with `layout`). */
  readonly opset?: number;
  /** Default: the op's name. */
  readonly nodeName?: string;
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** The fields both builders read, checked before any size is computed from them. */
function checkSpec(
  fn: string,
  spec: { op: unknown; inputSize: unknown; hiddenSize: unknown; direction?: unknown } | null,
): void {
  if (spec === null || typeof spec !== 'object')
    throw new InvalidArgumentError(`${fn} spec`, 'an object', describeValue(spec));
  if (!isRecurrentOp(spec.op as string))
    throw new InvalidArgumentError(`${fn} spec.op`, "'GRU', 'LSTM' or 'RNN'", describeValue(spec.op));
  for (const key of ['inputSize', 'hiddenSize'] as const) {
    const v = spec[key];
    if (!Number.isSafeInteger(v) || (v as number) < 1)
      throw new InvalidArgumentError(`${fn} spec.${key}`, 'an integer ≥ 1', describeValue(v));
  }
  if (
    spec.direction !== undefined &&
    spec.direction !== 'forward' &&
    spec.direction !== 'reverse' &&
    spec.direction !== 'bidirectional'
  )
    throw new InvalidArgumentError(
      `${fn} spec.direction`,
      "'forward', 'reverse' or 'bidirectional'",
      describeValue(spec.direction),
    );
}
const AType = onnx.AttributeProto.AttributeType;

/**
 * buildRecurrentModel's optional fields: what the loader (and onnxruntime) would refuse is refused
 * here, where the mistake was made, instead of being written into the model.
 */
function checkModelOptions(spec: RecurrentModelSpec): void {
  const fail = (key: string, expected: string) =>
    new InvalidArgumentError(`buildRecurrentModel spec.${key}`, expected, describeValue((spec as unknown as Record<string, unknown>)[key]));
  const bit = (key: 'layout' | 'linearBeforeReset' | 'inputForget') => {
    const v = spec[key];
    if (v !== undefined && v !== 0 && v !== 1) throw fail(key, '0 or 1');
  };
  bit('layout');
  bit('linearBeforeReset');
  bit('inputForget');
  if (spec.inputForget !== undefined && spec.op !== 'LSTM') throw fail('inputForget', 'absent (LSTM only)');
  if (spec.clip !== undefined && !(typeof spec.clip === 'number' && spec.clip > 0 && Number.isFinite(spec.clip)))
    throw fail('clip', 'a finite number > 0');
  if (spec.opset !== undefined && !(Number.isSafeInteger(spec.opset) && spec.opset >= 1)) throw fail('opset', 'an integer ≥ 1');
  if (spec.activations !== undefined && !(Array.isArray(spec.activations) && spec.activations.every((a) => typeof a === 'string')))
    throw fail('activations', 'an array of activation names (strings)');
  for (const key of ['activationAlpha', 'activationBeta'] as const) {
    const v = spec[key];
    if (v !== undefined && !(Array.isArray(v) && v.every((a) => typeof a === 'number' && Number.isFinite(a))))
      throw fail(key, 'an array of finite numbers');
  }
  for (const key of ['batchSize', 'seqLength'] as const) {
    const v = spec[key];
    if (v !== undefined && !((Number.isSafeInteger(v) && (v as number) >= 1) || (typeof v === 'string' && v !== '')))
      throw fail(key, 'an integer ≥ 1 or a symbolic name');
  }
  if (spec.nodeName !== undefined && typeof spec.nodeName !== 'string') throw fail('nodeName', 'a string');
}

function valueInfo(
  name: string,
  dims: readonly (number | string)[],
  elemType: number = FLOAT,
): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/**
 * A valid ONNX model (ir_version 8, opset 14 by default) holding one GRU, LSTM or RNN node, encoded
 * with onnx-proto. Inputs X (float32), optionally W/R/B, sequence_lens, initial_h, initial_c; outputs
 * Y, Y_h (and Y_c for LSTM). Used by the tests and by the benchmark (with `ortReference`).
 */
export function buildRecurrentModel(spec: RecurrentModelSpec): Uint8Array {
  checkSpec('buildRecurrentModel', spec);
  const w = spec.weights as RecurrentWeights | null;
  if (w === null || typeof w !== 'object')
    throw new InvalidArgumentError(
      'buildRecurrentModel spec.weights',
      'an object { W, R, B?, P? } of numbers',
      describeValue(w),
    );
  for (const key of ['W', 'R', 'B', 'P'] as const) {
    const v = w[key] as unknown;
    if ((v !== undefined || key === 'W' || key === 'R') && !isNumbers(v))
      throw new InvalidArgumentError(
        `buildRecurrentModel spec.weights.${key}`,
        'an array or typed array of numbers',
        describeValue(v),
      );
  }
  checkModelOptions(spec);
  const { op, inputSize: m, hiddenSize: n, weights } = spec;
  const direction = spec.direction ?? 'forward';
  const layout = spec.layout ?? 0;
  const opset = spec.opset ?? 14;
  if (layout === 1 && opset < 14)
    throw new InvalidArgumentError('buildRecurrentModel spec.layout', '0 before opset 14 (layout exists from 14)', `1 at opset ${opset}`);
  const nd = direction === 'bidirectional' ? 2 : 1;
  const k = GATES[op];
  const Bd = spec.batchSize ?? 'batch';
  const Td = spec.seqLength ?? 'seq';
  const shapes = { W: [nd, k * n, m], R: [nd, k * n, n], B: [nd, 2 * k * n], P: [nd, 3 * n] } as const;
  for (const key of ['W', 'R', 'B', 'P'] as const) {
    const v = weights[key];
    const size = shapes[key].reduce((a, b) => a * b, 1);
    if (v !== undefined && v.length !== size)
      throw new ShapeError(`buildRecurrentModel spec.weights.${key}`, `${size} values for [${shapes[key].join(', ')}]`, `${v.length}`);
  }
  const inputs: OnnxTypes.IValueInfoProto[] = [valueInfo('X', layout === 0 ? [Td, Bd, m] : [Bd, Td, m])];
  const initializers: OnnxTypes.ITensorProto[] = [];
  for (const key of ['W', 'R', 'B', 'P'] as const) {
    const v = weights[key];
    if (v === undefined) continue;
    if (spec.weightsAsInputs) inputs.push(valueInfo(key, shapes[key]));
    else initializers.push(makeTensorProto(key, Float32Array.from(v), shapes[key]));
  }
  const stateDims = layout === 0 ? [nd, Bd, n] : [Bd, nd, n];
  if (spec.sequenceLens) inputs.push(valueInfo('sequence_lens', [Bd], onnx.TensorProto.DataType.INT32));
  if (spec.initialState) {
    inputs.push(valueInfo('initial_h', stateDims));
    if (op === 'LSTM') inputs.push(valueInfo('initial_c', stateDims));
  }
  const nodeInputs = [
    'X',
    'W',
    'R',
    weights.B ? 'B' : '',
    spec.sequenceLens ? 'sequence_lens' : '',
    spec.initialState ? 'initial_h' : '',
    spec.initialState && op === 'LSTM' ? 'initial_c' : '',
    op === 'LSTM' && weights.P ? 'P' : '',
  ];
  while (nodeInputs.at(-1) === '') nodeInputs.pop();
  const outputNames = op === 'LSTM' ? ['Y', 'Y_h', 'Y_c'] : ['Y', 'Y_h'];
  const attribute: OnnxTypes.IAttributeProto[] = [
    { name: 'hidden_size', type: AType.INT, i: n },
    { name: 'direction', type: AType.STRING, s: encodeUtf8(direction) },
    // Operator sets before 14 have no layout attribute.
    ...(opset >= 14 ? [{ name: 'layout', type: AType.INT, i: layout }] : []),
  ];
  if (op === 'GRU')
    attribute.push({ name: 'linear_before_reset', type: AType.INT, i: spec.linearBeforeReset ?? 0 });
  if (spec.clip !== undefined) attribute.push({ name: 'clip', type: AType.FLOAT, f: spec.clip });
  if (spec.activations) {
    attribute.push({
      name: 'activations',
      type: AType.STRINGS,
      strings: spec.activations.map((s) => encodeUtf8(s)),
    });
  }
  if (spec.activationAlpha)
    attribute.push({ name: 'activation_alpha', type: AType.FLOATS, floats: [...spec.activationAlpha] });
  if (spec.activationBeta)
    attribute.push({ name: 'activation_beta', type: AType.FLOATS, floats: [...spec.activationBeta] });
  if (spec.inputForget !== undefined)
    attribute.push({ name: 'input_forget', type: AType.INT, i: spec.inputForget });
  const model: OnnxTypes.IModelProto = {
    irVersion: 8,
    producerName: '@deerjs/onnx',
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: `${op.toLowerCase()}-model`,
      node: [{ name: spec.nodeName ?? op, opType: op, input: nodeInputs, output: outputNames, attribute }],
      initializer: initializers,
      input: inputs,
      output: [
        valueInfo('Y', layout === 0 ? [Td, nd, Bd, n] : [Bd, Td, nd, n]),
        ...outputNames.slice(1).map((name) => valueInfo(name, stateDims)),
      ],
    },
  };
  return onnx.ModelProto.encode(onnx.ModelProto.fromObject(model)).finish();
}

export interface RandomWeightsSpec {
  readonly op: RecurrentOp;
  readonly inputSize: number;
  readonly hiddenSize: number;
  readonly direction?: Direction;
  readonly seed?: number;
  /** Values are uniform in ±scale; default 1/√hiddenSize (PyTorch's init). */
  readonly scale?: number;
  /** LSTM: also draw peephole weights P [nd, 3·n]. */
  readonly peephole?: boolean;
}

/** Seeded random weights (core's Rng) in the shapes `buildRecurrentModel` expects. */
export function randomRecurrentWeights(spec: RandomWeightsSpec): {
  W: Float32Array;
  R: Float32Array;
  B: Float32Array;
  P?: Float32Array;
} {
  checkSpec('randomRecurrentWeights', spec);
  if (spec.scale !== undefined && !(Number.isFinite(spec.scale) && spec.scale >= 0))
    throw new InvalidArgumentError(
      'randomRecurrentWeights spec.scale',
      'a finite number ≥ 0',
      describeValue(spec.scale),
    );
  const { op, inputSize: m, hiddenSize: n } = spec;
  const nd = spec.direction === 'bidirectional' ? 2 : 1;
  const k = GATES[op];
  const rng = new Rng(spec.seed ?? 0);
  const s = spec.scale ?? 1 / Math.sqrt(n);
  const draw = (size: number) => Float32Array.from(rng.uniformArray(size, -s, s));
  const w = { W: draw(nd * k * n * m), R: draw(nd * k * n * n), B: draw(nd * 2 * k * n) };
  return spec.peephole ? { ...w, P: draw(nd * 3 * n) } : w;
}

const isNumbers = (v: unknown): v is ArrayLike<number> =>
  (Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView))) &&
  Array.prototype.every.call(v, (x: unknown) => typeof x === 'number');
