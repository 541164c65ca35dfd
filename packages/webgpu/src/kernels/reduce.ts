import { IS_FINITE_FN, MAIN_HEAD, storage, UNIFORM_DECL, uni, WG } from '../wgsl/common.js';

const atomics = (binding: number) =>
  `@group(0) @binding(${binding}) var<storage, read_write> res: array<atomic<u32>, 4>;`;

/**
 * Sanitize the raw iterate into Y and reduce, per workgroup then by atomics into res:
 * [0] max |Δ| and [1] max scaled |Δ| as f32 bits (non-negative floats order like their bits),
 * [2] the count of replaced entries. Uniforms: 0 = size, 1 = atol, 2 = rtol, 3 = clip (f32 bits).
 */
export const NEWTON_UPDATE = [
  UNIFORM_DECL,
  storage(1, 'R', false),
  storage(2, 'Old', false),
  storage(3, 'Y', true),
  atomics(4),
  IS_FINITE_FN,
  `var<workgroup> wd: array<f32, ${WG}>;
var<workgroup> ws: array<f32, ${WG}>;
var<workgroup> wc: array<u32, ${WG}>;`,
  `${MAIN_HEAD}
  let size = ${uni(0)};
  let atol = bitcast<f32>(${uni(1)});
  let rtol = bitcast<f32>(${uni(2)});
  let clip = bitcast<f32>(${uni(3)});
  var d = 0.0;
  var sc = 0.0;
  var bad = 0u;
  if (idx < size) {
    var v = R[idx];
    if (!is_finite(v)) { v = 0.0; bad = 1u; }
    v = clamp(v, -clip, clip);
    Y[idx] = v;
    d = abs(v - Old[idx]);
    let q = d / (atol + rtol * abs(v));
    // 0/0 is NaN and never the max; x/0 is +Inf and is.
    if ((bitcast<u32>(q) & 0x7fffffffu) <= 0x7f800000u) { sc = q; }
  }
  let l = gid.x % ${WG}u;
  wd[l] = d;
  ws[l] = sc;
  wc[l] = bad;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (l < w) {
      wd[l] = max(wd[l], wd[l + w]);
      ws[l] = max(ws[l], ws[l + w]);
      wc[l] = wc[l] + wc[l + w];
    }
    workgroupBarrier();
  }
  if (l == 0u) {
    atomicMax(&res[0], bitcast<u32>(wd[0]));
    atomicMax(&res[1], bitcast<u32>(ws[0]));
    atomicAdd(&res[2], wc[0]);
  }
}`,
].join('\n');

/** res[0] = max over non-finite entries i of (size − i): 0 when all are finite. Uniform 0: size. */
export const FIND_NON_FINITE = [
  UNIFORM_DECL,
  storage(1, 'X', false),
  atomics(2),
  IS_FINITE_FN,
  `${MAIN_HEAD}
  let size = ${uni(0)};
  if (idx < size && !is_finite(X[idx])) { atomicMax(&res[0], size - idx); }
}`,
].join('\n');

/** Rows per partial sum of the column reductions. */
export const ROWS_PER_GROUP = 64;

/** out[g, c] = Σ rows r of group g of X[r, c]. Uniforms: 0 = rows, 1 = cols, 2 = groups. */
export const COLUMN_SUM = [
  UNIFORM_DECL,
  storage(1, 'X', false),
  storage(2, 'O', true),
  `${MAIN_HEAD}
  let rows = ${uni(0)};
  let cols = ${uni(1)};
  if (idx >= ${uni(2)} * cols) { return; }
  let g = idx / cols;
  let c = idx % cols;
  var acc = 0.0;
  for (var r = g * ${ROWS_PER_GROUP}u; r < min(rows, (g + 1u) * ${ROWS_PER_GROUP}u); r++) { acc += X[r * cols + c]; }
  O[idx] = acc;
}`,
].join('\n');

/**
 * Partial outer-product sums: out[g, (k·r + i)·c + j] = Σ_{e in group g} L[e, k·r + i] · R[e, k·c + j],
 * group g being elements g·per .. g·per + per − 1. Uniforms: 0 = elements, 1 = groups, 2 = blocks,
 * 3 = r, 4 = c, 5 = elements per group.
 */
export const OUTER_PARTIAL = [
  UNIFORM_DECL,
  storage(1, 'Lt', false),
  storage(2, 'Rt', false),
  storage(3, 'O', true),
  `${MAIN_HEAD}
  let elems = ${uni(0)};
  let kb = ${uni(2)};
  let nr = ${uni(3)};
  let nc = ${uni(4)};
  let per = kb * nr * nc;
  let span = ${uni(5)};
  if (idx >= ${uni(1)} * per) { return; }
  let g = idx / per;
  let o = idx % per;
  let j = o % nc;
  let ki = o / nc;
  let k = ki / nr;
  var acc = 0.0;
  for (var e = g * span; e < min(elems, (g + 1u) * span); e++) {
    acc += Lt[e * kb * nr + ki] * Rt[e * kb * nc + k * nc + j];
  }
  O[idx] = acc;
}`,
].join('\n');
