/**
 * The cell IR: a graph of per-step vector values. Every node is a vector of `size` numbers that is
 * computed once per (batch, time) element. Backends compile this graph (and the Jacobian
 * expressions in `matexpr.ts`) to their own kernels; nothing in it is cell-specific.
 */

import { CellDefinitionError, describeValue, InvalidArgumentError } from '../errors.js';

export type NodeId = number;

export type UnaryFn =
  | 'neg'
  | 'sigmoid'
  | 'tanh'
  | 'exp'
  | 'log'
  | 'softplus'
  | 'relu'
  | 'step'
  | 'sin'
  | 'cos'
  | 'square'
  | 'sqrt'
  | 'abs'
  | 'sign';

/** Elementwise binary functions; `min` and `max` return an operand exactly (no arithmetic). */
export type BinaryFn = 'add' | 'sub' | 'mul' | 'div' | 'min' | 'max';

export const BINARY_FNS: readonly BinaryFn[] = ['add', 'sub', 'mul', 'div', 'min', 'max'];

export const UNARY_FNS: readonly UnaryFn[] = [
  'neg',
  'sigmoid',
  'tanh',
  'exp',
  'log',
  'softplus',
  'relu',
  'step',
  'sin',
  'cos',
  'square',
  'sqrt',
  'abs',
  'sign',
];

/**
 * A parameter's layout. `dense` [rows, cols] multiplies a vector of length cols. `block`
 * [blocks, rows, cols] is block-diagonal: block k maps input slice k (length cols) to output slice
 * k (length rows). Any param may also be read as a flat vector (a bias).
 */
export interface ParamSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly size: number;
}

export type Node =
  | { readonly op: 'state'; readonly size: number }
  | { readonly op: 'input'; readonly size: number }
  /** The upstream gradient of the step output (only in VJP graphs). */
  | { readonly op: 'cotangent'; readonly size: number }
  | { readonly op: 'param'; readonly name: string; readonly size: number }
  | { readonly op: 'const'; readonly values: readonly number[]; readonly size: number }
  | { readonly op: 'unary'; readonly fn: UnaryFn; readonly a: NodeId; readonly size: number }
  /** Elementwise; an operand of size 1 broadcasts. */
  | {
      readonly op: 'binary';
      readonly fn: BinaryFn;
      readonly a: NodeId;
      readonly b: NodeId;
      readonly size: number;
    }
  /** W·v, or Wᵀ·v when `transpose`; W is the named dense or block param. */
  | {
      readonly op: 'matvec';
      readonly param: string;
      readonly v: NodeId;
      readonly transpose: boolean;
      readonly size: number;
    }
  | { readonly op: 'slice'; readonly a: NodeId; readonly start: number; readonly size: number }
  | { readonly op: 'concat'; readonly parts: readonly NodeId[]; readonly size: number }
  | { readonly op: 'sum'; readonly a: NodeId; readonly size: 1 };

/** A traced graph. Nodes are in topological order: every operand precedes its user. */
export interface Graph {
  readonly nodes: readonly Node[];
  readonly stateSize: number;
  readonly inputSize: number;
  readonly params: readonly ParamSpec[];
}

/** The node ids a node reads. */
export function operands(node: Node): readonly NodeId[] {
  switch (node.op) {
    case 'unary':
    case 'slice':
    case 'sum':
      return [node.a];
    case 'binary':
      return [node.a, node.b];
    case 'matvec':
      return [node.v];
    case 'concat':
      return node.parts;
    default:
      return [];
  }
}

/** Dense [rows, cols] or block [blocks, rows, cols] dimensions of a matrix param. */
export interface MatrixLayout {
  readonly blocks: number;
  readonly rows: number;
  readonly cols: number;
}

export function matrixLayout(spec: ParamSpec): MatrixLayout {
  const s = spec.shape;
  if (s.length === 2) return { blocks: 1, rows: s[0]!, cols: s[1]! };
  if (s.length === 3) return { blocks: s[0]!, rows: s[1]!, cols: s[2]! };
  throw new CellDefinitionError(
    `param ${spec.name}`,
    'a matrix of shape [rows, cols] or [blocks, rows, cols]',
    `shape [${s.join(', ')}]`,
  );
}

export function paramSpec(graph: Graph, name: string): ParamSpec {
  const p = graph.params.find((q) => q.name === name);
  if (!p)
    throw new CellDefinitionError(
      'param',
      `one of the cell's params (${graph.params.map((q) => q.name).join(', ')})`,
      `'${name}'`,
    );
  return p;
}

/**
 * Ids of the nodes needed to compute `roots` (inclusive), in topological order; nodes in `cut` are
 * included but not descended below (their values come from elsewhere).
 */
export function liveNodes(graph: Graph, roots: readonly NodeId[], cut?: { has(id: NodeId): boolean }): NodeId[] {
  const live = new Uint8Array(graph.nodes.length);
  for (const id of roots) {
    if (!Number.isInteger(id) || id < 0 || id >= graph.nodes.length)
      throw new InvalidArgumentError('root node', `a node id of this graph (0 … ${graph.nodes.length - 1})`, describeValue(id));
  }
  const stack = [...roots];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (live[id]) continue;
    live[id] = 1;
    if (cut?.has(id)) continue;
    for (const o of operands(graph.nodes[id]!)) stack.push(o);
  }
  const out: NodeId[] = [];
  for (let i = 0; i < live.length; i++) if (live[i]) out.push(i);
  return out;
}

/**
 * The nodes needed for `roots` split by what they read. `inputOnly`: live nodes that read the
 * input but neither the state nor the cotangent (the input leaf included) — work a backend may do
 * once per input instead of once per Newton iteration — and the parameter-only nodes they read.
 * `rest`: live nodes that read the state or the cotangent, and nodes made from parameters and constants alone (a slice of a bias): the same
 * for every element, so not worth a value per element in a hoisted buffer. `frontier`: the
 * input-only nodes that `rest` or `roots` read, i.e. what the input-only part must hand over.
 */
export function splitInputOnly(
  graph: Graph,
  roots: readonly NodeId[],
): { live: NodeId[]; inputOnly: NodeId[]; rest: NodeId[]; frontier: NodeId[] } {
  const live = liveNodes(graph, roots);
  const dep = new Uint8Array(graph.nodes.length);
  const reads = new Uint8Array(graph.nodes.length);
  for (const id of live) {
    const node = graph.nodes[id]!;
    dep[id] = node.op === 'state' || node.op === 'cotangent' || operands(node).some((o) => dep[o]) ? 1 : 0;
    reads[id] = node.op === 'input' || operands(node).some((o) => reads[o]) ? 1 : 0;
  }
  const constant = (id: NodeId) => graph.nodes[id]!.op === 'param' || graph.nodes[id]!.op === 'const';
  const handed = (id: NodeId) => !dep[id] && reads[id] === 1;
  // Parameter-only nodes that input-only ones read (exp(b) in W·x + exp(b)) are made there too: the
  // input-only part runs on its own, before the rest.
  const needed = new Uint8Array(graph.nodes.length);
  for (let k = live.length - 1; k >= 0; k--) {
    const id = live[k]!;
    if (!handed(id) && !needed[id]) continue;
    for (const o of operands(graph.nodes[id]!)) if (!dep[o] && !reads[o] && !constant(o)) needed[o] = 1;
  }
  const inputOnly = live.filter((id) => handed(id) || needed[id] === 1);
  const rest = live.filter((id) => dep[id] || (!reads[id] && !constant(id)));
  const frontier = new Set<NodeId>();
  for (const id of rest) for (const o of operands(graph.nodes[id]!)) if (handed(o)) frontier.add(o);
  for (const id of roots) if (handed(id)) frontier.add(id);
  return { live, inputOnly, rest, frontier: [...frontier].sort((x, y) => x - y) };
}
