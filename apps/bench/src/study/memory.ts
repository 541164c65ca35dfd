import { type Backend, type Cell, Rng, sequential, type Tensor } from '@deerjs/core';

/** Where the probes start, as fractions of T, and how many random states start at each. */
const PROBE_STARTS = [0, 0.25, 0.5] as const;
const PROBE_STATES = 2;

/**
 * The problem's memory: the most steps, over probes, that a trajectory started from a random state
 * (uniform in ±1 per entry) at a probe time takes to join the true trajectory for good, within the
 * solve's tolerance (|y − y*| ≤ atol + rtol·|y*| at every later step). Censored at the steps left.
 *
 * The largest Lyapunov exponent measures infinitesimal perturbations; this measures finite ones.
 * A parallel Newton method far from the solution carries information about one step per iteration
 * (its linear model is wrong there), so the iterations it needs grow with this, not with the
 * exponent: a multistable saturated network can be contractive along its trajectory (exponent < 0)
 * and still remember a wrong state for hundreds of steps.
 */
export async function trajectoryMemory(
  backend: Backend,
  cell: Cell,
  params: Record<string, Float64Array>,
  x: Tensor,
  truth: ArrayLike<number>,
  tol: { atol: number; rtol: number },
  seed: number,
): Promise<number> {
  const [B, T] = [x.shape[0]!, x.shape[1]!];
  const n = cell.stateSize;
  const rng = new Rng(seed);
  let memory = 0;
  for (const at of PROBE_STARTS) {
    const t0 = Math.floor(at * T);
    const len = T - t0;
    const xs = t0 === 0 ? x : backend.sliceTime(x, t0, len);
    try {
      for (let k = 0; k < PROBE_STATES; k++) {
        const h0 = backend.tensor(rng.uniformArray(B * n), [B, n], x.dtype);
        try {
          const { y } = await sequential(backend, cell, params, xs, { h0 });
          const got = await backend.read(y);
          backend.dispose(y);
          for (let b = 0; b < B; b++) {
            // The last step still off the true trajectory; the trajectory has joined after it.
            let last = -1;
            for (let t = len - 1; t >= 0 && last < 0; t--) {
              for (let i = 0; i < n; i++) {
                const want = truth[(b * T + t0 + t) * n + i]!;
                if (!(Math.abs(got[(b * len + t) * n + i]! - want) <= tol.atol + tol.rtol * Math.abs(want))) {
                  last = t;
                  break;
                }
              }
            }
            memory = Math.max(memory, last + 1);
          }
        } finally {
          backend.dispose(h0);
        }
      }
    } finally {
      if (xs !== x) backend.dispose(xs);
    }
  }
  return memory;
}
