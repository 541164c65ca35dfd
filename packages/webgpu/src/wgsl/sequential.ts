import { liveNodes, matrixLayout, type Node, type NodeId, operands, paramSpec, type StepProgram } from '@deerjs/core';
import { bound, mainHead, SERIAL_WG, uni } from './common.js';
import { BINARY, GraphEmitter, type Loads, paramOffsets, UNARY } from './graph.js';
import {
  bodyFor,
  type Hoist,
  type HoistLayout,
  type Kernel,
  kernelModule,
  planHoist,
  type Role,
  usedRoles,
} from './step.js';

/** A sequential-evaluation kernel, with its workgroup size and its hoisted input part, if any. */
export interface SequentialKernel extends Kernel {
  /** Invocations per workgroup; the kernel is dispatched over B · (perRow) invocations. */
  readonly wg: number;
  /** Invocations per batch row: 1 (one invocation walks a row) or wg (a workgroup does). */
  readonly perRow: number;
  readonly hoist?: Hoist;
}

/**
 * y_t = f(y_{t−1}, x_t) in time order, one invocation per batch row (workgroups of SERIAL_WG);
 * `program.outputs[0]` is f. Uniforms: 0 = B, 1 = T. Each step's n² work is done by one lane:
 * the right kernel for small n and for devices whose lanes are CPU SIMD lanes.
 */
export function compileSequential(program: StepProgram, hoisting = true): SequentialKernel {
  const g = program.graph;
  const f = program.outputs[0]!;
  const n = g.stateSize;
  const planned = hoisting ? planHoist(g, [f]) : undefined;
  const em = new GraphEmitter(g);
  const loads: Loads = {
    state: (i) => `sload(b, e, t, ${i})`,
    input: (i) => `xin[e * ${g.inputSize}u + ${i}]`,
    cotangent: () => '0.0',
  };
  const { decl, body } = bodyFor(em, [f], loads, planned && { layout: planned.layout, stride: planned.hoist.floats });
  // Before the bindings are chosen from em.uses: a leaf output (a bare parameter, say) has no body,
  // and this is the only read of it.
  const out = em.ref(f, 'i');
  // The state is read from y0 or the output just written, never through the 'state' role.
  const usesState = em.uses.state;
  const roles: Role[] = [
    ...usedRoles({ ...em.uses, state: false }),
    ...(planned ? (['hoisted'] as const) : []),
    ...(usesState ? (['y0'] as const) : []),
    'out',
  ];
  const sload = `fn sload(b: u32, e: u32, t: u32, i: u32) -> f32 {
  if (t == 0u) { return y0[b * ${n}u + i]; }
  return outp[(e - 1u) * ${n}u + i];
}`;
  const code = kernelModule(g, roles, new Set<Role>(['out']), [
    ...em.decls,
    ...(usesState ? [sload] : []),
    `${mainHead(SERIAL_WG)}
  let nb = ${uni(0)};
  let T = ${uni(1)};
  if (idx >= nb) { return; }
  let b = idx;
${decl}
  for (var t = 0u; t < T; t++) {
    let e = b * T + t;
${body}
    for (var i = 0u; i < ${bound(n)}; i++) { outp[e * ${n}u + i] = ${out}; }
  }
}`,
  ]);
  return { code, bindings: roles, wg: SERIAL_WG, perRow: 1, ...(planned ? { hoist: planned.hoist } : {}) };
}

/**
 * Whether a node's entry i reads only entry i of its operands (no matrix product, reduction, shift
 * or broadcast): made by the invocation that made those entries, it needs no barrier before it.
 */
function local(g: StepProgram['graph'], node: Node): boolean {
  if (node.op === 'unary') return g.nodes[node.a]!.size === node.size;
  if (node.op === 'binary') return g.nodes[node.a]!.size === node.size && g.nodes[node.b]!.size === node.size;
  return false;
}

const LEAVES: ReadonlySet<Node['op']> = new Set(['param', 'const', 'state', 'input', 'cotangent']);

/**
 * Sequential evaluation with one workgroup per batch row: each step's nodes are computed by the
 * workgroup together (invocation k makes entries k, k + wg, …) into workgroup memory, with a
 * barrier only before a node that reads entries other invocations made since the last one. A step
 * costs about the graph's depth in barriers instead of its n² work on one lane: the kernel for GPUs
 * and larger n. Undefined when the node values do not fit `sharedFloats` floats of workgroup
 * memory. Uniforms: 0 = B, 1 = T.
 */
export function compileSequentialWorkgroup(
  program: StepProgram,
  sharedFloats: number,
  hoisting = true,
): SequentialKernel | undefined {
  const g = program.graph;
  const f = program.outputs[0]!;
  const n = g.stateSize;
  const planned = hoisting ? planHoist(g, [f]) : undefined;
  const layout: HoistLayout = planned?.layout ?? new Map();
  const live = liveNodes(g, [f], layout);
  const computed = live.filter((id) => !layout.has(id) && !LEAVES.has(g.nodes[id]!.op));
  const floats = n + computed.reduce((s, id) => s + Math.max(1, g.nodes[id]!.size), 0);
  if (floats > sharedFloats || computed.length === 0) return undefined;
  const biggest = Math.max(n, ...computed.map((id) => g.nodes[id]!.size));
  const wg = Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(biggest))));
  const offsets = paramOffsets(g).offsets;
  const uses = { params: false, input: false };
  const em = new GraphEmitter(g);
  // Constant vectors are module-scope arrays `c<id>` that em.ref reads: declare them.
  const constInit = em.declare(live.filter((id) => g.nodes[id]!.op === 'const'));

  /** Entry `i` (a WGSL u32 expression) of node `id` as the kernel holds it; `e` is the element. */
  const ref = (id: NodeId, i: string): string => {
    const node = g.nodes[id]!;
    const at = node.size === 1 ? '0u' : i;
    const h = layout.get(id);
    if (h !== undefined) return `hv[e * ${planned!.hoist.floats}u + ${h}u + ${at}]`;
    switch (node.op) {
      case 'param':
        uses.params = true;
        return em.ref(id, at);
      case 'const':
        return em.ref(id, at);
      case 'state':
        return `ws[${at}]`;
      case 'input':
        uses.input = true;
        return `xin[e * ${g.inputSize}u + ${at}]`;
      case 'cotangent':
        return '0.0';
      default:
        return `w${id}[${at}]`;
    }
  };
  // Entries that are more than an expression get a function of (element, index).
  const helpers: string[] = [];
  const entry = (id: NodeId, node: Node): string => {
    switch (node.op) {
      case 'unary':
        return UNARY[node.fn](ref(node.a, 'i'));
      case 'binary':
        return BINARY[node.fn](ref(node.a, 'i'), ref(node.b, 'i'));
      case 'slice':
        return ref(node.a, `(i + ${node.start}u)`);
      case 'concat': {
        let at = 0;
        const cases = node.parts.map((p) => {
          const size = g.nodes[p]!.size;
          const line = `  if (i < ${at + size}u) { return ${ref(p, `(i - ${at}u)`)}; }`;
          at += size;
          return size === 0 ? '' : line;
        });
        helpers.push(`fn cat${id}(e: u32, i: u32) -> f32 {\n${cases.filter((c) => c).join('\n')}\n  return 0.0;\n}`);
        return `cat${id}(e, i)`;
      }
      case 'sum': {
        const a = g.nodes[node.a]!.size;
        helpers.push(
          `fn sum${id}(e: u32) -> f32 { var acc = 0.0; for (var k = 0u; k < ${a}u; k++) { acc += ${ref(node.a, 'k')}; } return acc; }`,
        );
        return `sum${id}(e)`;
      }
      case 'matvec': {
        uses.params = true;
        const { rows, cols } = matrixLayout(paramSpec(g, node.param));
        const off = offsets.get(node.param)!;
        const body = node.transpose
          ? `let k = r / ${cols}u; let j = r % ${cols}u; var acc = 0.0;
  for (var q = 0u; q < ${rows}u; q++) { acc += prm_(${off}u + k * ${rows * cols}u + q * ${cols}u + j) * ${ref(node.v, `(k * ${rows}u + q)`)}; }`
          : `let k = r / ${rows}u; let i = r % ${rows}u; var acc = 0.0;
  for (var q = 0u; q < ${cols}u; q++) { acc += prm_(${off}u + k * ${rows * cols}u + i * ${cols}u + q) * ${ref(node.v, `(k * ${cols}u + q)`)}; }`;
        helpers.push(`fn mv${id}(e: u32, r: u32) -> f32 {\n  ${body}\n  return acc;\n}`);
        return `mv${id}(e, i)`;
      }
      default:
        throw new Error(`webgpu: node ${id} (${node.op}) is not computed per step`);
    }
  };
  const lines: string[] = [];
  let dirty = new Set<NodeId>();
  for (const id of computed) {
    const node = g.nodes[id]!;
    if (!local(g, node) && operands(node).some((o) => dirty.has(o))) {
      lines.push('    workgroupBarrier();');
      dirty = new Set();
    }
    lines.push(`    for (var i = li; i < ${node.size}u; i += ${wg}u) { w${id}[i] = ${entry(id, node)}; }`);
    dirty.add(id);
  }
  const roles: Role[] = [
    ...usedRoles({ params: uses.params, input: uses.input, state: false, cotangent: false }),
    ...(planned ? (['hoisted'] as const) : []),
    'y0',
    'out',
  ];
  const code = kernelModule(
    g,
    roles,
    new Set<Role>(['out']),
    [
    ...em.decls,
    `var<workgroup> ws: array<f32, ${n}>;`,
    ...computed.map((id) => `var<workgroup> w${id}: array<f32, ${Math.max(1, g.nodes[id]!.size)}>;`),
    ...helpers,
    `@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.x + wid.y * nwg.x;
  let nb = ${uni(0)};
  let T = ${uni(1)};
  if (b >= nb) { return; }
${constInit}
  for (var i = li; i < ${n}u; i += ${wg}u) { ws[i] = y0[b * ${n}u + i]; }
  workgroupBarrier();
  for (var t = 0u; t < T; t++) {
    let e = b * T + t;
${lines.join('\n')}
    workgroupBarrier();
    for (var i = li; i < ${n}u; i += ${wg}u) { let v = ${ref(f, 'i')}; outp[e * ${n}u + i] = v; ws[i] = v; }
    workgroupBarrier();
  }
}`,
    ],
    // A step's entries are spread over the lanes: they read different parameters at once.
    true,
  );
  return { code, bindings: roles, wg, perRow: wg, ...(planned ? { hoist: planned.hoist } : {}) };
}
