import type { Cell, DeerGradients, Tensor } from '@deerjs/core';
import type { TfjsBackend } from './backend.js';

/**
 * Core's `implicitVjp`, synchronous (tf.customGrad's gradient function must return tensors, not a
 * promise): λ from the reverse scan with J_{t+1}ᵀ, then the per-step VJPs at the solution, summed.
 */
export function implicitVjpSync(
  backend: TfjsBackend,
  cell: Cell,
  params: Readonly<Record<string, Tensor>>,
  x: Tensor,
  y0: Tensor,
  y: Tensor,
  dy: Tensor,
): DeerGradients {
  const s = cell.exactBlockSize;
  const temps: Tensor[] = [];
  const tmp = <T extends Tensor>(t: T): T => {
    temps.push(t);
    return t;
  };
  try {
    const [B, T] = y.shape as [number, number];
    const yPrev = tmp(backend.shiftTime(y, y0, 1));
    const lin = backend.runStep(cell.linearizeProgram(s), { state: yPrev, input: x, params });
    tmp(lin.outputs[0]!);
    const J = tmp(lin.jacobian!);
    const Jnext = tmp(backend.shiftTime(J, null, -1));
    const zeros = tmp(backend.zeros([B, cell.stateSize]));
    const lambda = tmp(backend.scan({ A: Jnext, c: dy, y0: zeros, blockSize: s, reverse: true }));
    const v = cell.vjp;
    const outIds = [v.dState, v.dInput].filter((id): id is number => id !== null);
    const termNodes: number[] = [];
    for (const spec of cell.params) {
      for (const t of v.params[spec.name] ?? []) {
        if (t.kind === 'vector') termNodes.push(t.node);
        else termNodes.push(t.left, t.right);
      }
    }
    const res = backend.runStep(
      { graph: v.graph, outputs: [...outIds, ...termNodes] },
      { state: yPrev, input: x, cotangent: lambda, params },
    );
    let k = 0;
    const dState = v.dState !== null ? res.outputs[k++]! : null;
    const dInput = v.dInput !== null ? res.outputs[k++]! : null;
    for (const t of res.outputs) if (t !== dInput) tmp(t);
    const gradParams: Record<string, Tensor> = {};
    for (const spec of cell.params) {
      let acc: Tensor | null = null;
      for (const t of v.params[spec.name] ?? []) {
        let term: Tensor;
        if (t.kind === 'vector') term = backend.sumBatchTime(res.outputs[k++]!);
        else {
          const left = res.outputs[k++]!;
          const right = res.outputs[k++]!;
          term = backend.outerSum(left, right, spec.shape.length === 3 ? spec.shape[0]! : 1);
        }
        if (acc === null) acc = term;
        else {
          const sum = backend.add(acc, term);
          backend.dispose(acc);
          backend.dispose(term);
          acc = sum;
        }
      }
      gradParams[spec.name] = acc ?? backend.zeros([spec.size]);
    }
    const dx = dInput ?? backend.zeros([B, T, cell.inputSize]);
    const dh0 = dState ? backend.timeStep(dState, 0) : backend.zeros([B, cell.stateSize]);
    return { params: gradParams, x: dx, h0: dh0 };
  } finally {
    for (const t of temps) backend.dispose(t);
  }
}
