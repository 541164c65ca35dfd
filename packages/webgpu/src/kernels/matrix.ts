import { MAIN_HEAD, storage, UNIFORM_DECL, uni, WG } from '../wgsl/common.js';

// Batched small-matrix ops of the ODE exponential, one invocation per output entry. The block
// size is a uniform: loops over it stay opaque to the driver's compiler (see MAIN_HEAD).

const module = (bindings: readonly [string, boolean][], body: string) =>
  [UNIFORM_DECL, ...bindings.map(([name, w], i) => storage(i + 1, name, w)), `${MAIN_HEAD}\n${body}\n}`].join(
    '\n',
  );

/** O = X·Y per s×s block. Uniforms: 0 = size, 1 = s. */
export const BLOCK_MATMUL = module(
  [
    ['X', false],
    ['Y', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  let s = ${uni(1)};
  let base = idx - idx % (s * s);
  let i = (idx / s) % s;
  let j = idx % s;
  var acc = 0.0;
  for (var k = 0u; k < s; k++) { acc += X[base + i * s + k] * Y[base + k * s + j]; }
  O[idx] = acc;`,
);

/** O = X·V per s×s block of X and s-vector of V. Uniforms: 0 = size of V, 1 = s. */
export const BLOCK_MATVEC = module(
  [
    ['X', false],
    ['V', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  let s = ${uni(1)};
  let blk = idx / s;
  let row = (blk * s + idx % s) * s;
  var acc = 0.0;
  for (var k = 0u; k < s; k++) { acc += X[row + k] * V[blk * s + k]; }
  O[idx] = acc;`,
);

/** O[b, t, r] = X[b, t, r] · F[t]. Uniforms: 0 = size, 1 = T, 2 = inner. */
export const SCALE_TIME = module(
  [
    ['X', false],
    ['F', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  O[idx] = X[idx] * F[(idx / ${uni(2)}) % ${uni(1)}];`,
);

/**
 * One invocation per (b, t): O = X · min(1, C[b] / ‖X_bt‖∞) over its n rows of s entries (C[b] < 0:
 * a copy). Uniforms: 0 = B·T, 1 = n, 2 = s, 3 = T.
 */
export const CAP_TRANSITIONS = module(
  [
    ['X', false],
    ['C', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  let s = ${uni(2)};
  let per = ${uni(1)} * s;
  let base = idx * per;
  var norm = 0.0;
  for (var r = 0u; r < per; r += s) {
    var sum = 0.0;
    for (var j = 0u; j < s; j++) { sum += abs(X[base + r + j]); }
    norm = max(norm, sum);
  }
  let cap = C[idx / ${uni(3)}];
  var f = 1.0;
  if (cap >= 0.0 && norm > cap) { f = cap / norm; }
  for (var k = 0u; k < per; k++) { O[base + k] = X[base + k] * f; }`,
);

/** O = X + alpha on the diagonal of every s×s block. Uniforms: 0 = size, 1 = s, 2 = alpha (f32 bits). */
export const ADD_IDENTITY = module(
  [
    ['X', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  let s = ${uni(1)};
  let r = idx % (s * s);
  O[idx] = X[idx] + select(0.0, bitcast<f32>(${uni(2)}), r / s == r % s);`,
);

/**
 * res[0] = max over entries of the bits of |x|. Non-negative floats order like their bits and
 * every NaN's bits exceed +Inf's, so a NaN anywhere wins: compared as integers, no float compare
 * can drop it. Uniform 0: size.
 */
export const MAX_ABS_BITS = [
  UNIFORM_DECL,
  storage(1, 'X', false),
  '@group(0) @binding(2) var<storage, read_write> res: array<atomic<u32>, 4>;',
  `var<workgroup> wm: array<u32, ${WG}>;`,
  `${MAIN_HEAD}
  var m = 0u;
  for (var i = idx; i < ${uni(0)}; i = i + ${uni(1)}) { m = max(m, bitcast<u32>(X[i]) & 0x7fffffffu); }
  let l = gid.x % ${WG}u;
  wm[l] = m;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (l < w) { wm[l] = max(wm[l], wm[l + w]); }
    workgroupBarrier();
  }
  if (l == 0u) { atomicMax(&res[0], wm[0]); }
}`,
].join('\n');
