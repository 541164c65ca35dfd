import { IS_FINITE_FN, MAIN_HEAD, storage, UNIFORM_DECL, uni, WG } from '../wgsl/common.js';

const atomics = (binding: number) =>
  `@group(0) @binding(${binding}) var<storage, read_write> res: array<atomic<u32>, 4>;`;

/**
 * Sanitize the raw iterate into Y and reduce, per workgroup then by atomics into res:
 * res[0] = max |Δ| (f32 bits: non-negative floats order like their bits), and for each batch row b
 * res[1 + 4b] = max scaled |Δ| (bits), res[2 + 4b] = entries replaced (NaN/±Inf → 0),
 * res[3 + 4b] = entries clipped (|v| ≥ clip), res[4 + 4b] = max over entries not within tolerance
 * of (row length − offset in the row), 0 if none: the first such entry. Rows whose Act entry is 0
 * keep Old and count nothing.
 * Uniforms: 0 = size, 1 = atol, 2 = rtol, 3 = clip (f32 bits), 4 = row length, 5 = 1 when R holds
 * the step δ (the raw iterate is Old + δ).
 */
export const NEWTON_UPDATE = [
  UNIFORM_DECL,
  storage(1, 'R', false),
  storage(2, 'Old', false),
  storage(3, 'Y', true),
  '@group(0) @binding(4) var<storage, read_write> res: array<atomic<u32>>;',
  '@group(0) @binding(5) var<storage, read> Act: array<u32>;',
  IS_FINITE_FN,
  `var<workgroup> wd: array<f32, ${WG}>;
var<workgroup> ws: array<f32, ${WG}>;
var<workgroup> wr: array<u32, ${WG}>;
var<workgroup> wc: array<u32, ${WG}>;
var<workgroup> wk: array<u32, ${WG}>;`,
  `${MAIN_HEAD}
  let size = ${uni(0)};
  let atol = bitcast<f32>(${uni(1)});
  let rtol = bitcast<f32>(${uni(2)});
  let clip = bitcast<f32>(${uni(3)});
  let rowLen = ${uni(4)};
  var d = 0.0;
  var sc = 0.0;
  var rep = 0u;
  var clp = 0u;
  var key = 0u;
  var row = 0u;
  if (idx < size) {
    row = idx / rowLen;
    let old = Old[idx];
    if (Act[row] == 0u) {
      Y[idx] = old;
    } else {
      var v = R[idx];
      if (${uni(5)} == 1u) { v = old + v; }
      if (!is_finite(v)) { v = 0.0; rep = 1u; }
      else if (v >= clip) { v = clip; clp = 1u; }
      else if (v <= -clip) { v = -clip; clp = 1u; }
      Y[idx] = v;
      d = abs(v - old);
      let q = d / (atol + rtol * abs(v));
      // 0/0 is NaN and never the max; x/0 is +Inf and is.
      if (d > 0.0 && (bitcast<u32>(q) & 0x7fffffffu) <= 0x7f800000u) { sc = q; }
      if (rep + clp > 0u || sc > 1.0) { key = rowLen - (idx - row * rowLen); }
    }
  }
  let l = gid.x % ${WG}u;
  wd[l] = d;
  ws[l] = sc;
  wr[l] = rep;
  wc[l] = clp;
  wk[l] = key;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (l < w) {
      wd[l] = max(wd[l], wd[l + w]);
      ws[l] = max(ws[l], ws[l + w]);
      wr[l] = wr[l] + wr[l + w];
      wc[l] = wc[l] + wc[l + w];
      wk[l] = max(wk[l], wk[l + w]);
    }
    workgroupBarrier();
  }
  let first = idx - l;
  let last = min(first + ${WG - 1}u, max(size, 1u) - 1u);
  if (l == 0u) { atomicMax(&res[0], bitcast<u32>(wd[0])); }
  if (first / rowLen == last / rowLen) {
    // The whole workgroup lies in one row: one set of atomics.
    if (l == 0u && first < size) {
      let r = first / rowLen;
      atomicMax(&res[1u + 4u * r], bitcast<u32>(ws[0]));
      if (wr[0] > 0u) { atomicAdd(&res[2u + 4u * r], wr[0]); }
      if (wc[0] > 0u) { atomicAdd(&res[3u + 4u * r], wc[0]); }
      if (wk[0] > 0u) { atomicMax(&res[4u + 4u * r], wk[0]); }
    }
  } else if (idx < size) {
    if (sc > 0.0) { atomicMax(&res[1u + 4u * row], bitcast<u32>(sc)); }
    if (rep > 0u) { atomicAdd(&res[2u + 4u * row], rep); }
    if (clp > 0u) { atomicAdd(&res[3u + 4u * row], clp); }
    if (key > 0u) { atomicMax(&res[4u + 4u * row], key); }
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
