import { backprop } from './backprop.js';
import type { GraphBuilder } from './builder.js';
import type { NodeId, UnaryFn } from './graph.js';

/**
 * The cell language: functions over per-step vectors, traced to a graph while `defineCell` runs
 * the cell's body. Numbers stand for scalar constants and broadcast.
 */
export class Vec {
  constructor(
    /** @internal */ readonly builder: GraphBuilder,
    /** @internal */ readonly id: NodeId,
  ) {}
  get size(): number {
    return this.builder.size(this.id);
  }
}

/** A parameter: usable as a vector (a bias) and as the matrix of `matvec`. */
export class Param extends Vec {
  constructor(
    builder: GraphBuilder,
    id: NodeId,
    readonly name: string,
    readonly shape: readonly number[],
  ) {
    super(builder, id);
  }
}

export type VecLike = Vec | number;

let active: GraphBuilder | null = null;

/** @internal Runs `body` with `builder` as the target of the cell-language functions. */
export function withBuilder<T>(builder: GraphBuilder, body: () => T): T {
  if (active) throw new Error('defineCell cannot be nested');
  active = builder;
  try {
    return body();
  } finally {
    active = null;
  }
}

function current(): GraphBuilder {
  if (!active) throw new Error('cell-language functions can only be called inside a defineCell body');
  return active;
}

function node(b: GraphBuilder, v: VecLike): NodeId {
  if (typeof v === 'number') return b.scalar(v);
  if (v.builder !== b) throw new Error('a vector from another cell was used');
  return v.id;
}

const wrap = (b: GraphBuilder, id: NodeId) => new Vec(b, id);

function unary(fn: UnaryFn) {
  return (a: VecLike): Vec => {
    const b = current();
    return wrap(b, b.unary(fn, node(b, a)));
  };
}

function binary(fn: 'add' | 'sub' | 'mul' | 'div') {
  return (a: VecLike, c: VecLike): Vec => {
    const b = current();
    return wrap(b, b.binary(fn, node(b, a), node(b, c)));
  };
}

export const add = binary('add');
export const sub = binary('sub');
export const mul = binary('mul');
export const div = binary('div');
export const neg = unary('neg');
export const sigmoid = unary('sigmoid');
export const tanh = unary('tanh');
export const exp = unary('exp');
export const log = unary('log');
export const softplus = unary('softplus');
export const relu = unary('relu');
export const sin = unary('sin');
export const cos = unary('cos');
export const square = unary('square');
export const sqrt = unary('sqrt');
export const abs = unary('abs');

/** min(max(v, −c), c) elementwise, written exactly as v − relu(v − c) + relu(−v − c). */
export function clip(v: VecLike, c: number): Vec {
  return add(sub(v, relu(sub(v, c))), relu(sub(neg(v), c)));
}

/** Σ_i a_i: a size-1 vector. */
export function sum(a: VecLike): Vec {
  const b = current();
  return wrap(b, b.sum(node(b, a)));
}

/** a_1 + a_2 + … (elementwise). */
export function addAll(first: VecLike, ...rest: VecLike[]): Vec {
  return rest.reduce<Vec>((acc, v) => add(acc, v), add(first, 0));
}

/** Σ_i a_i · c_i, a size-1 vector. */
export function dot(a: VecLike, c: VecLike): Vec {
  const b = current();
  return wrap(b, b.sum(b.mul(node(b, a), node(b, c))));
}

/** W·v for a param W of shape [rows, cols] (dense) or [blocks, rows, cols] (block-diagonal). */
export function matvec(w: Param, v: VecLike): Vec {
  const b = current();
  if (!(w instanceof Param)) throw new Error('matvec: the matrix must be a cell parameter');
  return wrap(b, b.matvec(w.name, node(b, v)));
}

/** Wᵀ·v for a param W. */
export function matvecT(w: Param, v: VecLike): Vec {
  const b = current();
  if (!(w instanceof Param)) throw new Error('matvecT: the matrix must be a cell parameter');
  return wrap(b, b.matvec(w.name, node(b, v), true));
}

export function slice(a: Vec, start: number, size: number): Vec {
  const b = current();
  return wrap(b, b.slice(node(b, a), start, size));
}

export function concat(...parts: Vec[]): Vec {
  const b = current();
  return wrap(b, b.concat(parts.map((p) => node(b, p))));
}

/** A constant vector. */
export function constant(values: readonly number[] | number): Vec {
  const b = current();
  return wrap(b, typeof values === 'number' ? b.scalar(values) : b.constant(values));
}

/** ∇_v s for a scalar (size-1) vector s that depends on v: the gradient as a vector like v. */
export function grad(s: Vec, v: Vec): Vec {
  const b = current();
  if (s.size !== 1) throw new Error(`grad: expected a scalar (size 1), got size ${s.size}`);
  const g = backprop(b, s.id, b.scalar(1)).at.get(v.id);
  return wrap(b, g ?? b.constant(new Array<number>(v.size).fill(0)));
}
