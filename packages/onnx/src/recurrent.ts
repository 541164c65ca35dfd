import { type ActivationName, cells } from '@deerjs/core';
import { OnnxFormatError, OnnxUnsupportedError } from './errors.js';
import { attrValue, type OnnxTypes, onnx, toInt } from './proto.js';
import { decodeUtf8 } from './text.js';

export type RecurrentOp = 'GRU' | 'LSTM' | 'RNN';
export type Direction = 'forward' | 'reverse' | 'bidirectional';

export const RECURRENT_OPS: readonly RecurrentOp[] = ['GRU', 'LSTM', 'RNN'];

/** Gate blocks stacked in W and R: GRU z,r,h; LSTM i,o,f,c; RNN one. */
export const GATES: Readonly<Record<RecurrentOp, number>> = { GRU: 3, LSTM: 4, RNN: 1 };

const DEFAULT_ACTIVATIONS: Readonly<Record<RecurrentOp, readonly ActivationName[]>> = {
  GRU: ['Sigmoid', 'Tanh'],
  LSTM: ['Sigmoid', 'Tanh', 'Tanh'],
  RNN: ['Tanh'],
};

/** Which activations read α and β (onnxruntime's table; the spec names the same ones). */
const TAKES: Readonly<Record<ActivationName, readonly [boolean, boolean]>> = {
  Sigmoid: [false, false],
  Tanh: [false, false],
  Relu: [false, false],
  LeakyRelu: [true, false],
  ThresholdedRelu: [true, false],
  ScaledTanh: [true, true],
  HardSigmoid: [true, true],
  Elu: [true, false],
  Softsign: [false, false],
  Softplus: [false, false],
  Affine: [true, true],
};

/**
 * α and β where activation_alpha/activation_beta run out (onnxruntime's defaults; the spec gives
 * none, and onnxruntime uses 0 for the activations not listed here).
 */
const ORT_DEFAULTS: Partial<Record<ActivationName, readonly [number, number]>> = {
  LeakyRelu: [0.01, 0],
  HardSigmoid: [0.2, 0.5],
  Elu: [1, 0],
};

/** One activation of a node, resolved: its name and the α, β it reads. */
export interface NodeActivation {
  readonly name: ActivationName;
  readonly alpha?: number;
  readonly beta?: number;
}

/** A GRU, LSTM or RNN node of an ONNX graph, with its attributes resolved. */
export interface RecurrentNode {
  /** The node's name, or `<op>#<index in the graph>` when it has none. */
  readonly name: string;
  readonly op: RecurrentOp;
  /** From hidden_size; undefined when the attribute is absent (then taken from R's dims at run time). */
  readonly hiddenSize: number | undefined;
  readonly direction: Direction;
  readonly numDirections: 1 | 2;
  readonly layout: 0 | 1;
  /** GRU only (0 for the other ops). */
  readonly linearBeforeReset: 0 | 1;
  /** Cell clip: gate pre-activations are clamped to [−clip, clip]. */
  readonly clip: number | undefined;
  /** Per direction, the op's activations (GRU f, g; LSTM f, g, h; RNN f) with α and β resolved. */
  readonly activations: readonly (readonly NodeActivation[])[];
  /** LSTM `input_forget = 1`: coupled input and forget gates. */
  readonly inputForget: boolean;
  /** Value names of the node's inputs; undefined where the optional input is absent. */
  readonly inputs: {
    readonly X: string;
    readonly W: string;
    readonly R: string;
    readonly B?: string;
    readonly sequence_lens?: string;
    readonly initial_h?: string;
    readonly initial_c?: string;
    /** LSTM peephole weights [nd, 3n]. */
    readonly P?: string;
  };
  /** Value names of the node's outputs; undefined where not produced. */
  readonly outputs: { readonly Y?: string; readonly Y_h?: string; readonly Y_c?: string };
}

const AType = onnx.AttributeProto.AttributeType;

/** The type each attribute of the recurrent ops must have. */
const ATTRIBUTE_TYPES: Readonly<Record<string, number>> = {
  activation_alpha: AType.FLOATS,
  activation_beta: AType.FLOATS,
  activations: AType.STRINGS,
  clip: AType.FLOAT,
  direction: AType.STRING,
  hidden_size: AType.INT,
  input_forget: AType.INT,
  layout: AType.INT,
  linear_before_reset: AType.INT,
};

/** A display name for a node: its name, or `<op>#<index>`. */
export function nodeLabel(node: OnnxTypes.INodeProto, index: number): string {
  return node.name ? node.name : `${node.opType ?? '?'}#${index}`;
}

export function isRecurrentOp(op: string | null | undefined): op is RecurrentOp {
  return RECURRENT_OPS.includes(op as RecurrentOp);
}

/** Resolve a recurrent node's attributes; anything deerjs cannot run exactly throws OnnxUnsupportedError. */
export function parseRecurrentNode(node: OnnxTypes.INodeProto, index: number, opset: number): RecurrentNode {
  const op = node.opType as RecurrentOp;
  const name = nodeLabel(node, index);
  const bad = (attribute: string, got: unknown, expected: string) =>
    new OnnxUnsupportedError(name, attribute, got, expected);
  const attrs = new Map<string, OnnxTypes.IAttributeProto>();
  for (const a of node.attribute ?? []) {
    const key = a.name ?? '';
    if (attrs.has(key)) throw new OnnxFormatError(`node '${name}': attribute '${key}' appears twice`);
    const want = ATTRIBUTE_TYPES[key];
    // An attribute without a type field (old exporters) is read by its name alone.
    if (want !== undefined && a.type !== undefined && a.type !== null && a.type !== 0 && a.type !== want) {
      const typeName = (t: number) => AType[t] ?? String(t);
      throw bad(key, `an attribute of type ${typeName(a.type)}`, `an attribute of type ${typeName(want)}`);
    }
    attrs.set(key, a);
  }

  const int = (key: string, fallback: number) => {
    const a = attrs.get(key);
    return a ? toInt(a.i) : fallback;
  };
  const direction = (attrs.has('direction') ? decodeUtf8(attrs.get('direction')!.s) : 'forward') as Direction;
  if (!['forward', 'reverse', 'bidirectional'].includes(direction)) {
    throw bad('direction', direction, "'forward', 'reverse' or 'bidirectional'");
  }
  const numDirections = direction === 'bidirectional' ? 2 : 1;
  const layout = int('layout', 0);
  if (layout !== 0 && layout !== 1) throw bad('layout', layout, '0 or 1');
  const lbr = int('linear_before_reset', 0);
  if (lbr !== 0 && lbr !== 1) throw bad('linear_before_reset', lbr, '0 or 1');
  const hidden = attrs.has('hidden_size') ? int('hidden_size', 0) : undefined;
  if (hidden !== undefined && !(hidden >= 1)) throw bad('hidden_size', hidden, 'a positive integer');
  let clip: number | undefined;
  if (attrs.has('clip')) {
    clip = attrs.get('clip')!.f ?? 0;
    if (!(clip > 0) || !Number.isFinite(clip)) throw bad('clip', clip, 'a finite number > 0');
  }
  const inputForget = op === 'LSTM' ? int('input_forget', 0) : 0;
  if (inputForget !== 0 && inputForget !== 1) throw bad('input_forget', inputForget, '0 or 1');

  const perDirection = DEFAULT_ACTIVATIONS[op].length;
  const floats = (key: string): number[] => {
    const a = attrs.get(key);
    if (!a) return [];
    const v = (a.floats ?? []).map(Number);
    if (a.type !== undefined && a.type !== null && a.type !== AType.FLOATS && a.type !== 0)
      throw bad(key, attrValue(a), 'a list of floats');
    if (!v.every(Number.isFinite)) throw bad(key, v, 'finite floats');
    return v;
  };
  const alphas = floats('activation_alpha');
  const betas = floats('activation_beta');
  let names: ActivationName[];
  const activationsAttr = attrs.get('activations');
  if (activationsAttr) {
    let got = (activationsAttr.strings ?? []).map((s) => decodeUtf8(s));
    // The RNN schema's default lists two names even for one direction (converters write it out);
    // onnxruntime runs such a node with the first, and so does deerjs.
    if (op === 'RNN' && numDirections === 1 && got.length === 2) {
      if (got.some((g) => cells.activationName(g) === undefined))
        throw bad('activations', got, `names from ${cells.ACTIVATION_NAMES.join(', ')}`);
      got = got.slice(0, 1);
    }
    if (got.length !== perDirection * numDirections) {
      throw bad('activations', got, `${perDirection * numDirections} names (${perDirection} per direction)`);
    }
    names = got.map((g) => {
      const name = cells.activationName(g);
      if (name === undefined)
        throw bad('activations', got, `names from ${cells.ACTIVATION_NAMES.join(', ')}`);
      return name;
    });
  } else {
    names = Array.from({ length: numDirections }, () => DEFAULT_ACTIVATIONS[op]).flat();
  }
  // α and β are consumed in the order of the activations, by those that read them.
  let ai = 0;
  let bi = 0;
  const resolved: NodeActivation[] = names.map((name) => {
    const [takesAlpha, takesBeta] = TAKES[name];
    const [da, db] = ORT_DEFAULTS[name] ?? [0, 0];
    const out: { name: ActivationName; alpha?: number; beta?: number } = { name };
    if (takesAlpha) out.alpha = ai < alphas.length ? alphas[ai++]! : da;
    if (takesBeta) out.beta = bi < betas.length ? betas[bi++]! : db;
    return out;
  });
  const activations = Array.from({ length: numDirections }, (_, d) =>
    resolved.slice(d * perDirection, (d + 1) * perDirection),
  );

  const known = new Set([
    'activations',
    'activation_alpha',
    'activation_beta',
    'clip',
    'direction',
    'hidden_size',
  ]);
  // The operator sets before 14 have no `layout` (onnxruntime refuses such a model as invalid).
  if (opset >= 14) known.add('layout');
  if (op === 'GRU') known.add('linear_before_reset');
  if (op === 'LSTM') known.add('input_forget');
  for (const [key, a] of attrs) {
    // alpha/beta parametrise other activations; the default Sigmoid/Tanh ignore them.
    if (!known.has(key))
      throw bad(key, attrValue(a), `only ${[...known].join(', ')}${key === 'layout' ? ` (layout exists from opset 14; the model imports opset ${opset})` : ''}`);
  }

  const ins = node.input ?? [];
  const opt = (i: number) => (ins[i] ? ins[i] : undefined);
  if (!opt(0) || !opt(1) || !opt(2)) throw bad('inputs', ins, 'X, W and R');
  if (ins.length > (op === 'LSTM' ? 8 : 6))
    throw bad('inputs', ins, `at most ${op === 'LSTM' ? 8 : 6} inputs`);
  const outs = node.output ?? [];
  return {
    name,
    op,
    hiddenSize: hidden,
    direction,
    numDirections,
    layout,
    linearBeforeReset: op === 'GRU' ? lbr : 0,
    clip,
    activations,
    inputForget: inputForget === 1,
    inputs: {
      X: ins[0]!,
      W: ins[1]!,
      R: ins[2]!,
      B: opt(3),
      sequence_lens: opt(4),
      initial_h: opt(5),
      initial_c: op === 'LSTM' ? opt(6) : undefined,
      P: op === 'LSTM' ? opt(7) : undefined,
    },
    outputs: {
      Y: outs[0] || undefined,
      Y_h: outs[1] || undefined,
      Y_c: op === 'LSTM' ? outs[2] || undefined : undefined,
    },
  };
}

