import {
  type Graph,
  liveNodes,
  matExprNodes,
  matrixLayout,
  type NodeId,
  paramSpec,
  type StepProgram,
  splitInputOnly,
  stepCost,
} from '@deerjs/core';
import { bound, MAIN_HEAD, paramsDecl, STORE_LOOP_FROM, storage, storeBound, UNIFORM_DECL, UNROLL_MAX, uni } from './common.js';
import { GraphEmitter, type Loads, paramOffsets, planStages, SQ_HELPER, UNARY_HELPERS } from './graph.js';
import { hasRowFreeEntries, MAX_UNROLLED_TERMS, MatExprEmitter, nestedProducts, sharedEntries, unrolledEntry } from './jacobian.js';

/** Buffers a generated kernel binds after the uniform block, in binding order. */
export type Role =
  | 'state'
  | 'input'
  | 'cotangent'
  | 'params'
  | 'y0'
  | 'packed'
  | 'out'
  | 'jacobian'
  | 'hoisted';

export interface Kernel {
  readonly code: string;
  readonly bindings: readonly Role[];
}

/** One node's slice of the packed per-element output buffer: [count, size] starting at count·pre. */
export interface Segment {
  readonly pre: number;
  readonly size: number;
}

export interface CompiledStep {
  /**
   * Elements e0 .. e0 + count of a slab, invocation i doing i, i + stride, …: writes program
   * outputs and Jacobian coefficients into `packed`, laid out as [count, ·] per segment.
   * Uniforms: 0 = count, 1 = e0, 2 = stride (the invocations dispatched).
   */
  readonly evaluate: Kernel;
  readonly segments: ReadonlyMap<NodeId, Segment>;
  readonly perElement: number;
  /** The Jacobian of a slab's elements in block structure, an entry per invocation or a column of a block (uniforms as above). */
  readonly jacobian?: Kernel & {
    readonly blockSize: number;
    /** s where an invocation computes a column of a block (see compileJacobian), else 1. */
    readonly entriesPerInvocation: number;
  };
  /**
   * Set when `evaluate` itself writes the Jacobian blocks (binding role 'jacobian', indexed by the
   * global element), from coefficients still in registers: small blocks, unrolled.
   */
  readonly fusedJacobian?: { readonly blockSize: number };
  readonly paramFloats: number;
  /** Multiply-add equivalents per element of what `evaluate` computes (core's stepCost). */
  readonly cost: number;
  /** Present when `evaluate` reads input-only values from the 'hoisted' binding. */
  readonly hoist?: Hoist;
}

/**
 * Input-only work (the input projection W·x + b, say) done once per input tensor instead of once
 * per Newton iteration or inside the sequential loop: `kernel` writes `floats` values per (b, t)
 * element into the 'hoisted' binding (uniform 0 = elements), which the step kernel reads.
 * Programs over the same graph with the same `frontier` share the values.
 */
export interface Hoist {
  readonly kernel: Kernel;
  readonly floats: number;
  readonly graph: Graph;
  readonly frontier: string;
}

/** Node → offset of its values in a hoisted element. */
export type HoistLayout = ReadonlyMap<NodeId, number>;

/**
 * Multiply-adds per element below which hoisting does not pay: writing and reading back the
 * hoisted values costs more than recomputing a small projection (GRU n = 1 has 3).
 */
const HOIST_MIN_FMAS = 32;

/** Multiply-adds of the matrix products among `ids`. */
function matvecWork(g: Graph, ids: readonly NodeId[]): number {
  let fmas = 0;
  for (const id of ids) {
    const node = g.nodes[id]!;
    if (node.op !== 'matvec') continue;
    const { blocks, rows, cols } = matrixLayout(paramSpec(g, node.param));
    fmas += blocks * rows * cols;
  }
  return fmas;
}

/**
 * What of `roots` is worth hoisting: the input-only frontier (the input leaf itself excepted: it
 * is read where it lies), when the input-only part does enough matrix products; else nothing.
 */
export function planHoist(g: Graph, roots: readonly NodeId[]): { hoist: Hoist; layout: HoistLayout } | undefined {
  const split = splitInputOnly(g, roots);
  if (matvecWork(g, split.inputOnly) < HOIST_MIN_FMAS) return undefined;
  const handed = split.frontier.filter((id) => g.nodes[id]!.op !== 'input' && g.nodes[id]!.size > 0);
  if (handed.length === 0) return undefined;
  const layout = new Map<NodeId, number>();
  let floats = 0;
  for (const id of handed) {
    layout.set(id, floats);
    floats += g.nodes[id]!.size;
  }
  const em = new GraphEmitter(g);
  const loads: Loads = {
    state: () => '0.0',
    input: (i) => `xin[e * ${g.inputSize}u + ${i}]`,
    cotangent: () => '0.0',
  };
  const { decl, body } = bodyFor(em, handed, loads);
  const writes = handed.map(
    (id) =>
      `  for (var i = 0u; i < ${bound(g.nodes[id]!.size)}; i++) { hv[e * ${floats}u + ${layout.get(id)}u + i] = ${em.ref(id, 'i')}; }`,
  );
  const roles: Role[] = [...usedRoles(em.uses), 'hoisted'];
  const code = kernelModule(g, roles, new Set<Role>(['hoisted']), [
    ...em.decls,
    `${MAIN_HEAD}
  if (idx >= ${uni(0)}) { return; }
  let e = idx;
${decl}
${body}
${writes.join('\n')}
}`,
  ]);
  return { hoist: { kernel: { code, bindings: roles }, floats, graph: g, frontier: handed.join(',') }, layout };
}

const BINDING_NAMES: Record<Role, string> = {
  state: 'st',
  input: 'xin',
  cotangent: 'ct',
  params: 'prm',
  y0: 'y0',
  packed: 'packed',
  out: 'outp',
  jacobian: 'jac',
  hoisted: 'hv',
};

/** `divergentParams`: lanes read different parameters at once (see paramsDecl). */
export function kernelModule(
  g: Graph,
  roles: readonly Role[],
  write: ReadonlySet<Role>,
  parts: readonly string[],
  divergentParams = false,
): string {
  const floats = paramOffsets(g).total;
  const decls = roles.map((r, i) =>
    r === 'params' ? paramsDecl(i + 1, floats, divergentParams) : storage(i + 1, BINDING_NAMES[r], write.has(r)),
  );
  return [UNIFORM_DECL, ...decls, UNARY_HELPERS, SQ_HELPER, ...parts].join('\n');
}

export function usedRoles(uses: GraphEmitter['uses']): Role[] {
  const roles: Role[] = [];
  if (uses.state) roles.push('state');
  if (uses.input) roles.push('input');
  if (uses.cotangent) roles.push('cotangent');
  if (uses.params) roles.push('params');
  return roles;
}

/**
 * Declarations and statements computing `live` for element `e`; nodes in `hoisted` are read from
 * the 'hoisted' binding (element stride `stride`) instead of computed, along with what only they need.
 */
export function bodyFor(
  em: GraphEmitter,
  roots: readonly NodeId[],
  loads: Loads,
  hoisted?: { layout: HoistLayout; stride: number },
): { decl: string; body: string } {
  const g = em.graph;
  const live = liveNodes(g, roots, hoisted?.layout);
  const layout: HoistLayout = hoisted?.layout ?? new Map();
  const { stages, arrays } = planStages(g, live, roots, layout);
  const decl = em.declare(live.filter((id) => arrays.has(id) || g.nodes[id]!.op === 'const'));
  const load = (id: NodeId) => {
    const at = layout.get(id);
    return at === undefined ? undefined : `hv[e * ${hoisted!.stride}u + ${at}u + i]`;
  };
  const body = stages
    .map((stage) => ('alone' in stage ? em.emit(stage.alone, loads) : em.emitFused(stage.fused, arrays, loads, load)))
    .filter((s) => s !== '')
    .join('\n');
  return { decl, body };
}


/**
 * The Jacobian blocks' entries as WGSL expressions over `em`'s node values, every entry unrolled:
 * entries[r][j] is entry (r, k·s + j) of block k = ⌊r/s⌋, null where it is structurally zero; they
 * read the `lets` (entries of products, each summed once: see unrolledEntry), which go first.
 * Undefined when there are too many entries or product terms for that.
 */
export function unrolledJacobianEntries(
  g: Graph,
  jac: NonNullable<StepProgram['jacobian']>,
  em: GraphEmitter,
): { entries: (string | null)[][]; lets: readonly string[] } | undefined {
  const n = g.stateSize;
  const s = jac.blockSize;
  if (n * s > UNROLL_MAX) return undefined;
  const offsets = paramOffsets(g).offsets;
  const budget = { terms: 0 };
  const shared = sharedEntries();
  const param = (name: string, index: number) => {
    em.uses.params = true;
    return `prm_(${offsets.get(name)! + index}u)`;
  };
  const entries: (string | null)[][] = [];
  for (let r = 0; r < n; r++) {
    const k = Math.floor(r / s);
    const row: (string | null)[] = [];
    for (let j = 0; j < s; j++)
      row.push(unrolledEntry(g, jac.expr, r, k * s + j, (d, at) => em.ref(d, `${at}u`), param, budget, shared));
    entries.push(row);
  }
  return budget.terms > MAX_UNROLLED_TERMS ? undefined : { entries, lets: shared.lets };
}

/** The Jacobian blocks as statements writing `jac` for element `e` (see unrolledJacobianEntries). */
function unrolledJacobian(
  g: Graph,
  jac: NonNullable<StepProgram['jacobian']>,
  em: GraphEmitter,
  storeLoop: boolean,
): string | undefined {
  const n = g.stateSize;
  const s = jac.blockSize;
  const unrolled = unrolledJacobianEntries(g, jac, em);
  if (!unrolled) return undefined;
  const lets = unrolled.lets.map((l) => `  ${l}`);
  const entries = unrolled.entries.flatMap((row, r) => row.map((v, j) => [r * s + j, v ?? '0.0'] as const));
  if (!storeLoop || entries.length <= STORE_LOOP_FROM)
    return [...lets, ...entries.map(([k, v]) => `  jac[e * ${n * s}u + ${k}u] = ${v};`)].join('\n');
  return [
    '  {',
    `  var jb: array<f32, ${entries.length}>;`,
    ...lets,
    ...entries.map(([k, v]) => `  jb[${k}u] = ${v};`),
    `  for (var k = 0u; k < ${storeBound(entries.length, true)}; k++) { jac[e * ${n * s}u + k] = jb[k]; }`,
    '  }',
  ].join('\n');
}

/**
 * Generate the evaluation and Jacobian kernels of a step program; with `hoisting`, input-only
 * matrix products move to a kernel of their own (see Hoist); `software`: for a software adapter,
 * whose stores stay in loops (see storeBound).
 */
export function compileStep(program: StepProgram, hoisting = true, software = false): CompiledStep {
  const g = program.graph;
  const coefNodes = program.jacobian ? [...matExprNodes(program.jacobian.expr)] : [];
  const em = new GraphEmitter(g);
  const fused = program.jacobian ? unrolledJacobian(g, program.jacobian, em, software) : undefined;
  const segments = new Map<NodeId, Segment>();
  let pre = 0;
  // Coefficients go through memory only for the separate Jacobian kernel.
  for (const id of fused === undefined ? [...program.outputs, ...coefNodes] : program.outputs) {
    if (segments.has(id)) continue;
    const size = g.nodes[id]!.size;
    segments.set(id, { pre, size });
    pre += size;
  }
  const roots = [...segments.keys(), ...(fused === undefined ? [] : coefNodes)];
  const planned = hoisting ? planHoist(g, roots) : undefined;
  const n = g.stateSize;
  const cotSize = g.nodes.find((x) => x.op === 'cotangent')?.size ?? 0;
  const loads: Loads = {
    state: (i) => `st[e * ${n}u + ${i}]`,
    input: (i) => `xin[e * ${g.inputSize}u + ${i}]`,
    cotangent: (i) => `ct[e * ${cotSize}u + ${i}]`,
  };
  const { decl, body } = bodyFor(
    em,
    roots,
    loads,
    planned && { layout: planned.layout, stride: planned.hoist.floats },
  );
  const writes = [...segments].map(([id, s]) =>
    s.size === 0
      ? ''
      : `  for (var i = 0u; i < ${storeBound(s.size, software)}; i++) { packed[count * ${s.pre}u + l * ${s.size}u + i] = ${em.ref(id, 'i')}; }`,
  );
  const roles: Role[] = [
    ...usedRoles(em.uses),
    ...(planned ? (['hoisted'] as const) : []),
    ...(pre > 0 ? (['packed'] as const) : []),
    ...(fused === undefined ? [] : (['jacobian'] as const)),
  ];
  const evaluate = {
    code: kernelModule(g, roles, new Set<Role>(['packed', 'jacobian']), [
      ...em.decls,
      `${MAIN_HEAD}
  let count = ${uni(0)};
  let stride = ${uni(2)};
${decl}
  for (var l = idx; l < count; l += stride) {
  let e = ${uni(1)} + l;
${body}
${writes.join('\n')}
${fused ?? ''}
  }
}`,
    ]),
    bindings: roles,
  };
  const result: CompiledStep = {
    evaluate,
    segments,
    perElement: pre,
    paramFloats: paramOffsets(g).total,
    cost: stepCost(g, roots),
    ...(planned ? { hoist: planned.hoist } : {}),
  };
  if (!program.jacobian) return result;
  if (fused !== undefined) return { ...result, fusedJacobian: { blockSize: program.jacobian.blockSize } };
  return {
    ...result,
    jacobian: compileJacobian(g, program.jacobian.expr, program.jacobian.blockSize, segments),
  };
}

function compileJacobian(
  g: Graph,
  expr: NonNullable<StepProgram['jacobian']>['expr'],
  s: number,
  segments: ReadonlyMap<NodeId, Segment>,
): Kernel & { blockSize: number; entriesPerInvocation: number } {
  const uses = { params: false, packed: false };
  const offsets = paramOffsets(g).offsets;
  // Entries the same in every row (sums of rows) would be recomputed by every entry's invocation
  // (a sum over a product with another sum: O(n⁴) work per element at n = 32, 60× a GRU's
  // iteration on llvmpipe), and so would products read by other products (a gradient field's
  // Hessian through hidden layers [64, 64]: each entry ~h³ multiply-adds, 64× the work of
  // computing each product once). There an invocation computes a column of a block, keeping the
  // former and computing each of the latter's column once (MatExprEmitter's fills).
  const byColumn = hasRowFreeEntries(expr) || nestedProducts(expr).size > 0;
  const em = new MatExprEmitter(
    g,
    (d, e, r) => {
      uses.packed = true;
      const seg = segments.get(d)!;
      return `packed[${uni(0)} * ${seg.pre}u + ${e} * ${seg.size}u + u32(${r})]`;
    },
    (name, index) => {
      uses.params = true;
      return `prm_(${offsets.get(name)}u + ${index})`;
    },
    byColumn,
    expr,
  );
  const top = em.fn(expr);
  const n = g.stateSize;
  const roles: Role[] = [];
  if (uses.params) roles.push('params');
  if (uses.packed) roles.push('packed');
  roles.push('jacobian');
  const main = byColumn
    ? `${MAIN_HEAD}
  if (idx >= ${uni(0)} * ${n}u) { return; }
  let l = idx / ${n}u;
  let k = (idx % ${n}u) / ${s}u;
  let j = idx % ${s}u;
  let c = i32(k * ${s}u + j);
${em.fills.map((f) => `  ${f}(l, c);`).join('\n')}
  for (var i = 0u; i < ${s}u; i++) {
    jac[${uni(1)} * ${n * s}u + l * ${n * s}u + k * ${s * s}u + i * ${s}u + j] = ${top}(l, i32(k * ${s}u + i), c);
  }
}`
    : `${MAIN_HEAD}
  if (idx >= ${uni(0)} * ${n * s}u) { return; }
  let l = idx / ${n * s}u;
  let rem = idx % ${n * s}u;
  let k = rem / ${s * s}u;
  let i = (rem / ${s}u) % ${s}u;
  let j = rem % ${s}u;
  jac[${uni(1)} * ${n * s}u + idx] = ${top}(l, i32(k * ${s}u + i), i32(k * ${s}u + j));
}`;
  const code = kernelModule(g, roles, new Set<Role>(['jacobian']), [...em.functions, main]);
  return { code, bindings: roles, blockSize: s, entriesPerInvocation: byColumn ? s : 1 };
}
