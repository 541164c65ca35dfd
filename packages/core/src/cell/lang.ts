import { CellDefinitionError } from '../errors.js';
import { backprop } from './backprop.js';
import type { GraphBuilder } from './builder.js';
import type { BinaryFn, NodeId, UnaryFn } from './graph.js';

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
  if (active)
    throw new CellDefinitionError('defineCell', 'a call outside another cell body', 'a nested defineCell');
  active = builder;
  try {
    return body();
  } finally {
    active = null;
  }
}

function current(): GraphBuilder {
  if (!active) {
    throw new CellDefinitionError(
      'cell-language function',
      'a call inside a defineCell body',
      'a call outside one',
    );
  }
  return active;
}

function node(b: GraphBuilder, v: VecLike, what = 'operand'): NodeId {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new CellDefinitionError(what, 'a Vec or a finite number', String(v));
    return b.scalar(v);
  }
  if (!(v instanceof Vec)) throw new CellDefinitionError(what, 'a Vec or a finite number', describeValue(v));
  if (v.builder !== b)
    throw new CellDefinitionError(what, 'a vector of the cell being defined', 'a vector from another cell');
  return v.id;
}

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  return typeof v === 'object' ? `an object (${(v as object).constructor?.name ?? 'Object'})` : typeof v;
}

/** A finite number argument (a constant of an op), checked. */
function finite(fn: string, arg: string, v: unknown, positive = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (positive && !(v > 0))) {
    throw new CellDefinitionError(
      `${fn}: ${arg}`,
      positive ? 'a finite number > 0' : 'a finite number',
      typeof v === 'number' ? String(v) : describeValue(v),
    );
  }
  return v;
}

const wrap = (b: GraphBuilder, id: NodeId) => new Vec(b, id);

function unary(fn: UnaryFn) {
  return (a: VecLike): Vec => {
    const b = current();
    return wrap(b, b.unary(fn, node(b, a, `${fn}(v): v`)));
  };
}

function binary(fn: BinaryFn) {
  return (a: VecLike, c: VecLike): Vec => {
    const b = current();
    return wrap(b, b.binary(fn, node(b, a, `${fn}(a, b): a`), node(b, c, `${fn}(a, b): b`)));
  };
}

export const add = binary('add');
export const sub = binary('sub');
export const mul = binary('mul');
export const div = binary('div');
/** min(a, b) elementwise: one of the operands exactly (derivative: 1 for the picked operand). */
export const minimum = binary('min');
/** max(a, b) elementwise: one of the operands exactly (derivative: 1 for the picked operand). */
export const maximum = binary('max');
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
export const sign = unary('sign');
/** The Heaviside step: 1 where v > 0, else 0 (derivative 0). */
export const step = unary('step');

/**
 * min(max(v, −c), c) elementwise for a constant c > 0: exact for every |v| (it returns v, −c or
 * c, never a difference). Derivative: 1 inside (−c, c), 0 outside.
 */
export function clip(v: VecLike, c: number): Vec {
  finite('clip(v, c)', 'c', c, true);
  return minimum(maximum(v, -c), c);
}

/** max(v, 0) + α·min(v, 0) (ONNX LeakyRelu; α default 0.01). */
export function leakyRelu(v: VecLike, alpha = 0.01): Vec {
  finite('leakyRelu(v, alpha)', 'alpha', alpha);
  // min(0, v), not min(v, 0): at v = 0 its derivative goes to v, so the slope there is α (the left
  // slope, as PyTorch takes it), where both branches' ties had given 0.
  return add(maximum(v, 0), mul(alpha, minimum(0, v)));
}

/** v where v > α, else 0 (ONNX ThresholdedRelu; α default 1). */
export function thresholdedRelu(v: VecLike, alpha = 1): Vec {
  finite('thresholdedRelu(v, alpha)', 'alpha', alpha);
  return mul(v, step(sub(v, alpha)));
}

/** α·tanh(β·v) (ONNX ScaledTanh; defaults 1, 1). */
export function scaledTanh(v: VecLike, alpha = 1, beta = 1): Vec {
  finite('scaledTanh(v, alpha, beta)', 'alpha', alpha);
  finite('scaledTanh(v, alpha, beta)', 'beta', beta);
  return mul(alpha, tanh(mul(beta, v)));
}

/** max(0, min(1, α·v + β)) (ONNX HardSigmoid; defaults 0.2, 0.5). */
export function hardSigmoid(v: VecLike, alpha = 0.2, beta = 0.5): Vec {
  finite('hardSigmoid(v, alpha, beta)', 'alpha', alpha);
  finite('hardSigmoid(v, alpha, beta)', 'beta', beta);
  return maximum(minimum(add(mul(alpha, v), beta), 1), 0);
}

/**
 * v where v ≥ 0, else α·(eᵛ − 1) (ONNX Elu; α default 1). eᵛ − 1 is formed as 2t/(1 − t) with
 * t = tanh(v/2), which has no cancellation for v ≤ 0: eᵛ − 1 itself lost every digit as v → 0
 * (elu(−1e-9) was 0 in float32).
 */
export function elu(v: VecLike, alpha = 1): Vec {
  finite('elu(v, alpha)', 'alpha', alpha);
  // min(0, v): at v = 0 the slope is α·1 (the left slope; 1 where α = 1 and elu is smooth there),
  // where both branches' ties had given 0.
  const t = tanh(mul(minimum(0, v), 0.5));
  return add(maximum(v, 0), mul(alpha, div(mul(2, t), sub(1, t))));
}

/** v / (1 + |v|) (ONNX Softsign). */
export function softsign(v: VecLike): Vec {
  return div(v, add(abs(v), 1));
}

/** α·v + β (ONNX Affine; defaults 1, 0). */
export function affine(v: VecLike, alpha = 1, beta = 0): Vec {
  finite('affine(v, alpha, beta)', 'alpha', alpha);
  finite('affine(v, alpha, beta)', 'beta', beta);
  return add(mul(alpha, v), beta);
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
  if (!(w instanceof Param))
    throw new CellDefinitionError('matvec(W, v): W', 'a matrix parameter of the cell', describeValue(w));
  node(b, w, 'matvec(W, v): W');
  return wrap(b, b.matvec(w.name, node(b, v, 'matvec(W, v): v')));
}

/** Wᵀ·v for a param W. */
export function matvecT(w: Param, v: VecLike): Vec {
  const b = current();
  if (!(w instanceof Param))
    throw new CellDefinitionError('matvecT(W, v): W', 'a matrix parameter of the cell', describeValue(w));
  node(b, w, 'matvecT(W, v): W');
  return wrap(b, b.matvec(w.name, node(b, v, 'matvecT(W, v): v'), true));
}

export function slice(a: Vec, start: number, size: number): Vec {
  const b = current();
  return wrap(b, b.slice(node(b, a, 'slice(v, start, size): v'), start, size));
}

export function concat(...parts: Vec[]): Vec {
  const b = current();
  return wrap(b, b.concat(parts.map((p, i) => node(b, p, `concat: part ${i}`))));
}

/** A constant vector. */
export function constant(values: readonly number[] | number): Vec {
  const b = current();
  return wrap(b, typeof values === 'number' ? b.scalar(values) : b.constant(values));
}

/** ∇_v s for a scalar (size-1) vector s that depends on v: the gradient as a vector like v. */
export function grad(s: Vec, v: Vec): Vec {
  const b = current();
  for (const [arg, val] of [
    ['s', s],
    ['v', v],
  ] as const) {
    if (!(val instanceof Vec))
      throw new CellDefinitionError(
        `grad(s, v): ${arg}`,
        'a Vec of the cell being defined',
        describeValue(val),
      );
    node(b, val, `grad(s, v): ${arg}`);
  }
  if (s.size !== 1)
    throw new CellDefinitionError(
      'grad(s, v): s',
      'a scalar (a vector of size 1)',
      `a vector of size ${s.size}`,
    );
  const g = backprop(b, s.id, b.scalar(1)).at.get(v.id);
  return wrap(b, g ?? b.constant(new Array<number>(v.size).fill(0)));
}
