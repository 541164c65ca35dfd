import { IS_FINITE_FN, mainHead, SERIAL_WG, storage, UNIFORM_DECL, uni } from '../wgsl/common.js';
import { updateParts, updateReduction } from './reduce.js';

/** Elements of a batch row one workgroup scans: one per invocation. */
export const TILE = 256;

/** Largest state size the tiled scan takes (a tile then spans ≥ 32 steps of every chain). */
export const TILED_MAX_N = 8;

/**
 * The diagonal recurrence (blocks of 1) for GPUs, as reduce-then-scan over tiles of TILE
 * consecutive elements of a batch row, every access coalesced (the chunked scan's lanes walk
 * addresses a chunk apart). A row's elements e = t·n + k interleave n independent chains; within
 * a tile each invocation holds one element and a Hillis–Steele scan at offsets n, 2n, 4n, …
 * composes every element with the earlier ones of its chain (lanes ≥ the row's end hold the
 * identity). Reversed, a row is walked from its last step (its elements in blocks of n).
 *   1. summarize: each tile's composed map per chain → M, V ([B, tiles, n]);
 *   2. (the caller) a forward scan of those maps from y0 → y at the end of every tile;
 *   3. fixup: each tile scanned again and applied to its carry-in (y0 for the first tile).
 * A tile's composed product overflows float32 where the recurrence expands over it (growth 1.5 a
 * step over 256 steps), and Inf·0 is NaN where the state is 0: the summaries flag such a row
 * (Flag[b]), `repair` then recomputes the flagged rows' carries by one serial walk per chain, and a
 * fix-up lane whose composed value is not finite walks its tile's steps from the carry. Every entry
 * is then what a serial pass gives wherever the composed maps lose no more than rounding (a state
 * held at a fixed point that the chain's map leaves, y = 256·y − 255, cancels 256^m against
 * 256^m − 1 within a tile: there only the chunked scan, which walks every step from its
 * boundary, is exact).
 * Uniforms: 0 = B, 1 = T, 2 = tiles per row; fixupUpdate adds 3–5 = atol, rtol, clip (f32 bits).
 */
export interface TiledScanKernels {
  readonly summarize: string;
  /** Between the summaries' scan and the fix-up: the carries of flagged rows, walked (B·n invocations of SERIAL_WG). */
  readonly repair: string;
  readonly fixup: string;
  /** Forward only: the fix-up applying each step as the Newton update (see scanKernels). */
  readonly fixupUpdate?: string;
}

export function tiledScanKernels(n: number, reverse: boolean): TiledScanKernels {
  /** The element at position p of a row's walk. */
  const elemOf = `fn elem_of(p: u32, T: u32) -> u32 { return ${reverse ? `(T - 1u - p / ${n}u) * ${n}u + p % ${n}u` : 'p'}; }`;
  const head = `var<workgroup> sa: array<f32, ${TILE}>;
var<workgroup> sc: array<f32, ${TILE}>;
/** (P, Q): the composition of this lane's element with the tile's earlier ones of its chain. */
fn tile_scan(l: u32, a0: f32, c0: f32) -> vec2<f32> {
  sa[l] = a0;
  sc[l] = c0;
  workgroupBarrier();
  for (var d = ${n}u; d < ${TILE}u; d = d * 2u) {
    var pa = 1.0;
    var pc = 0.0;
    if (l >= d) {
      pa = sa[l - d];
      pc = sc[l - d];
    }
    workgroupBarrier();
    if (l >= d) {
      let a = sa[l];
      sa[l] = a * pa;
      sc[l] = a * pc + sc[l];
    }
    workgroupBarrier();
  }
  return vec2<f32>(sa[l], sc[l]);
}
${elemOf}`;
  // Workgroup-uniform position: workgroup w is tile j of row b; lane l holds position p of the row's
  // walk, element e of the row (e = p forward), chain k.
  const locate = `@compute @workgroup_size(${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let B = ${uni(0)};
  let T = ${uni(1)};
  let nT = ${uni(2)};
  let w = wid.x + wid.y * nwg.x;
  if (w >= B * nT) { return; }
  let b = w / nT;
  let j = w % nT;
  let rowLen = T * ${n}u;
  let p = j * ${TILE}u + l;
  let ok = p < rowLen;
  let k = p % ${n}u;
  let e = elem_of(p, T);
  let g = b * rowLen + e;
  var a = 1.0;
  var c = 0.0;
  if (ok) {
    a = A[g];
    c = C[g];
  }
  let r = tile_scan(l, a, c);`;
  // Where the composed value is not finite (Inf·0 past an overflowed product), the lane walks its
  // chain's steps of the tile from the carry.
  const carry = `  var yin = Y0[b * ${n}u + k];
  if (j > 0u) { yin = Yc[(b * nT + j - 1u) * ${n}u + k]; }
  var y = r.x * yin + r.y;
  if (ok && !is_finite(y)) {
    let t0 = j * ${TILE}u;
    y = yin;
    for (var q = t0 + (k + ${n}u - t0 % ${n}u) % ${n}u; q <= p; q += ${n}u) {
      let gq = b * rowLen + elem_of(q, T);
      y = A[gq] * y + C[gq];
    }
  }`;
  const summarize = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'M', true),
    storage(4, 'V', true),
    '@group(0) @binding(5) var<storage, read_write> Flag: array<atomic<u32>>;',
    IS_FINITE_FN,
    head,
    `${locate}
  // The tile's last n lanes end every chain (padding lanes are the identity).
  if (l >= ${TILE - n}u) {
    let o = (b * nT + j) * ${n}u + k;
    M[o] = r.x;
    V[o] = r.y;
    if (!is_finite(r.x) || !is_finite(r.y)) { atomicOr(&Flag[b], 1u); }
  }
}`,
  ].join('\n');
  const repair = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'Y0', false),
    storage(4, 'Yc', true),
    '@group(0) @binding(5) var<storage, read> Flag: array<u32>;',
    `${elemOf}
${mainHead(SERIAL_WG)}
  let B = ${uni(0)};
  let T = ${uni(1)};
  let nT = ${uni(2)};
  if (idx >= B * ${n}u) { return; }
  let k = idx % ${n}u;
  let b = idx / ${n}u;
  if (Flag[b] == 0u) { return; }
  let rowLen = T * ${n}u;
  var y = Y0[b * ${n}u + k];
  for (var st = 0u; st < T; st++) {
    let p = st * ${n}u + k;
    let g = b * rowLen + elem_of(p, T);
    y = A[g] * y + C[g];
    let j = p / ${TILE}u;
    if (st + 1u == T || (p + ${n}u) / ${TILE}u != j) { Yc[(b * nT + j) * ${n}u + k] = y; }
  }
}`,
  ].join('\n');
  const fixup = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'Y0', false),
    storage(4, 'Yc', false),
    storage(5, 'Y', true),
    IS_FINITE_FN,
    head,
    `${locate}
${carry}
  if (ok) { Y[g] = y; }
}`,
  ].join('\n');
  if (reverse) return { summarize, repair, fixup };
  const reduction = updateReduction(TILE);
  const fixupUpdate = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'Y0', false),
    storage(4, 'Yc', false),
    storage(5, 'Old', false),
    storage(6, 'Y', true),
    ...updateParts(7),
    head,
    reduction.decls,
    `${locate}
${carry}
  let atol = bitcast<f32>(${uni(3)});
  let rtol = bitcast<f32>(${uni(4)});
  let clip = bitcast<f32>(${uni(5)});
  let live = Act[b] != 0u;
  if (ok) {
    let old = Old[g];
    if (live) { Y[g] = update_entry(old, old + y, e, rowLen, atol, rtol, clip); }
    else { Y[g] = old; }
  }
  // One set of atomics per tile.
${reduction.reduce('l', 'b', 'live')}
}`,
  ].join('\n');
  return { summarize, repair, fixup, fixupUpdate };
}
