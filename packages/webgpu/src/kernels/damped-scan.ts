import { MAIN_HEAD, storage, UNIFORM_DECL, uni } from '../wgsl/common.js';

/**
 * The damped scan with diagonal transitions by parallel cyclic reduction. The tridiagonal system
 * of min Σ_t (δ_t − a_t δ_{t−1} − c_t)² + λ_b δ_t² lives in one buffer P of four planes (l, d, u, g),
 * each [B, T, n]; every round eliminates the neighbours at distance `stride` (out of range: the
 * identity row d = 1), ⌈log2 T⌉ rounds in all, then δ = g / d.
 */

/** P from A (diagonal, [B, T, n]), c and λ per row. Uniforms: 0 = size, 1 = T, 2 = n. */
export const DAMPED_SETUP = [
  UNIFORM_DECL,
  storage(1, 'A', false),
  storage(2, 'C', false),
  storage(3, 'Lam', false),
  storage(4, 'P', true),
  `${MAIN_HEAD}
  let size = ${uni(0)};
  if (idx >= size) { return; }
  let T = ${uni(1)};
  let n = ${uni(2)};
  let t = (idx / n) % T;
  let b = idx / (n * T);
  var next = 0.0;
  var cNext = 0.0;
  if (t + 1u < T) { next = A[idx + n]; cNext = C[idx + n]; }
  P[idx] = select(-A[idx], 0.0, t == 0u);
  P[size + idx] = 1.0 + Lam[b] + next * next;
  P[2u * size + idx] = -next;
  P[3u * size + idx] = C[idx] - next * cNext;
}`,
].join('\n');

/** One round of cyclic reduction from Pin to Pout. Uniforms: 0 = size, 1 = T, 2 = n, 3 = stride. */
export const DAMPED_ROUND = [
  UNIFORM_DECL,
  storage(1, 'Pin', false),
  storage(2, 'Pout', true),
  `${MAIN_HEAD}
  let size = ${uni(0)};
  if (idx >= size) { return; }
  let T = ${uni(1)};
  let n = ${uni(2)};
  let k = ${uni(3)};
  let t = (idx / n) % T;
  let l = Pin[idx];
  let d = Pin[size + idx];
  let u = Pin[2u * size + idx];
  let g = Pin[3u * size + idx];
  var lm = 0.0; var dm = 1.0; var um = 0.0; var gm = 0.0;
  if (t >= k) {
    let j = idx - k * n;
    lm = Pin[j]; dm = Pin[size + j]; um = Pin[2u * size + j]; gm = Pin[3u * size + j];
  }
  var lp = 0.0; var dp = 1.0; var up = 0.0; var gp = 0.0;
  if (t + k < T) {
    let j = idx + k * n;
    lp = Pin[j]; dp = Pin[size + j]; up = Pin[2u * size + j]; gp = Pin[3u * size + j];
  }
  let alpha = -l / dm;
  let gamma = -u / dp;
  Pout[idx] = alpha * lm;
  Pout[size + idx] = d + alpha * um + gamma * lp;
  Pout[2u * size + idx] = gamma * up;
  Pout[3u * size + idx] = g + alpha * gm + gamma * gp;
}`,
].join('\n');

/** δ = g / d. Uniform 0: size. */
export const DAMPED_SOLVE = [
  UNIFORM_DECL,
  storage(1, 'P', false),
  storage(2, 'O', true),
  `${MAIN_HEAD}
  let size = ${uni(0)};
  if (idx >= size) { return; }
  O[idx] = P[3u * size + idx] / P[size + idx];
}`,
].join('\n');
