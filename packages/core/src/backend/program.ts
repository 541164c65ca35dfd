import type { Graph, NodeId } from '../cell/graph.js';
import type { MatExpr } from '../cell/matexpr.js';

/**
 * What a backend compiles: a per-step graph, the vector nodes to write for every (batch, time)
 * element, and optionally a Jacobian expression to evaluate in block structure of size
 * `blockSize` (n: dense, 1: diagonal). Core builds programs once per cell and variant and reuses
 * the same object, so a backend may cache its compiled form by object identity.
 */
export interface StepProgram {
  readonly graph: Graph;
  readonly outputs: readonly NodeId[];
  readonly jacobian?: { readonly expr: MatExpr; readonly blockSize: number };
}
