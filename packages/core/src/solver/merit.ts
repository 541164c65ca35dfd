import type { StepProgram } from '../backend/program.js';
import type { Backend, Tensor } from '../backend/types.js';
import { GraphBuilder } from '../cell/builder.js';
import { readTensor, type Solve } from './solve.js';

const programs = new Map<string, StepProgram>();

/**
 * q_t = Σ_i (r_ti / (atol + rtol·|y_ti + r_ti|))² per (b, t): the step program of the scaled
 * squared residual r = G(y) − y, state = y and input = r (both of size n).
 */
function residualNormProgram(n: number, atol: number, rtol: number): StepProgram {
  const key = `${n}/${atol}/${rtol}`;
  const hit = programs.get(key);
  if (hit) return hit;
  const g = new GraphBuilder(n, n, []);
  const y = g.state();
  const r = g.input();
  const weight = g.add(g.scalar(atol), g.mul(g.scalar(rtol), g.unary('abs', g.add(y, r))));
  const q = g.sum(g.unary('square', g.div(r, weight)));
  const program: StepProgram = { graph: g.graph(), outputs: [q] };
  programs.set(key, program);
  return program;
}

/**
 * The per-row sum over all (t, i) of the scaled squared residual r²/(atol + rtol|G|)², r = G − y:
 * ELK's merit (the 2-norm a Levenberg–Marquardt step decreases). Composed from backend ops: a step
 * program for q_t, a scan with unit transitions for the running sum, its last step read back.
 */
export function* residualMerit(
  backend: Backend,
  r: Tensor,
  y: Tensor,
  tol: { atol: number; rtol: number },
): Solve<Float64Array> {
  const [B, T, n] = [y.shape[0]!, y.shape[1]!, y.shape[2]!];
  const q = backend.runStep(residualNormProgram(n, tol.atol, tol.rtol), { state: y, input: r, params: {} })
    .outputs[0]!;
  const one = backend.tensor(new Float64Array(B).fill(1), [B, 1, 1, 1], y.dtype);
  const zero = backend.zeros([B, 1], y.dtype);
  let total: Tensor;
  try {
    const ones = backend.broadcastTime(one, T);
    try {
      const running = backend.scan({ A: ones, c: q, y0: zero, blockSize: 1, reverse: false });
      total = backend.timeStep(running, T - 1);
      backend.dispose(running);
    } finally {
      backend.dispose(ones);
    }
  } finally {
    backend.dispose(q);
    backend.dispose(one);
    backend.dispose(zero);
  }
  try {
    return Float64Array.from(yield* readTensor(total));
  } finally {
    backend.dispose(total);
  }
}
