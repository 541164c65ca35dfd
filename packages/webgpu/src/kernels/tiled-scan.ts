import { storage, UNIFORM_DECL, uni } from '../wgsl/common.js';
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
 * Uniforms: 0 = B, 1 = T, 2 = tiles per row; fixupUpdate adds 3–5 = atol, rtol, clip (f32 bits).
 */
export interface TiledScanKernels {
  readonly summarize: string;
  readonly fixup: string;
  /** Forward only: the fix-up applying each step as the Newton update (see scanKernels). */
  readonly fixupUpdate?: string;
}

export function tiledScanKernels(n: number, reverse: boolean): TiledScanKernels {
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
}`;
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
  let e = ${reverse ? `(T - 1u - p / ${n}u) * ${n}u + k` : 'p'};
  let g = b * rowLen + e;
  var a = 1.0;
  var c = 0.0;
  if (ok) {
    a = A[g];
    c = C[g];
  }
  let r = tile_scan(l, a, c);`;
  const carry = `  var yin = Y0[b * ${n}u + k];
  if (j > 0u) { yin = Yc[(b * nT + j - 1u) * ${n}u + k]; }
  let y = r.x * yin + r.y;`;
  const summarize = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'M', true),
    storage(4, 'V', true),
    head,
    `${locate}
  // The tile's last n lanes end every chain (padding lanes are the identity).
  if (l >= ${TILE - n}u) {
    let o = (b * nT + j) * ${n}u + k;
    M[o] = r.x;
    V[o] = r.y;
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
    head,
    `${locate}
${carry}
  if (ok) { Y[g] = y; }
}`,
  ].join('\n');
  if (reverse) return { summarize, fixup };
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
  return { summarize, fixup, fixupUpdate };
}
