import { CellDefinitionError } from '../errors.js';
import type { BinaryFn, Graph, Node, NodeId, ParamSpec, UnaryFn } from './graph.js';
import { matrixLayout } from './graph.js';

/**
 * Appends nodes to a graph with structural sharing: asking twice for the same node returns the
 * same id. Derivative construction relies on that to keep the derived graphs small.
 */
export class GraphBuilder {
  readonly nodes: Node[];
  private readonly index = new Map<string, NodeId>();

  constructor(
    readonly stateSize: number,
    readonly inputSize: number,
    readonly params: readonly ParamSpec[],
    base: readonly Node[] = [],
  ) {
    this.nodes = [];
    for (const n of base) this.push(n);
  }

  static extend(graph: Graph): GraphBuilder {
    return new GraphBuilder(graph.stateSize, graph.inputSize, graph.params, graph.nodes);
  }

  graph(): Graph {
    return {
      nodes: [...this.nodes],
      stateSize: this.stateSize,
      inputSize: this.inputSize,
      params: this.params,
    };
  }

  size(id: NodeId): number {
    return this.node(id).size;
  }

  node(id: NodeId): Node {
    const n = this.nodes[id];
    if (!n) throw new CellDefinitionError('node', `a node id below ${this.nodes.length}`, String(id));
    return n;
  }

  private push(node: Node): NodeId {
    const key = JSON.stringify(node);
    const hit = this.index.get(key);
    if (hit !== undefined) return hit;
    const id = this.nodes.length;
    this.nodes.push(node);
    this.index.set(key, id);
    return id;
  }

  state(): NodeId {
    return this.push({ op: 'state', size: this.stateSize });
  }

  input(): NodeId {
    return this.push({ op: 'input', size: this.inputSize });
  }

  cotangent(size: number): NodeId {
    return this.push({ op: 'cotangent', size });
  }

  param(name: string): NodeId {
    const spec = this.params.find((p) => p.name === name);
    if (!spec) throw this.unknownParam(name);
    return this.push({ op: 'param', name, size: spec.size });
  }

  private unknownParam(name: string): CellDefinitionError {
    return new CellDefinitionError(
      'param',
      `one of ${this.params.map((p) => `'${p.name}'`).join(', ') || 'no params'}`,
      `'${name}'`,
    );
  }

  constant(values: readonly number[]): NodeId {
    if (values.length === 0)
      throw new CellDefinitionError('constant', 'at least one value', 'an empty array');
    for (const v of values) {
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw new CellDefinitionError('constant', 'finite numbers', String(v));
      }
    }
    return this.push({ op: 'const', values: [...values], size: values.length });
  }

  scalar(v: number): NodeId {
    return this.constant([v]);
  }

  /** The constant value of a node if it is a constant with all entries equal, else undefined. */
  uniformConstant(id: NodeId): number | undefined {
    const n = this.node(id);
    if (n.op !== 'const') return undefined;
    const v = n.values[0]!;
    return n.values.every((x) => x === v) ? v : undefined;
  }

  unary(fn: UnaryFn, a: NodeId): NodeId {
    return this.push({ op: 'unary', fn, a, size: this.size(a) });
  }

  binary(fn: BinaryFn, a: NodeId, b: NodeId): NodeId {
    const sa = this.size(a);
    const sb = this.size(b);
    if (sa !== sb && sa !== 1 && sb !== 1) {
      throw new CellDefinitionError(
        `${fn}`,
        'operands of equal size (or one of size 1, which broadcasts)',
        `sizes ${sa} and ${sb}`,
      );
    }
    const size = Math.max(sa, sb);
    const ca = this.uniformConstant(a);
    const cb = this.uniformConstant(b);
    // Light algebraic simplification keeps derived graphs small; each rule is exact.
    if (fn === 'add') {
      if (ca === 0 && sb === size) return b;
      if (cb === 0 && sa === size) return a;
    } else if (fn === 'sub') {
      if (cb === 0 && sa === size) return a;
      if (ca === 0 && sb === size) return this.unary('neg', b);
    } else if (fn === 'mul') {
      if (ca === 1 && sb === size) return b;
      if (cb === 1 && sa === size) return a;
    } else if (fn === 'div') {
      if (cb === 1 && sa === size) return a;
    }
    return this.push({ op: 'binary', fn, a, b, size });
  }

  add(a: NodeId, b: NodeId): NodeId {
    return this.binary('add', a, b);
  }
  sub(a: NodeId, b: NodeId): NodeId {
    return this.binary('sub', a, b);
  }
  mul(a: NodeId, b: NodeId): NodeId {
    return this.binary('mul', a, b);
  }
  div(a: NodeId, b: NodeId): NodeId {
    return this.binary('div', a, b);
  }
  min(a: NodeId, b: NodeId): NodeId {
    return this.binary('min', a, b);
  }
  max(a: NodeId, b: NodeId): NodeId {
    return this.binary('max', a, b);
  }

  matvec(param: string, v: NodeId, transpose = false): NodeId {
    const spec = this.params.find((p) => p.name === param);
    if (!spec) throw this.unknownParam(param);
    const fn = transpose ? 'matvecT' : 'matvec';
    if (spec.shape.length !== 2 && spec.shape.length !== 3) {
      throw new CellDefinitionError(
        `${fn}(${param}, v): ${param}`,
        'a matrix param of shape [rows, cols] or [blocks, rows, cols]',
        `shape [${spec.shape.join(', ')}]`,
      );
    }
    const { blocks, rows, cols } = matrixLayout(spec);
    const inSize = blocks * (transpose ? rows : cols);
    const outSize = blocks * (transpose ? cols : rows);
    if (this.size(v) !== inSize) {
      throw new CellDefinitionError(
        `${fn}(${param}, v): v`,
        `a vector of size ${inSize} (${param} has shape [${spec.shape.join(', ')}])`,
        `size ${this.size(v)}`,
      );
    }
    return this.push({ op: 'matvec', param, v, transpose, size: outSize });
  }

  slice(a: NodeId, start: number, size: number): NodeId {
    const sa = this.size(a);
    if (!Number.isInteger(start) || !Number.isInteger(size) || start < 0 || size < 1 || start + size > sa) {
      throw new CellDefinitionError(
        `slice(v, ${start}, ${size})`,
        `integers start ≥ 0 and size ≥ 1 with start + size ≤ ${sa} (the size of v)`,
        `start ${start}, size ${size}`,
      );
    }
    if (start === 0 && size === sa) return a;
    return this.push({ op: 'slice', a, start, size });
  }

  concat(parts: readonly NodeId[]): NodeId {
    if (parts.length === 0) throw new CellDefinitionError('concat', 'at least one vector', 'none');
    if (parts.length === 1) return parts[0]!;
    const size = parts.reduce((s, p) => s + this.size(p), 0);
    return this.push({ op: 'concat', parts: [...parts], size });
  }

  sum(a: NodeId): NodeId {
    if (this.size(a) === 1) return a;
    return this.push({ op: 'sum', a, size: 1 });
  }

  /** Broadcast a size-1 node to `size` (as a multiplication by a constant vector of ones). */
  broadcast(a: NodeId, size: number): NodeId {
    if (this.size(a) === size) return a;
    return this.mul(a, this.constant(new Array<number>(size).fill(1)));
  }

  /** Sum of a vector and a scalar or of two vectors, collapsing nulls (meaning zero). */
  addMaybe(a: NodeId | null, b: NodeId | null): NodeId | null {
    if (a === null) return b;
    if (b === null) return a;
    return this.add(a, b);
  }
}
