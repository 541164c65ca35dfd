import {
  type Backend,
  type Cell,
  DEFAULT_TOLERANCE,
  type DType,
  dopri5,
  ivpVjp,
  solveIvp,
  solveIvpWithGrad,
  type Tensor,
} from '@deerjs/core';
import type { Params, Solver } from '@deerjs/nn';
import { STATE } from './two-body.js';

export interface OdeRunOptions {
  readonly solver: Solver;
  readonly dtype: DType;
  readonly maxIter: number;
  /** Cancels the solve (see core's `signal` option). */
  readonly signal?: AbortSignal;
}

export interface Trajectory {
  /** [B, T, 8] at t_1 … t_T. */
  readonly y: Float64Array;
  /** Newton iterations (0 for the sequential solver). */
  readonly newton: number;
  readonly fellBack: boolean;
}

export interface FitResult extends Trajectory {
  /** Mean squared error over batch, grid and state. */
  readonly loss: number;
  readonly grads: Params;
}

async function forward(
  backend: Backend,
  field: Cell,
  params: Readonly<Params>,
  y0: Tensor,
  t: Float64Array,
  o: OdeRunOptions,
  guess: Float64Array | undefined,
  withGrad: boolean,
) {
  const problem = { y0, t };
  if (o.solver === 'sequential') {
    const tol = DEFAULT_TOLERANCE[o.dtype];
    const r = await dopri5(backend, field, params, problem, { ...tol, ...(o.signal ? { signal: o.signal } : {}) });
    return {
      y: r.y,
      newton: 0,
      fellBack: false,
      vjp: (dy: Tensor) => ivpVjp(backend, field, params, problem, r.y, dy),
      dispose: () => backend.dispose(r.y),
    };
  }
  const B = y0.shape[0]!;
  const g = guess ? backend.tensor(guess, [B, t.length - 1, STATE], o.dtype) : undefined;
  try {
    const opts = { maxIter: o.maxIter, ...(g ? { initialGuess: g } : {}), ...(o.signal ? { signal: o.signal } : {}) };
    if (!withGrad) {
      const r = await solveIvp(backend, field, params, problem, opts);
      return {
        y: r.y,
        newton: r.stats.iterations,
        fellBack: r.stats.fellBack,
        vjp: undefined,
        dispose: () => backend.dispose(r.y),
      };
    }
    const r = await solveIvpWithGrad(backend, field, params, problem, opts);
    return { y: r.y, newton: r.stats.iterations, fellBack: r.stats.fellBack, vjp: r.vjp, dispose: r.dispose };
  } finally {
    if (g) backend.dispose(g);
  }
}

/** Integrate the field from y0 ([B, 8]) over the grid; `guess` ([B, T, 8]) warm-starts DEER. */
export async function integrate(
  backend: Backend,
  field: Cell,
  params: Readonly<Params>,
  y0: Float64Array,
  t: Float64Array,
  o: OdeRunOptions,
  guess?: Float64Array,
): Promise<Trajectory> {
  const y0t = backend.tensor(y0, [y0.length / STATE, STATE], o.dtype);
  try {
    const r = await forward(backend, field, params, y0t, t, o, guess, false);
    try {
      return { y: Float64Array.from(await backend.read(r.y)), newton: r.newton, fellBack: r.fellBack };
    } finally {
      r.dispose();
    }
  } finally {
    backend.dispose(y0t);
  }
}

/** MSE of the integrated trajectories against `target` and its gradient by the adjoint method. */
export async function fitStep(
  backend: Backend,
  field: Cell,
  params: Readonly<Params>,
  y0: Float64Array,
  target: Float64Array,
  t: Float64Array,
  o: OdeRunOptions,
  guess?: Float64Array,
): Promise<FitResult> {
  const B = y0.length / STATE;
  const T = t.length - 1;
  const y0t = backend.tensor(y0, [B, STATE], o.dtype);
  try {
    const r = await forward(backend, field, params, y0t, t, o, guess, true);
    try {
      const y = Float64Array.from(await backend.read(r.y));
      const dy = new Float64Array(y.length);
      let loss = 0;
      for (let i = 0; i < y.length; i++) {
        const e = y[i]! - target[i]!;
        loss += e * e;
        dy[i] = (2 * e) / y.length;
      }
      const dyt = backend.tensor(dy, [B, T, STATE], o.dtype);
      const grads: Params = {};
      try {
        const g = await r.vjp!(dyt);
        backend.dispose(g.y0);
        if (g.x) backend.dispose(g.x);
        for (const [name, v] of Object.entries(g.params)) {
          grads[name] = Float64Array.from(await backend.read(v));
          backend.dispose(v);
        }
      } finally {
        backend.dispose(dyt);
      }
      return { y, loss: loss / y.length, grads, newton: r.newton, fellBack: r.fellBack };
    } finally {
      r.dispose();
    }
  } finally {
    backend.dispose(y0t);
  }
}
