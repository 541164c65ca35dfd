import { type Backend, type Cell, defineCell, dopri5, lang, Rng } from '@deerjs/core';

const { add, concat, constant, div, grad, mul, neg, slice, sqrt, square, sub, sum } = lang;

/** Masses and gravitational constant of the two-body problem. */
export interface TwoBody {
  readonly m1: number;
  readonly m2: number;
  readonly G: number;
}

export const UNIT_BODIES: TwoBody = { m1: 1, m2: 1, G: 1 };

/** State layout, shared with `cells.hamiltonian({ dof: 4 })`: [q1x, q1y, q2x, q2y, p1x, p1y, p2x, p2y]. */
export const STATE = 8;

/**
 * The true field f = (∂H/∂p, −∂H/∂q) of H = |p1|²/(2m1) + |p2|²/(2m2) − G m1 m2 / |q1 − q2|,
 * written as H and differentiated by the cell language like the network is.
 */
export function twoBodyField({ m1, m2, G }: TwoBody = UNIT_BODIES): Cell {
  return defineCell({ name: 'two-body', state: STATE, input: 0, params: {} }, (y) => {
    const d = sub(slice(y, 0, 2), slice(y, 2, 2));
    const kinetic = add(
      mul(sum(square(slice(y, 4, 2))), 1 / (2 * m1)),
      mul(sum(square(slice(y, 6, 2))), 1 / (2 * m2)),
    );
    const H = sub(kinetic, div(constant(G * m1 * m2), sqrt(sum(square(d)))));
    const g = grad(H, y);
    return concat(slice(g, 4, 4), neg(slice(g, 0, 4)));
  });
}

/** H at one state (offset `o` into a flat array of states). */
export function energy(y: ArrayLike<number>, o = 0, { m1, m2, G }: TwoBody = UNIT_BODIES): number {
  const dx = y[o]! - y[o + 2]!;
  const dy = y[o + 1]! - y[o + 3]!;
  const k1 = y[o + 4]! ** 2 + y[o + 5]! ** 2;
  const k2 = y[o + 6]! ** 2 + y[o + 7]! ** 2;
  return k1 / (2 * m1) + k2 / (2 * m2) - (G * m1 * m2) / Math.hypot(dx, dy);
}

/**
 * Near-circular orbits about the centre of mass at the origin: separation r ∈ [1, 2], random phase,
 * the circular speed times (1 + small noise) and a small radial kick. [count, 8].
 */
export function initialConditions(count: number, seed: number, bodies: TwoBody = UNIT_BODIES): Float64Array {
  const { m1, m2, G } = bodies;
  const rng = new Rng(seed);
  const out = new Float64Array(count * STATE);
  const M = m1 + m2;
  for (let k = 0; k < count; k++) {
    const r = 1 + rng.uniform();
    const phase = 2 * Math.PI * rng.uniform();
    const [ux, uy] = [Math.cos(phase), Math.sin(phase)];
    // Relative motion: circular speed √(G M / r), perturbed.
    const v = Math.sqrt((G * M) / r) * (1 + 0.05 * (2 * rng.uniform() - 1));
    const vr = 0.05 * v * (2 * rng.uniform() - 1);
    const [vx, vy] = [-uy * v + ux * vr, ux * v + uy * vr];
    // Body i sits at ±(m_j / M)·r from the centre of mass and carries ±μ·v momentum (μ = m1 m2 / M).
    const o = k * STATE;
    out.set(
      [
        (m2 / M) * r * ux,
        (m2 / M) * r * uy,
        -(m1 / M) * r * ux,
        -(m1 / M) * r * uy,
        ((m1 * m2) / M) * vx,
        ((m1 * m2) / M) * vy,
        -((m1 * m2) / M) * vx,
        -((m1 * m2) / M) * vy,
      ],
      o,
    );
  }
  return out;
}

/** t_0 = 0 < … < t_{points−1} = tEnd, evenly spaced. */
export function timeGrid(points: number, tEnd: number): Float64Array {
  return Float64Array.from({ length: points }, (_, i) => (tEnd * i) / (points - 1));
}

export interface Trajectories {
  readonly count: number;
  /** Grid times, y0 included. */
  readonly t: Float64Array;
  /** [count, 8] initial states. */
  readonly y0: Float64Array;
  /** [count, T, 8] states at t_1 … t_T (T = t.length − 1). */
  readonly y: Float64Array;
}

/** Reference trajectories of the true field by Dormand–Prince at tight tolerance, on `backend` (float64). */
export async function generateOrbits(
  backend: Backend,
  count: number,
  t: Float64Array,
  seed: number,
  tol = 1e-12,
  bodies: TwoBody = UNIT_BODIES,
  signal?: AbortSignal,
): Promise<Trajectories> {
  const y0 = initialConditions(count, seed, bodies);
  const y0t = backend.tensor(y0, [count, STATE], 'float64');
  try {
    const r = await dopri5(backend, twoBodyField(bodies), {}, { y0: y0t, t }, { atol: tol, rtol: tol, ...(signal ? { signal } : {}) });
    const y = Float64Array.from(await backend.read(r.y));
    backend.dispose(r.y);
    return { count, t, y0, y };
  } finally {
    backend.dispose(y0t);
  }
}
