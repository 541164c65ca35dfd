import { OnnxUnsupportedError } from './errors.js';
import { type OnnxTypes, onnx, toInt } from './proto.js';
import { decodeUtf8 } from './text.js';

export type RecurrentOp = 'GRU' | 'LSTM' | 'RNN';
export type Direction = 'forward' | 'reverse' | 'bidirectional';

export const RECURRENT_OPS: readonly RecurrentOp[] = ['GRU', 'LSTM', 'RNN'];

/** Gate blocks stacked in W and R: GRU z,r,h; LSTM i,o,f,c; RNN one. */
export const GATES: Readonly<Record<RecurrentOp, number>> = { GRU: 3, LSTM: 4, RNN: 1 };

const DEFAULT_ACTIVATIONS: Readonly<Record<RecurrentOp, readonly string[]>> = {
  GRU: ['sigmoid', 'tanh'],
  LSTM: ['sigmoid', 'tanh', 'tanh'],
  RNN: ['tanh'],
};

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
  /** Value names of the node's inputs; undefined where the optional input is absent. */
  readonly inputs: {
    readonly X: string;
    readonly W: string;
    readonly R: string;
    readonly B?: string;
    readonly sequence_lens?: string;
    readonly initial_h?: string;
    readonly initial_c?: string;
  };
  /** Value names of the node's outputs; undefined where not produced. */
  readonly outputs: { readonly Y?: string; readonly Y_h?: string; readonly Y_c?: string };
}

const AType = onnx.AttributeProto.AttributeType;

/** A display name for a node: its name, or `<op>#<index>`. */
export function nodeLabel(node: OnnxTypes.INodeProto, index: number): string {
  return node.name ? node.name : `${node.opType ?? '?'}#${index}`;
}

export function isRecurrentOp(op: string | null | undefined): op is RecurrentOp {
  return RECURRENT_OPS.includes(op as RecurrentOp);
}

/** Resolve a recurrent node's attributes; anything deerjs cannot run exactly throws OnnxUnsupportedError. */
export function parseRecurrentNode(node: OnnxTypes.INodeProto, index: number): RecurrentNode {
  const op = node.opType as RecurrentOp;
  const name = nodeLabel(node, index);
  const bad = (attribute: string, got: unknown, expected: string) =>
    new OnnxUnsupportedError(name, attribute, got, expected);
  const attrs = new Map<string, OnnxTypes.IAttributeProto>();
  for (const a of node.attribute ?? []) attrs.set(a.name ?? '', a);

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
  if (int('input_forget', 0) !== 0)
    throw bad('input_forget', int('input_forget', 0), '0 (coupled input-forget gates are not supported)');

  const activations = attrs.get('activations');
  if (activations) {
    const got = (activations.strings ?? []).map((s) => decodeUtf8(s));
    const expected = Array.from({ length: numDirections }, () => DEFAULT_ACTIVATIONS[op]).flat();
    const same = got.length === expected.length && got.every((g, i) => g.toLowerCase() === expected[i]);
    if (!same) throw bad('activations', got, `the defaults ${JSON.stringify(expected.map(titleCase))}`);
  }
  const known = new Set([
    'activations',
    'activation_alpha',
    'activation_beta',
    'clip',
    'direction',
    'hidden_size',
    'layout',
  ]);
  if (op === 'GRU') known.add('linear_before_reset');
  if (op === 'LSTM') known.add('input_forget');
  for (const [key, a] of attrs) {
    // alpha/beta parametrise other activations; the default Sigmoid/Tanh ignore them.
    if (!known.has(key)) throw bad(key, attrValue(a), `only ${[...known].join(', ')}`);
  }

  const ins = node.input ?? [];
  const opt = (i: number) => (ins[i] ? ins[i] : undefined);
  if (!opt(0) || !opt(1) || !opt(2)) throw bad('inputs', ins, 'X, W and R');
  if (op === 'LSTM' && opt(7)) throw bad('P', opt(7), 'no peephole weights (input P must be absent)');
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
    inputs: {
      X: ins[0]!,
      W: ins[1]!,
      R: ins[2]!,
      B: opt(3),
      sequence_lens: opt(4),
      initial_h: opt(5),
      initial_c: op === 'LSTM' ? opt(6) : undefined,
    },
    outputs: {
      Y: outs[0] || undefined,
      Y_h: outs[1] || undefined,
      Y_c: op === 'LSTM' ? outs[2] || undefined : undefined,
    },
  };
}

function titleCase(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function attrValue(a: OnnxTypes.IAttributeProto): unknown {
  switch (a.type) {
    case AType.INT:
      return toInt(a.i);
    case AType.FLOAT:
      return a.f;
    case AType.STRING:
      return decodeUtf8(a.s);
    case AType.INTS:
      return (a.ints ?? []).map((v) => toInt(v));
    case AType.FLOATS:
      return a.floats;
    case AType.STRINGS:
      return (a.strings ?? []).map((s) => decodeUtf8(s));
    default:
      return `<attribute type ${a.type}>`;
  }
}
