import {
  type Graph,
  liveNodes,
  matrixLayout,
  type Node,
  type NodeId,
  operands,
  paramSpec,
  type UnaryFn,
} from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import { binaryVec, cutColumns, expandRows, keepNaN, sumVecs, type Vec } from './broadcast.js';
import { hostMatvec, hostUnary } from './host.js';
import type { Tf } from './tensor.js';

type T = tfc.Tensor;

/** What one evaluation of a step graph reads: every per-element tensor is [rows, size]. */
export interface StepEnv {
  readonly rows: number;
  readonly state: T;
  readonly input?: T;
  readonly cotangent?: T;
  /** Flat parameter tensors by name. */
  readonly params: Readonly<Record<string, T>>;
}

export interface VectorOptions {
  /** Cut column ranges of [rows, size] tensors with a gather (tfjs cpu; see `cutColumns`). */
  readonly cutByGather: boolean;
  /** Tensor data is a JavaScript typed array (tfjs cpu): elementwise ops as host loops (host.ts). */
  readonly hostLoops?: boolean;
}

export interface VectorPlan {
  /** 1 where the node varies per element (reads the state, the input or the cotangent). */
  readonly perElement: Uint8Array;
  /**
   * Whether some nodes depend on the input and params only (not the state or cotangent) and are
   * read by nodes that do: their values can be kept across evaluations with the same input and
   * params, by any program (they are keyed by what they compute, not by node id).
   */
  readonly hoistable: boolean;
  /**
   * The nodes' values for one evaluation, computed on demand, starting from `known` input-only
   * values; what it computes of those is added to `known` (the caller keeps or drops them). Call
   * inside tf.tidy.
   */
  bind(env: StepEnv, known?: Map<string, Vec>): (id: NodeId) => Vec;
}

const UNARY: Record<UnaryFn, (tf: Tf, a: T) => T> = {
  neg: (tf, a) => tf.neg(a),
  sigmoid: (tf, a) => tf.sigmoid(a),
  tanh: (tf, a) => tf.tanh(a),
  exp: (tf, a) => tf.exp(a),
  log: (tf, a) => tf.log(a),
  softplus: (tf, a) => tf.softplus(a),
  relu: (tf, a) => keepNaN(tf, tf.relu(a), a),
  step: (tf, a) => tf.step(a, 0),
  sin: (tf, a) => tf.sin(a),
  cos: (tf, a) => tf.cos(a),
  square: (tf, a) => tf.square(a),
  sqrt: (tf, a) => tf.sqrt(a),
  abs: (tf, a) => tf.abs(a),
  sign: (tf, a) => keepNaN(tf, tf.sign(a), a),
};

/** Ops whose column range can be computed from column ranges of their operands (or of a param). */
const SLICEABLE = new Set<Node['op']>(['unary', 'binary', 'matvec', 'param', 'const', 'concat']);

/**
 * Compile the vector part of a step graph. Each node is a [rows, size] tensor, or [size] when it
 * does not vary per element. A slice of a node that is only ever read through slices (a GRU's gate
 * pre-activations W·x + b, cut in three) is computed as the slice: the matvec takes the param's rows,
 * the bias its range, so no [rows, 3n] tensor is built and cut column-wise.
 */
export function compileVectors(tf: Tf, g: Graph, roots: readonly NodeId[], opts: VectorOptions): VectorPlan {
  const live = liveNodes(g, roots);
  const perElement = new Uint8Array(g.nodes.length);
  const stateful = new Uint8Array(g.nodes.length);
  for (const id of live) {
    const node = g.nodes[id]!;
    if (node.op === 'state' || node.op === 'cotangent') stateful[id] = 1;
    else if (operands(node).some((o) => stateful[o])) stateful[id] = 1;
    if (node.op === 'state' || node.op === 'input' || node.op === 'cotangent') perElement[id] = 1;
    else if (operands(node).some((o) => perElement[o])) perElement[id] = 1;
  }
  // Input-only values are keyed by the expression they compute (shared by every program on the
  // same input and params); the ones worth keeping are those read by a root or a stateful node.
  const exprKeys: string[] = [];
  const frontier = new Uint8Array(g.nodes.length);
  for (const r of roots) frontier[r] = 1;
  for (const id of live) {
    const node = g.nodes[id]!;
    if (stateful[id]) for (const o of operands(node)) frontier[o] = 1;
    if (!stateful[id]) exprKeys[id] = exprKey(g, node, exprKeys);
  }
  const keptKey = (id: NodeId) =>
    frontier[id] && perElement[id] && !stateful[id] && g.nodes[id]!.op !== 'input' ? exprKeys[id] : undefined;
  const keepsNodes = live.some((id) => keptKey(id) !== undefined);
  // Which nodes are wanted whole (full) and which only as column ranges (sliced), from the roots
  // back; ids are topological, so every user is seen before its operands.
  const full = new Uint8Array(g.nodes.length);
  const sliced = new Uint8Array(g.nodes.length);
  const bounds = segmentBounds(g, live);
  for (const r of roots) full[r] = 1;
  for (let k = live.length - 1; k >= 0; k--) {
    const id = live[k]!;
    const node = g.nodes[id]!;
    if (!full[id] && !sliced[id]) continue;
    if (node.op === 'slice' || (node.op === 'binary' && bounds[id])) {
      for (const o of operands(node)) sliced[o] = 1;
    } else if (full[id] || !SLICEABLE.has(node.op)) for (const o of operands(node)) full[o] = 1;
    else if (node.op === 'matvec') {
      if (matrixLayout(paramSpec(g, node.param)).blocks === 1) full[node.v] = 1;
      else sliced[node.v] = 1;
    } else for (const o of operands(node)) (g.nodes[o]!.size === 1 ? full : sliced)[o] = 1;
  }

  // Sums: an add whose operands are adds read by nothing else is one sum of all their terms, so
  // the terms of one shape go through one AddN, and in a stateful sum the terms that do not depend
  // on the state (W·x slices, biases) are added first, once, and kept with the input-only values.
  const users = new Uint8Array(g.nodes.length);
  for (const r of roots) users[r] = 2;
  for (const id of live) for (const o of operands(g.nodes[id]!)) users[o] = Math.min(2, users[o]! + 1);
  const isAdd = (id: NodeId) => {
    const node = g.nodes[id]!;
    return node.op === 'binary' && node.fn === 'add' && !bounds[id];
  };
  const sumTerms: (NodeId[] | undefined)[] = [];
  const termsOf = (id: NodeId, size: number): NodeId[] => {
    const node = g.nodes[id]!;
    if (users[id] !== 1 || !isAdd(id) || node.size !== size || node.op !== 'binary') return [id];
    return [...termsOf(node.a, size), ...termsOf(node.b, size)];
  };
  for (const id of live) {
    const node = g.nodes[id]!;
    if (!isAdd(id) || node.op !== 'binary') continue;
    const terms = [...termsOf(node.a, node.size), ...termsOf(node.b, node.size)];
    if (terms.length > 2 || (stateful[id] && terms.some((t) => !stateful[t]))) sumTerms[id] = terms;
  }
  const keepsSums = sumTerms.some(
    (terms, id) => terms && stateful[id] && terms.filter((t) => !stateful[t] && perElement[t]).length > 0,
  );
  const hoistable = keepsNodes || keepsSums;
  /** The key of the kept sum of input-only terms (interned like the nodes' keys). */
  const partialKey = (terms: readonly NodeId[]) => internKey(`addn(${terms.map((t) => exprKeys[t]).join(',')})`);

  const host = opts.hostLoops ?? false;
  const unary = (fn: UnaryFn, t: T) => (host ? hostUnary(tf, fn, t) : null) ?? UNARY[fn](tf, t);

  return {
    perElement,
    hoistable,
    bind(env, known) {
      const values: Vec[] = [];
      const ranges = new Map<string, Vec>();
      /** The kept value under `key` (of node id, columns [start, start + size)), if any. */
      const recall = (id: NodeId, suffix: string) => {
        const k = keptKey(id);
        return k === undefined ? undefined : known?.get(k + suffix);
      };
      const remember = (id: NodeId, suffix: string, v: Vec) => {
        const k = keptKey(id);
        if (k !== undefined && known && !known.has(k + suffix)) known.set(k + suffix, v);
      };
      /**
       * A node's value; `rows`: whether t holds a row per element. That follows from the operands'
       * values, not from the node's static flag: a slice of a concat can fall on a constant part
       * (a 1-D tensor) of a node that is per element.
       */
      const vec = (id: NodeId, t: T, rows = perElement[id] === 1): Vec => ({ t, perElement: rows, size: g.nodes[id]!.size });
      const get = (id: NodeId): Vec => {
        let v = values[id];
        if (!v) {
          v = recall(id, '') ?? wholeNode(id);
          remember(id, '', v);
          values[id] = v;
        }
        return v;
      };
      /** Columns [start, start + size) of a per-element tensor, or entries of a constant one. */
      const cut = (v: Vec, start: number, size: number): T =>
        v.perElement ? cutColumns(tf, v.t, start, size, opts.cutByGather) : tf.slice(v.t, start, size);
      const range = (id: NodeId, start: number, size: number): Vec => {
        const node = g.nodes[id]!;
        if (start === 0 && size === node.size) return get(id);
        const key = `${id}:${start}:${size}`;
        let v = ranges.get(key) ?? recall(id, `[${start}:${size}]`);
        if (!v) {
          const pushed = (full[id] && !bounds[id]) || values[id] ? null : rangeOf(node, start, size);
          const whole = pushed ? undefined : get(id);
          v = pushed ?? { t: cut(whole!, start, size), perElement: whole!.perElement, size, uniform: whole!.uniform };
          remember(id, `[${start}:${size}]`, v);
        }
        ranges.set(key, v);
        return v;
      };
      const matvec = (node: Extract<Node, { op: 'matvec' }>, x: Vec, W: T, blocks: number): T => {
        const { rows, cols } = matrixLayout(paramSpec(g, node.param));
        const R = x.perElement ? env.rows : 1;
        if (host) {
          const y = hostMatvec(tf, x.t, R, W, blocks, rows, cols, node.transpose);
          return x.perElement ? y : tf.reshape(y, [y.size]);
        }
        const xt = tf.reshape(x.t, blocks === 1 ? [R, x.size] : [R, blocks, 1, x.size / blocks]);
        // A block param multiplies each element's block k by W[k]: a broadcast batched matMul
        // ([R, blocks] against [blocks]), no transposes.
        const y = tf.matMul(xt, tf.reshape(W, blocks === 1 ? [rows, cols] : [blocks, rows, cols]), false, !node.transpose);
        const size = y.size / R;
        return tf.reshape(y, x.perElement ? [R, size] : [size]);
      };
      /** Columns [start, start + size) of a node wanted only in ranges, or null to cut the whole. */
      const rangeOf = (node: Node, start: number, size: number): Vec | null => {
        const of = (t: T | null, rows: boolean): Vec | null => t && { t, perElement: rows, size };
        switch (node.op) {
          case 'unary': {
            const a = range(node.a, start, size);
            return of(unary(node.fn, a.t), a.perElement);
          }
          case 'binary': {
            const part = (o: NodeId) => (g.nodes[o]!.size === 1 ? get(o) : range(o, start, size));
            return binaryVec(tf, node.fn, part(node.a), part(node.b), env.rows, host);
          }
          case 'matvec': {
            const { blocks, rows, cols } = matrixLayout(paramSpec(g, node.param));
            const out = node.transpose ? cols : rows;
            const inner = node.transpose ? rows : cols;
            const W = env.params[node.param]!;
            if (blocks === 1) {
              const W2 = tf.reshape(W, [rows, cols]);
              const Wr = node.transpose ? tf.slice(W2, [0, start], [rows, size]) : tf.slice(W2, [start, 0], [size, cols]);
              const x = get(node.v);
              const R = x.perElement ? env.rows : 1;
              const y = host
                ? hostMatvec(tf, x.t, R, Wr, 1, Wr.shape[0]!, Wr.shape[1]!, node.transpose)
                : tf.matMul(tf.reshape(x.t, [R, x.size]), Wr, false, !node.transpose);
              return of(x.perElement ? y : tf.reshape(y, [size]), x.perElement);
            }
            if (start % out !== 0 || size % out !== 0) return null;
            const b0 = start / out;
            const nb = size / out;
            const Wb = tf.slice(tf.reshape(W, [blocks, rows, cols]), [b0, 0, 0], [nb, rows, cols]);
            const x = range(node.v, b0 * inner, nb * inner);
            return of(matvec(node, x, Wb, nb), x.perElement);
          }
          case 'param':
            return of(tf.slice(tf.reshape(env.params[node.name]!, [node.size]), start, size), false);
          case 'const':
            return constVec(node.values.slice(start, start + size));
          case 'concat': {
            let at = 0;
            for (const p of node.parts) {
              const n = g.nodes[p]!.size;
              if (start >= at && start + size <= at + n) return range(p, start - at, size);
              at += n;
            }
            return null;
          }
          default:
            return null;
        }
      };
      const constVec = (values: readonly number[]): Vec => ({
        t: tf.tensor1d(values as number[], 'float32'),
        perElement: false,
        size: values.length,
        uniform: values.every((x) => x === values[0]) ? values[0] : undefined,
      });
      /** Pieces side by side, as node id's value. */
      const joinPieces = (id: NodeId, pieces: Vec[]): Vec => {
        if (pieces.length === 1) return pieces[0]!;
        if (!perElement[id]) return vec(id, tf.concat(pieces.map((p) => p.t), 0));
        return vec(id, tf.concat(pieces.map((p) => (p.perElement ? p.t : expandRows(tf, p.t, env.rows))), 1));
      };
      /** A flattened sum (see `sumTerms`), its input-only terms first, added once and kept. */
      const sumOf = (id: NodeId, terms: readonly NodeId[]): Vec => {
        const fixed = stateful[id] ? terms.filter((t) => !stateful[t]) : [];
        if (fixed.length < 2) return sumVecs(tf, terms.map(get), env.rows, host);
        const key = partialKey(fixed);
        let partial = known?.get(key);
        if (!partial) {
          partial = sumVecs(tf, fixed.map(get), env.rows, host);
          if (known && partial.perElement) known.set(key, partial);
        }
        const rest = terms.filter((t) => stateful[t]).map(get);
        return sumVecs(tf, [partial, ...rest], env.rows, host);
      };
      const wholeNode = (id: NodeId): Vec => {
        const node = g.nodes[id]!;
        switch (node.op) {
          case 'state':
            return vec(id, env.state);
          case 'input':
            if (!env.input) throw new Error('tfjs: the program reads an input and none was given');
            return vec(id, env.input);
          case 'cotangent':
            if (!env.cotangent) throw new Error('tfjs: the program reads a cotangent and none was given');
            return vec(id, env.cotangent);
          case 'param':
            return vec(id, tf.reshape(env.params[node.name]!, [node.size]));
          case 'const':
            return constVec(node.values);
          case 'unary': {
            const a = get(node.a);
            return vec(id, unary(node.fn, a.t), a.perElement);
          }
          case 'binary': {
            const cuts = bounds[id];
            const terms = sumTerms[id];
            if (terms) return sumOf(id, terms);
            if (!cuts) return binaryVec(tf, node.fn, get(node.a), get(node.b), env.rows, host);
            // Concatenations (a VJP's zero-padded gate gradients) added piece by piece: the pieces
            // that are zero drop out and no padded [rows, size] tensor is built.
            const pieces = cuts.slice(1).map((end, k) => range(id, cuts[k]!, end - cuts[k]!));
            return joinPieces(id, pieces);
          }
          case 'matvec': {
            const { blocks } = matrixLayout(paramSpec(g, node.param));
            const x = get(node.v);
            return vec(id, matvec(node, x, env.params[node.param]!, blocks), x.perElement);
          }
          case 'slice':
            return range(node.a, node.start, node.size);
          case 'concat':
            return joinPieces(id, node.parts.map(get));
          case 'sum': {
            const a = get(node.a);
            return vec(id, a.perElement ? tf.sum(a.t, 1, true) : tf.sum(a.t, 0, true), a.perElement);
          }
        }
        throw new Error(`tfjs: unknown node ${(node as Node).op}`);
      };
      return get;
    },
  };
}

/**
 * Piece boundaries of concat nodes and of adds and subs of such pieces (or of constants), whose
 * values are computed piece by piece; undefined for every other node.
 */
function segmentBounds(g: Graph, live: readonly NodeId[]): (number[] | undefined)[] {
  const bounds: (number[] | undefined)[] = [];
  for (const id of live) {
    const node = g.nodes[id]!;
    if (node.op === 'concat') {
      const cuts = [0];
      for (const p of node.parts) cuts.push(cuts.at(-1)! + g.nodes[p]!.size);
      bounds[id] = cuts;
    } else if (node.op === 'binary' && (node.fn === 'add' || node.fn === 'sub')) {
      const ops = [node.a, node.b];
      const pieceable = (o: NodeId) => bounds[o] !== undefined || g.nodes[o]!.op === 'const';
      if (node.size > 1 && ops.every((o) => g.nodes[o]!.size === node.size && pieceable(o))) {
        const cuts = new Set<number>([0, node.size]);
        for (const o of ops) for (const c of bounds[o] ?? []) cuts.add(c);
        if (cuts.size > 2) bounds[id] = [...cuts].sort((p, q) => p - q);
      }
    }
  }
  return bounds;
}

/** Short names of expression strings, the same in every program. */
const interned = new Map<string, string>();

/**
 * What a node that does not depend on the state computes, as a short key (operands' made first).
 * Kept values are shared by every program on the same input and param binding (hoist.ts), of any
 * cell, so the key holds everything the value depends on besides the input tensor and the tensor
 * bound to each param name: the ops, constants, slices and each param's name and declared shape
 * (the same flat tensor read as a [2, 6] or a [2, 2, 3] block param is another product).
 */
function exprKey(g: Graph, node: Node, keys: readonly string[]): string {
  return internKey(exprString(g, node, keys));
}

function internKey(long: string): string {
  let k = interned.get(long);
  if (k === undefined) {
    k = `e${interned.size}`;
    interned.set(long, k);
  }
  return k;
}

/** A param's name (quoted: any string) and declared shape. */
const paramKey = (g: Graph, name: string) => `${JSON.stringify(name)}[${paramSpec(g, name).shape.join(',')}]`;

/** A constant's values, -0 apart from 0 (it can reach a result: 1/-0, sign). */
const constKey = (values: readonly number[]) => values.map((v) => (Object.is(v, -0) ? '-0' : String(v))).join(',');

function exprString(g: Graph, node: Node, keys: readonly string[]): string {
  switch (node.op) {
    case 'input':
      return `x[${node.size}]`;
    case 'param':
      return `p:${paramKey(g, node.name)}`;
    case 'const':
      return `c:${constKey(node.values)}`;
    case 'unary':
      return `${node.fn}(${keys[node.a]})`;
    case 'binary':
      return `${node.fn}(${keys[node.a]},${keys[node.b]})`;
    case 'matvec':
      return `mv:${paramKey(g, node.param)}:${node.transpose}(${keys[node.v]})`;
    case 'slice':
      return `sl:${node.start}:${node.size}(${keys[node.a]})`;
    case 'concat':
      return `cat(${node.parts.map((p) => keys[p]).join(',')})`;
    case 'sum':
      return `sum(${keys[node.a]})`;
    default:
      // The state and cotangent are never part of an input-only value.
      throw new Error(`tfjs: no expression key for a ${node.op} node`);
  }
}
