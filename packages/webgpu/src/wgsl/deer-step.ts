import { matExprNodes, type StepProgram } from '@deerjs/core';
import { updateParts } from '../kernels/reduce.js';
import { bound, mainHead, SERIAL_WG, uni } from './common.js';
import { GraphEmitter, type Loads } from './graph.js';
import { bodyFor, type Hoist, type Kernel, kernelModule, planHoist, type Role, unrolledJacobianEntries, usedRoles } from './step.js';

/** A whole DEER step in one kernel, with its hoisted input part, if any. */
export interface DeerStepKernel extends Kernel {
  readonly hoist?: Hoist;
}

/**
 * One DEER step of y_t = f(y_{t−1}, x_t) as one serial pass per batch row (workgroups of
 * SERIAL_WG): at each t, the residual r_t = f(y_{t−1}, x_t) − y_t and the Jacobian blocks J_t at
 * the iterate (`ct`, y_{−1} = y0) in registers, δ_t = J_t δ_{t−1} + r_t, and y_t + δ_t written
 * through the Newton update's per-entry rule (UPDATE_ENTRY_FN, one flush of atomics per row).
 * It reads the input and the iterate and writes the new iterate: no Jacobian, residual or δ in
 * memory. Work-optimal, but its parallelism is the batch rows alone: for devices whose lanes the
 * rows already fill (a CPU behind a software adapter). `program` is a cell's residualProgram with
 * a Jacobian; undefined when its blocks are too large to unroll.
 * Uniforms: 0 = B, 1 = T, 2–4 = atol, rtol, clip (f32 bits). Extra bindings after the roles: the
 * update's result (atomics) and the active-row mask, as NEWTON_UPDATE's.
 */
export function compileDeerStep(program: StepProgram, hoisting = true): DeerStepKernel | undefined {
  const jac = program.jacobian;
  if (!jac) return undefined;
  const g = program.graph;
  const n = g.stateSize;
  const s = jac.blockSize;
  const r = program.outputs[0]!;
  const em = new GraphEmitter(g);
  const unrolled = unrolledJacobianEntries(g, jac, em);
  if (!unrolled) return undefined;
  const { entries, lets } = unrolled;
  const roots = [r, ...matExprNodes(jac.expr)];
  const planned = hoisting ? planHoist(g, roots) : undefined;
  const loads: Loads = {
    state: (i) => `sload(b, e, t, ${i})`,
    input: (i) => `xin[e * ${g.inputSize}u + ${i}]`,
    cotangent: (i) => `ct[e * ${n}u + ${i}]`,
  };
  const { decl, body } = bodyFor(em, roots, loads, planned && { layout: planned.layout, stride: planned.hoist.floats });
  // Every read goes through em before the bindings are chosen from em.uses.
  const step = entries.map((row, i) => {
    const k = Math.floor(i / s) * s;
    const terms = row.flatMap((v, j) => (v === null ? [] : [v === '1.0' ? `dl[${k + j}]` : `(${v}) * dl[${k + j}]`]));
    return `    nd[${i}] = ${[em.ref(r, `${i}u`), ...terms].join(' + ')};`;
  });
  // The iterate is the cotangent; the shifted state is read from it (or y0), never copied. A step
  // that never reads its state binds no y0: pipelines bind only what the shader reaches.
  const usesState = em.uses.state;
  const roles: Role[] = [
    ...usedRoles({ ...em.uses, state: false, cotangent: false }),
    'cotangent',
    ...(planned ? (['hoisted'] as const) : []),
    ...(usesState ? (['y0'] as const) : []),
    'out',
  ];
  const code = kernelModule(g, roles, new Set<Role>(['out']), [
    ...updateParts(roles.length + 1),
    ...em.decls,
    ...(usesState
      ? [
          `fn sload(b: u32, e: u32, t: u32, i: u32) -> f32 {
  if (t == 0u) { return y0[b * ${n}u + i]; }
  return ct[(e - 1u) * ${n}u + i];
}`,
        ]
      : []),
    `${mainHead(SERIAL_WG)}
  let B = ${uni(0)};
  let T = ${uni(1)};
  let atol = bitcast<f32>(${uni(2)});
  let rtol = bitcast<f32>(${uni(3)});
  let clip = bitcast<f32>(${uni(4)});
  if (idx >= B) { return; }
  let b = idx;
  let live = Act[b] != 0u;
  let rowLen = T * ${n}u;
${decl}
  var dl: array<f32, ${n}>;
  var nd: array<f32, ${n}>;
  for (var t = 0u; t < T; t++) {
    let e = b * T + t;
${body}
${lets.map((l) => `    ${l}`).join('\n')}
${step.join('\n')}
    dl = nd;
    for (var i = 0u; i < ${bound(n)}; i++) {
      let o = t * ${n}u + i;
      let old = ct[e * ${n}u + i];
      if (live) { outp[e * ${n}u + i] = update_entry(old, old + dl[i], o, rowLen, atol, rtol, clip); }
      else { outp[e * ${n}u + i] = old; }
    }
  }
  if (live) { update_flush(b, upd_d, upd_sc, upd_rep, upd_clp, upd_key); }
}`,
  ]);
  return { code, bindings: roles, ...(planned ? { hoist: planned.hoist } : {}) };
}
