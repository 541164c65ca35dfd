import { MAIN_HEAD, mainHead, SERIAL_WG, storage, UNIFORM_DECL, uni } from '../wgsl/common.js';

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

/**
 * The damped scan with s × s blocks (s > 1) by block parallel cyclic reduction. Per (b, block k)
 * the system is block tridiagonal along time with rows L_t δ_{t−h} + D_t δ_t + U_t δ_{t+h} = G_t,
 * and it stays symmetric under the reduction (U_t = L_{t+h}ᵀ, D_t symmetric positive definite), so
 * only L, D and G are kept: U_t is read as L_{t+h}ᵀ (0 past the end). One round at stride h, with
 * D_m = C_m C_mᵀ (Cholesky) and Y_m = C_m⁻¹ [L_m | U_m | G_m] (forward substitution only):
 *   L'_t = −Y^Uᵀ_{t−h} Y^L_{t−h},
 *   D'_t = D_t − Y^Uᵀ_{t−h} Y^U_{t−h} − Y^Lᵀ_{t+h} Y^L_{t+h},
 *   G'_t = G_t − Y^Uᵀ_{t−h} Y^G_{t−h} − Y^Lᵀ_{t+h} Y^G_{t+h},
 * which is α = −L_t D_{t−h}⁻¹, γ = −U_t D_{t+h}⁻¹ of the textbook round written through the factor
 * (L_t C_{t−h}⁻ᵀ = Y^Uᵀ_{t−h}, U_t C_{t+h}⁻ᵀ = Y^Lᵀ_{t+h}): half the triangular solves, and D'
 * symmetric by construction. A neighbour out of range is the identity row: its terms vanish.
 * After ⌈log2 T⌉ rounds δ_t = D_t⁻¹ G_t.
 *
 * Rows m = (b·T + t)·nb + k, R of them. P (and its twin Q) holds three planes: L [R, s, s], D
 * [R, s, s] and G [R, s]. Y is [R, s, 2s + 1], row-major per row block (entry (q, r) of row m at
 * (m·s + q)·(2s + 1) + r: columns 0..s−1 are Y^L, s..2s−1 Y^U, 2s Y^G), so that neighbouring
 * invocations, which take neighbouring columns, touch neighbouring addresses. s is a uniform and
 * every per-row temporary lives in storage (the invocation's own region), so one kernel serves any
 * s up to dense n = 64 without s × s private arrays. Uniforms of all of them: 0 = R, 1 = T,
 * 2 = nb, 3 = s, 4 = h (the stride; unused by setup and the final solve).
 *
 * Setup and combine run one invocation per (m, i, j) with j ≤ s: column s is G, the right-hand
 * side carried as one more column of [D | G], so that its sums run in lockstep with D's instead of
 * in a branch that every SIMD group would pay for.
 */
const BLOCK_SIZES = `  let R = ${uni(0)};
  let T = ${uni(1)};
  let nb = ${uni(2)};
  let s = ${uni(3)};
  let ss = s * s;
  let dOff = R * ss;
  let gOff = 2u * R * ss;`;

/** Invocation (m, i, j) of R · s · (s + 1), j = s: the G column. */
const BLOCK_CELL = `  if (idx >= R * s * (s + 1u)) { return; }
  let m = idx / (s * (s + 1u));
  let i = (idx / (s + 1u)) % s;
  let j = idx % (s + 1u);
  let t = (m / nb) % T;`;

/**
 * P from A ([B, T, nb, s, s]), c and λ: L_t = −A_t (0 at t = 0), D_t = (1 + λ) I + A_{t+1}ᵀ A_{t+1},
 * G_t = c_t − A_{t+1}ᵀ c_{t+1}, A_T = 0. A's row m is A_t of block k, laid out like L (entry (i, j)
 * at m·s² + i·s + j), and c_t's block k is at m·s.
 */
export const DAMPED_BLOCK_SETUP = [
  UNIFORM_DECL,
  storage(1, 'A', false),
  storage(2, 'C', false),
  storage(3, 'Lam', false),
  storage(4, 'P', true),
  `${MAIN_HEAD}
${BLOCK_SIZES}
${BLOCK_CELL}
  let b = m / (nb * T);
  let e = m * ss + i * s + j;
  let next = (m + nb) * ss;
  if (j < s) {
    P[e] = select(-A[e], 0.0, t == 0u);
    var d = select(0.0, 1.0 + Lam[b], i == j);
    if (t + 1u < T) {
      for (var q = 0u; q < s; q++) { d += A[next + q * s + i] * A[next + q * s + j]; }
    }
    P[dOff + e] = d;
  } else {
    var g = C[m * s + i];
    if (t + 1u < T) {
      for (var q = 0u; q < s; q++) { g -= A[next + q * s + i] * C[(m + nb) * s + q]; }
    }
    P[gOff + m * s + i] = g;
  }
}`,
].join('\n');

/**
 * The lower Cholesky factor C_m of every D_m, one invocation per row (an s³/6 serial loop), into
 * F's first R·s² floats (entry (i, j), i ≥ j, at m·s² + i·s + j; the upper triangle is not written).
 * F is the L plane of the buffer this round's combine writes: free until then, so no extra buffer.
 */
export const DAMPED_BLOCK_FACTOR = [
  UNIFORM_DECL,
  storage(1, 'P', false),
  storage(2, 'F', true),
  `${mainHead(SERIAL_WG)}
${BLOCK_SIZES}
  if (idx >= R) { return; }
  let c = idx * ss;
  let d = dOff + idx * ss;
  // Column by column (left-looking); only D's lower triangle is read.
  for (var j = 0u; j < s; j++) {
    var p = P[d + j * s + j];
    for (var q = 0u; q < j; q++) { p -= F[c + j * s + q] * F[c + j * s + q]; }
    let root = sqrt(p);
    F[c + j * s + j] = root;
    for (var i = j + 1u; i < s; i++) {
      var v = P[d + i * s + j];
      for (var q = 0u; q < j; q++) { v -= F[c + i * s + q] * F[c + j * s + q]; }
      F[c + i * s + j] = v / root;
    }
  }
}`,
].join('\n');

/**
 * Y = C⁻¹ [L | U | G] by forward substitution, one invocation per (row m, column r of 2s + 1),
 * each writing its own column of Y (which also holds the partial solution it reads back).
 */
export const DAMPED_BLOCK_FORWARD = [
  UNIFORM_DECL,
  storage(1, 'P', false),
  storage(2, 'F', false),
  storage(3, 'Y', true),
  `${MAIN_HEAD}
${BLOCK_SIZES}
  let h = ${uni(4)};
  let w = 2u * s + 1u;
  if (idx >= R * w) { return; }
  let m = idx / w;
  let r = idx % w;
  let t = (m / nb) % T;
  let c = m * ss;
  let y = m * s * w + r;
  // Entry i of the right-hand column is P[first + i·step]: column r of L_m, column r − s of
  // U_m = L_{t+h}ᵀ (row r − s of L_{t+h}; none past the end), or G_m. One load per entry whatever
  // the column, so lanes on different kinds of column do not diverge.
  var first = c + r;
  var step = s;
  if (r >= 2u * s) { first = gOff + m * s; step = 1u; }
  else if (r >= s) { first = (m + h * nb) * ss + (r - s) * s; step = 1u; }
  let zero = r >= s && r < 2u * s && t + h >= T;
  for (var i = 0u; i < s; i++) {
    var v = 0.0;
    if (!zero) { v = P[first + i * step]; }
    for (var q = 0u; q < i; q++) { v -= F[c + i * s + q] * Y[y + q * w]; }
    Y[y + i * w] = v / F[c + i * s + i];
  }
}`,
].join('\n');

/**
 * One round's combine into Pout, one invocation per (m, i, j ≤ s): entry (i, j) of L' and D', or
 * (j = s) entry i of G' (see above). Each term is a dot product of two columns of Y; for G' the
 * right-hand column is Y^G, which sits right after Y^U (column s + j) but not after Y^L.
 */
export const DAMPED_BLOCK_ROUND = [
  UNIFORM_DECL,
  storage(1, 'Pin', false),
  storage(2, 'Y', false),
  storage(3, 'Pout', true),
  `${MAIN_HEAD}
${BLOCK_SIZES}
${BLOCK_CELL}
  let h = ${uni(4)};
  let w = 2u * s + 1u;
  let e = m * ss + i * s + j;
  let out = select(dOff + e, gOff + m * s + i, j == s);
  var l = 0.0;
  var d = Pin[out];
  if (t >= h) {
    // Row t − h: its Y^U column i against its Y^L column j (L') and Y^U column j or Y^G (D', G').
    let y = (m - h * nb) * s * w;
    for (var q = 0u; q < s; q++) {
      let a = Y[y + q * w + s + i];
      l -= a * Y[y + q * w + j];
      d -= a * Y[y + q * w + s + j];
    }
  }
  if (t + h < T) {
    // Row t + h: its Y^L column i against its Y^L column j (D') or Y^G (G').
    let y = (m + h * nb) * s * w;
    let right = select(j, 2u * s, j == s);
    for (var q = 0u; q < s; q++) { d -= Y[y + q * w + i] * Y[y + q * w + right]; }
  }
  if (j < s) { Pout[e] = l; }
  Pout[out] = d;
}`,
].join('\n');

/**
 * δ_m = C_m⁻ᵀ C_m⁻¹ G_m, one invocation per row: forward then backward substitution in place in
 * its own s entries of O ([B, T, n]: row m's entries are at m·s).
 */
export const DAMPED_BLOCK_SOLVE = [
  UNIFORM_DECL,
  storage(1, 'P', false),
  storage(2, 'F', false),
  storage(3, 'O', true),
  `${mainHead(SERIAL_WG)}
${BLOCK_SIZES}
  if (idx >= R) { return; }
  let c = idx * ss;
  let o = idx * s;
  for (var i = 0u; i < s; i++) {
    var v = P[gOff + o + i];
    for (var q = 0u; q < i; q++) { v -= F[c + i * s + q] * O[o + q]; }
    O[o + i] = v / F[c + i * s + i];
  }
  for (var i = s; i > 0u; i--) {
    let e = i - 1u;
    var v = O[o + e];
    for (var q = i; q < s; q++) { v -= F[c + q * s + e] * O[o + q]; }
    O[o + e] = v / F[c + e * s + e];
  }
}`,
].join('\n');
