import { IS_FINITE_FN, MAIN_HEAD, storage, UNIFORM_DECL, uni, WG } from '../wgsl/common.js';

const atomics = (binding: number) =>
  `@group(0) @binding(${binding}) var<storage, read_write> res: array<atomic<u32>, 4>;`;

/**
 * One entry of the Newton update, shared by NEWTON_UPDATE and the scan's fused fix-up: sanitize
 * the raw value (NaN/±Inf → 0, clip) and fold its change into the invocation's accumulators
 * (`upd_*`: max |Δ|, max scaled |Δ|, replaced, clipped, settled-front key). `o` is the entry's
 * offset in its row. Returns the value to store.
 */
export const UPDATE_ENTRY_FN = `var<private> upd_d: f32;
var<private> upd_sc: f32;
var<private> upd_rep: u32;
var<private> upd_clp: u32;
var<private> upd_key: u32;
fn update_entry(old: f32, raw: f32, o: u32, rowLen: u32, atol: f32, rtol: f32, clip: f32) -> f32 {
  var v = raw;
  var bad = false;
  if (!is_finite(v)) { v = 0.0; upd_rep += 1u; bad = true; }
  else if (v >= clip) { v = clip; upd_clp += 1u; bad = true; }
  else if (v <= -clip) { v = -clip; upd_clp += 1u; bad = true; }
  let dd = abs(v - old);
  upd_d = max(upd_d, dd);
  let q = dd / (atol + rtol * abs(v));
  // 0/0 is NaN and never the max; x/0 is +Inf and is.
  if (dd > 0.0 && (bitcast<u32>(q) & 0x7fffffffu) <= 0x7f800000u) {
    upd_sc = max(upd_sc, q);
    if (q > 1.0) { bad = true; }
  }
  if (bad) { upd_key = max(upd_key, rowLen - o); }
  return v;
}`;

/** The accumulators of UPDATE_ENTRY_FN added into res for batch row `row` (one set of atomics). */
export const UPDATE_FLUSH_FN = `fn update_flush(row: u32, d: f32, sc: f32, rep: u32, clp: u32, key: u32) {
  atomicMax(&res[0], bitcast<u32>(d));
  atomicMax(&res[1u + 4u * row], bitcast<u32>(sc));
  if (rep > 0u) { atomicAdd(&res[2u + 4u * row], rep); }
  if (clp > 0u) { atomicAdd(&res[3u + 4u * row], clp); }
  if (key > 0u) { atomicMax(&res[4u + 4u * row], key); }
}`;

/**
 * What a kernel applying the Newton update declares, its first binding at `first`: res (the
 * measures, see NEWTON_UPDATE), Act (1 for the rows to update) and the update's functions.
 */
export function updateParts(first: number): string[] {
  return [
    `@group(0) @binding(${first}) var<storage, read_write> res: array<atomic<u32>>;`,
    `@group(0) @binding(${first + 1}) var<storage, read> Act: array<u32>;`,
    IS_FINITE_FN,
    UPDATE_ENTRY_FN,
    UPDATE_FLUSH_FN,
  ];
}

/**
 * One set of atomics per workgroup of `size` lanes, all in one batch row: the workgroup arrays
 * (`decls`) and `reduce(l, row, when)`, which tree-reduces every lane's `upd_*` accumulators
 * (lane index `l`) and flushes them into res for `row` when `when` holds. Call it in uniform
 * control flow: it has barriers.
 */
export function updateReduction(size: number): { decls: string; reduce: (l: string, row: string, when: string) => string } {
  return {
    decls: `var<workgroup> wd: array<f32, ${size}>;
var<workgroup> ws: array<f32, ${size}>;
var<workgroup> wr: array<u32, ${size}>;
var<workgroup> wc: array<u32, ${size}>;
var<workgroup> wk: array<u32, ${size}>;`,
    reduce: (l, row, when) => `  wd[${l}] = upd_d;
  ws[${l}] = upd_sc;
  wr[${l}] = upd_rep;
  wc[${l}] = upd_clp;
  wk[${l}] = upd_key;
  workgroupBarrier();
  for (var w = ${size / 2}u; w > 0u; w = w / 2u) {
    if (${l} < w) {
      wd[${l}] = max(wd[${l}], wd[${l} + w]);
      ws[${l}] = max(ws[${l}], ws[${l} + w]);
      wr[${l}] = wr[${l}] + wr[${l} + w];
      wc[${l}] = wc[${l}] + wc[${l} + w];
      wk[${l}] = max(wk[${l}], wk[${l} + w]);
    }
    workgroupBarrier();
  }
  if (${l} == 0u && ${when}) { update_flush(${row}, wd[0], ws[0], wr[0], wc[0], wk[0]); }`,
  };
}

const NEWTON_REDUCTION = updateReduction(WG);

/**
 * Sanitize the raw iterate into Y and reduce, per workgroup then by atomics into res:
 * res[0] = max |Δ| (f32 bits: non-negative floats order like their bits), and for each batch row b
 * res[1 + 4b] = max scaled |Δ| (bits), res[2 + 4b] = entries replaced (NaN/±Inf → 0),
 * res[3 + 4b] = entries clipped (|v| ≥ clip), res[4 + 4b] = max over entries not within tolerance
 * of (row length − offset in the row), 0 if none: the first such entry. Rows whose Act entry is 0
 * keep Old and count nothing.
 *
 * Each row gets G workgroups; invocation j of a row visits offsets j, j + G·WG, … (adjacent lanes,
 * adjacent addresses) and accumulates privately, so a workgroup lies in one row and ends with one
 * tree reduction and one set of atomics however long the row. Few, long-running invocations matter
 * on software adapters, where every barrier is paid per invocation.
 * Uniforms: 0 = size, 1 = atol, 2 = rtol, 3 = clip (f32 bits), 4 = row length, 5 = 1 when R holds
 * the step δ (the raw iterate is Old + δ), 6 = G.
 */

export const NEWTON_UPDATE = [
  UNIFORM_DECL,
  storage(1, 'R', false),
  storage(2, 'Old', false),
  storage(3, 'Y', true),
  ...updateParts(4),
  NEWTON_REDUCTION.decls,
  `${MAIN_HEAD}
  let size = ${uni(0)};
  let atol = bitcast<f32>(${uni(1)});
  let rtol = bitcast<f32>(${uni(2)});
  let clip = bitcast<f32>(${uni(3)});
  let rowLen = ${uni(4)};
  let delta = ${uni(5)} == 1u;
  let span = ${uni(6)} * ${WG}u;
  let row = idx / span;
  let rows = size / rowLen;
  if (row < rows) {
    let live = Act[row] != 0u;
    let base = row * rowLen;
    for (var o = idx % span; o < rowLen; o += span) {
      let at = base + o;
      let old = Old[at];
      if (!live) {
        Y[at] = old;
        continue;
      }
      var v = R[at];
      if (delta) { v = old + v; }
      Y[at] = update_entry(old, v, o, rowLen, atol, rtol, clip);
    }
  }
  let l = gid.x % ${WG}u;
${NEWTON_REDUCTION.reduce('l', 'row', 'row < rows')}
}`,
].join('\n');

/** Workgroups per row for NEWTON_UPDATE: about `lanes` invocations in all, at least one workgroup a row. */
export function updateGroupsPerRow(rowLen: number, rows: number, lanes: number): number {
  return Math.max(1, Math.min(Math.ceil(rowLen / WG), Math.ceil(lanes / (Math.max(1, rows) * WG))));
}

/** res[0] = max over non-finite entries i of (size − i): 0 when all are finite. Uniform 0: size. */
export const FIND_NON_FINITE = [
  UNIFORM_DECL,
  storage(1, 'X', false),
  atomics(2),
  IS_FINITE_FN,
  `${MAIN_HEAD}
  let size = ${uni(0)};
  for (var i = idx; i < size; i = i + ${uni(1)}) {
    if (!is_finite(X[i])) {
      atomicMax(&res[0], size - i);
      break;
    }
  }
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
