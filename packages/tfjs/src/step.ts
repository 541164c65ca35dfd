import { type MatExpr, matExprNodes, type StepProgram } from '@deerjs/core';
import type * as tfc from '@tensorflow/tfjs-core';
import { evalBlockJacobian, planBlockJacobian } from './block-jacobian.js';
import { cutColumns, expandRows } from './broadcast.js';
import type { Tf } from './tensor.js';
import type { Vec } from './broadcast.js';
import { compileVectors, type StepEnv, type VectorOptions } from './vectors.js';

type T = tfc.Tensor;

export type { StepEnv } from './vectors.js';

export interface StepValues {
  /** One [rows, size] tensor per program output. */
  readonly outputs: T[];
  /** [rows, n/s, s, s] when the program has a Jacobian. */
  readonly jacobian?: T;
}

export interface CompiledStep {
  /**
   * Evaluate over all elements at once; call inside tf.tidy. `hoisted` carries values that depend
   * on the input and params only from one call to the next with the same input and params (of any
   * program): they are read from it, and what this call computes of them is added (with tf.keep:
   * the owner of `hoisted` disposes them).
   */
  run(env: StepEnv, hoisted?: Hoisted): StepValues;
  /** Numbers held per element during `run` (every vector, the Jacobian's pieces). */
  readonly floatsPerElement: number;
  /** Whether some values depend on the input and params only (worth keeping between calls). */
  readonly hoistable: boolean;
}

/** Input-only values kept between calls (see `CompiledStep.run`). */
export interface Hoisted {
  readonly known: Map<string, Vec>;
  /** The kept tensors, to dispose when the input or a param goes away. */
  readonly tensors: T[];
}

export interface StepOptions extends VectorOptions {
  /**
   * Evaluate the Jacobian as dense n×n matrices per element and gather its blocks (the reference
   * the block-structured evaluation is tested against).
   */
  readonly denseJacobian?: boolean;
}

/** Compile a step program to batched tf ops over all (b, t) elements at once. */
export function compileStep(tf: Tf, program: StepProgram, options: StepOptions): CompiledStep {
  const g = program.graph;
  const jac = program.jacobian;
  const vectors = compileVectors(tf, g, [...program.outputs, ...(jac ? matExprNodes(jac.expr) : [])], options);
  const plan = jac
    ? planBlockJacobian(g, jac.expr, jac.blockSize, vectors.perElement, options.denseJacobian ?? false)
    : undefined;
  const gathers = new Map<MatExpr, Int32Array>();
  const floatsPerElement = g.nodes.reduce((sum, node) => sum + node.size, 0) + (plan?.floatsPerElement ?? 0);

  return {
    floatsPerElement,
    hoistable: vectors.hoistable,
    run(env, hoisted) {
      const known = hoisted ? new Map(hoisted.known) : undefined;
      const vec = vectors.bind(env, known);
      // What the caller gets it owns and disposes: a kept value (an output that reads only the
      // input) goes out as a new handle, or disposing it would break the cache.
      const kept = new Set<T>(hoisted?.tensors);
      const owned = (t: T) => (kept.has(t) ? tf.clone(t) : t);
      const outputs = program.outputs.map((id) => {
        const v = vec(id);
        return owned(v.perElement ? v.t : expandRows(tf, v.t, env.rows));
      });
      const keep = () => {
        if (!hoisted || !known) return;
        // Kept as new handles on the same data: the one computed may be an output the caller
        // disposes, or a view of the input.
        const copies = new Map<T, T>();
        for (const [k, v] of known) {
          if (hoisted.known.has(k)) continue;
          let t = copies.get(v.t);
          if (!t) {
            t = tf.keep(tf.clone(v.t));
            copies.set(v.t, t);
            hoisted.tensors.push(t);
          }
          hoisted.known.set(k, { ...v, t });
        }
      };
      if (!plan) {
        keep();
        return { outputs };
      }
      const cut = (t: T, start: number, size: number) => cutColumns(tf, t, start, size, options.cutByGather);
      const jacobian = owned(
        evalBlockJacobian(tf, g, plan, { rows: env.rows, vec, params: env.params, cut, hostLoops: options.hostLoops }, gathers),
      );
      keep();
      return { outputs, jacobian };
    },
  };
}
