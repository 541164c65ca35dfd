import {
  type Backend,
  type Cell,
  checkDeerOptions,
  checkOptionNames,
  type DeerGradients,
  type DeerOptions,
  deerWithGrad,
  implicitVjp,
  sequential,
  ShapeError,
  type Tensor,
  UnsupportedOptionError,
  type VjpOptions,
} from '@deerjs/core';

export type Solver = 'deer' | 'sequential';

/** One layer's forward pass, kept for its backward pass. */
export interface LayerRun {
  /** The layer's output: y, or y + x with a residual connection. The run owns it. */
  readonly out: Tensor;
  readonly residual: boolean;
  /** Newton iterations (0 for the sequential solver). */
  readonly iterations: number;
  readonly fellBack: boolean;
  /**
   * Whether `out` is the recurrence's trajectory as the solve vouches for it: Newton met the
   * tolerance, or what it did not finish was evaluated step by step. False where the solve says it
   * did not converge and nothing replaced it — `deer.fallback: 'none'` returned rows Newton did not
   * finish; DEER's cost model evaluated step by step and the trajectory overflowed; or core's
   * `stopReason` is 'rounding': the tolerance is finer than the dtype resolves at the answer (say
   * rtol 1e-9 in float32), so the answer, kept as it is (not replaced by the fallback, which would be
   * no better), meets it only as rounded. In the first two cases the gradients are those of what was
   * returned, not of the true trajectory; under 'rounding' the trajectory is as good as the dtype
   * allows (loosen the tolerance to have it reported as converged). Always true for the
   * sequential solver.
   */
  readonly converged: boolean;
  /** Gradients given ∂L/∂y ([B, T, n]); the caller owns what comes back. */
  /** `options.signal` cancels it (default: the layer's `deer.signal`). */
  vjp(dy: Tensor, options?: VjpOptions): Promise<DeerGradients>;
  dispose(): void;
}

export interface LayerRunOptions {
  readonly solver: Solver;
  /**
   * Options of the DEER solve (tolerances, Jacobian structure, fallback). Checked whatever the
   * solver (core's `checkDeerOptions`): the sequential solver reads only `checkFinite` and `signal`, but a misspelt or
   * wrong option is an error there too, not something that waits for the switch to 'deer'.
   */
  readonly deer?: DeerOptions;
  /** Add the input to the output (only when their shapes agree). */
  readonly residual: boolean;
}

/**
 * Run one recurrent layer over x [B, T, m] on the backend. 'deer' solves by Newton (gradients by
 * implicit differentiation at the solution); 'sequential' steps through time and takes gradients
 * from the same reverse scan, which is exact at any exact trajectory, so both solvers train alike.
 * `opts.deer` is checked whatever the solver; the sequential solver starts from zero states over
 * whole rows, so `deer.h0` and `deer.lengths`, which it would not honour, are refused there.
 */
export async function runLayer(
  backend: Backend,
  cell: Cell,
  params: Readonly<Record<string, Float64Array>>,
  x: Tensor,
  opts: LayerRunOptions,
): Promise<LayerRun> {
  if (opts?.solver !== 'deer' && opts?.solver !== 'sequential')
    throw new UnsupportedOptionError('solver', opts?.solver, "'deer' or 'sequential'");
  if (opts.deer !== undefined) checkDeerOptions(cell, opts.deer, 'runLayer');
  const n = cell.stateSize;
  const residual = opts.residual && x.shape[2] === n;
  const dtype = x.dtype;
  if (opts.solver === 'deer') {
    const r = await deerWithGrad(backend, cell, params, x, { checkFinite: false, ...opts.deer });
    let out: Tensor;
    try {
      out = residual ? backend.add(r.y, x) : r.y;
    } catch (err) {
      r.dispose();
      throw err;
    }
    return {
      out,
      residual,
      iterations: r.stats.iterations,
      fellBack: r.stats.fellBack,
      // Rows the fallback answered are exact; rows kept under 'rounding' are not vouched for, even
      // where other rows fell back (it had said true whenever any row had).
      converged: r.stats.converged || (r.stats.fellBack && r.stats.roundingRows === 0),
      vjp: (dy, o) => r.vjp(dy, o),
      dispose: () => {
        if (out !== r.y) backend.dispose(out);
        r.dispose();
      },
    };
  }
  for (const k of ['h0', 'lengths'] as const)
    if (opts.deer?.[k] !== undefined)
      throw new UnsupportedOptionError(`deer.${k}`, opts.deer[k], "nothing with solver 'sequential' (it runs whole rows from zero states)");
  const owned: Tensor[] = [];
  try {
    const p: Record<string, Tensor> = {};
    for (const spec of cell.params) {
      const v = params[spec.name];
      if (!v) throw new ShapeError(`${cell.name} ${spec.name}`, `${spec.size} values`, 'nothing (missing)');
      const t = backend.tensor(v, [spec.size], dtype);
      owned.push(t);
      p[spec.name] = t;
    }
    const y0 = backend.zeros([x.shape[0]!, n], dtype);
    owned.push(y0);
    const signal = opts.deer?.signal;
    const { y } = await sequential(backend, cell, p, x, { h0: y0, checkFinite: false, ...(signal ? { signal } : {}) });
    owned.push(y);
    const out = residual ? backend.add(y, x) : y;
    if (out !== y) owned.push(out);
    return {
      out,
      residual,
      iterations: 0,
      fellBack: false,
      converged: true,
      vjp: async (dy, o = {}) => {
        checkOptionNames(o, ['signal'], 'runLayer(...).vjp');
        return implicitVjp(backend, cell, p, x, y0, y, dy, undefined, undefined, o.signal ?? signal);
      },
      dispose: () => {
        for (const t of owned.splice(0)) backend.dispose(t);
      },
    };
  } catch (err) {
    for (const t of owned.splice(0)) backend.dispose(t);
    throw err;
  }
}
