import { type Graph, liveNodes, matExprNodes, type NodeId, type StepProgram } from '@deerjs/core';
import { MAIN_HEAD, storage, UNIFORM_DECL, uni } from './common.js';
import { GraphEmitter, type Loads, paramOffsets, SQ_HELPER, UNARY_HELPERS } from './graph.js';
import { MatExprEmitter } from './jacobian.js';

/** Buffers a generated kernel binds after the uniform block, in binding order. */
export type Role = 'state' | 'input' | 'cotangent' | 'params' | 'y0' | 'packed' | 'out' | 'jacobian';

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
   * One invocation per element of a slab: writes program outputs and Jacobian coefficients of
   * elements e0 .. e0 + count into `packed`, laid out as [count, ·] per segment. Uniforms:
   * 0 = count, 1 = e0.
   */
  readonly evaluate: Kernel;
  readonly segments: ReadonlyMap<NodeId, Segment>;
  readonly perElement: number;
  /** One invocation per Jacobian entry of a slab's elements, in block structure (uniforms as above). */
  readonly jacobian?: Kernel & { readonly blockSize: number };
  readonly paramFloats: number;
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
};

function module(roles: readonly Role[], write: ReadonlySet<Role>, parts: readonly string[]): string {
  const decls = roles.map((r, i) => storage(i + 1, BINDING_NAMES[r], write.has(r)));
  return [UNIFORM_DECL, ...decls, UNARY_HELPERS, SQ_HELPER, ...parts].join('\n');
}

function usedRoles(uses: GraphEmitter['uses']): Role[] {
  const roles: Role[] = [];
  if (uses.state) roles.push('state');
  if (uses.input) roles.push('input');
  if (uses.cotangent) roles.push('cotangent');
  if (uses.params) roles.push('params');
  return roles;
}

function bodyFor(em: GraphEmitter, live: readonly NodeId[], loads: Loads): { decl: string; body: string } {
  const decl = em.declare(live);
  const body = live
    .map((id) => em.emit(id, loads))
    .filter((s) => s !== '')
    .join('\n');
  return { decl, body };
}

/** Generate the evaluation and Jacobian kernels of a step program. */
export function compileStep(program: StepProgram): CompiledStep {
  const g = program.graph;
  const coefNodes = program.jacobian ? [...matExprNodes(program.jacobian.expr)] : [];
  const segments = new Map<NodeId, Segment>();
  let pre = 0;
  for (const id of [...program.outputs, ...coefNodes]) {
    if (segments.has(id)) continue;
    const size = g.nodes[id]!.size;
    segments.set(id, { pre, size });
    pre += size;
  }
  const live = liveNodes(g, [...segments.keys()]);
  const em = new GraphEmitter(g);
  const n = g.stateSize;
  const cotSize = g.nodes.find((x) => x.op === 'cotangent')?.size ?? 0;
  const loads: Loads = {
    state: (i) => `st[e * ${n}u + ${i}]`,
    input: (i) => `xin[e * ${g.inputSize}u + ${i}]`,
    cotangent: (i) => `ct[e * ${cotSize}u + ${i}]`,
  };
  const { decl, body } = bodyFor(em, live, loads);
  const writes = [...segments].map(([id, s]) =>
    s.size === 0
      ? ''
      : `  for (var i = 0u; i < ${s.size}u + z; i++) { packed[count * ${s.pre}u + l * ${s.size}u + i] = ${em.ref(id, 'i')}; }`,
  );
  const roles: Role[] = [...usedRoles(em.uses), 'packed'];
  const evaluate = {
    code: module(roles, new Set<Role>(['packed']), [
      ...em.decls,
      `${MAIN_HEAD}
  let count = ${uni(0)};
  if (idx >= count) { return; }
  let l = idx;
  let e = ${uni(1)} + l;
${decl}
${body}
${writes.join('\n')}
}`,
    ]),
    bindings: roles,
  };
  const result: CompiledStep = { evaluate, segments, perElement: pre, paramFloats: paramOffsets(g).total };
  if (!program.jacobian) return result;
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
): Kernel & { blockSize: number } {
  const uses = { params: false, packed: false };
  const offsets = paramOffsets(g).offsets;
  const em = new MatExprEmitter(
    g,
    (d, e, r) => {
      uses.packed = true;
      const seg = segments.get(d)!;
      return `packed[${uni(0)} * ${seg.pre}u + ${e} * ${seg.size}u + u32(${r})]`;
    },
    (name, index) => {
      uses.params = true;
      return `prm[${offsets.get(name)}u + ${index}]`;
    },
  );
  const top = em.fn(expr);
  const n = g.stateSize;
  const roles: Role[] = [];
  if (uses.params) roles.push('params');
  if (uses.packed) roles.push('packed');
  roles.push('jacobian');
  const code = module(roles, new Set<Role>(['jacobian']), [
    ...em.functions,
    `${MAIN_HEAD}
  if (idx >= ${uni(0)} * ${n * s}u) { return; }
  let l = idx / ${n * s}u;
  let rem = idx % ${n * s}u;
  let k = rem / ${s * s}u;
  let i = (rem / ${s}u) % ${s}u;
  let j = rem % ${s}u;
  jac[${uni(1)} * ${n * s}u + idx] = ${top}(l, i32(k * ${s}u + i), i32(k * ${s}u + j));
}`,
  ]);
  return { code, bindings: roles, blockSize: s };
}

/**
 * y_t = f(y_{t−1}, x_t) in time order, one invocation per batch row; `program.outputs[0]` is f.
 * Uniforms: 0 = B, 1 = T.
 */
export function compileSequential(program: StepProgram): Kernel {
  const g = program.graph;
  const f = program.outputs[0]!;
  const n = g.stateSize;
  const live = liveNodes(g, [f]);
  const em = new GraphEmitter(g);
  const loads: Loads = {
    state: (i) => `sload(b, e, t, ${i})`,
    input: (i) => `xin[e * ${g.inputSize}u + ${i}]`,
    cotangent: () => '0.0',
  };
  const { decl, body } = bodyFor(em, live, loads);
  // The state is read from y0 or the output just written, never through the 'state' role.
  const usesState = em.uses.state;
  const roles: Role[] = [
    ...usedRoles({ ...em.uses, state: false }),
    ...(usesState ? (['y0'] as const) : []),
    'out',
  ];
  const sload = `fn sload(b: u32, e: u32, t: u32, i: u32) -> f32 {
  if (t == 0u) { return y0[b * ${n}u + i]; }
  return outp[(e - 1u) * ${n}u + i];
}`;
  const code = module(roles, new Set<Role>(['out']), [
    ...em.decls,
    ...(usesState ? [sload] : []),
    `${MAIN_HEAD}
  let nb = ${uni(0)};
  let T = ${uni(1)};
  if (idx >= nb) { return; }
  let b = idx;
${decl}
  for (var t = 0u; t < T; t++) {
    let e = b * T + t;
${body}
    for (var i = 0u; i < ${n}u + z; i++) { outp[e * ${n}u + i] = ${em.ref(f, 'i')}; }
  }
}`,
  ]);
  return { code, bindings: roles };
}
