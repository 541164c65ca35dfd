import { MAIN_HEAD, storage, UNIFORM_DECL, uni } from '../wgsl/common.js';

/**
 * The linear recurrence y_t = A_t y_{t−1} + c_t with [n/s] diagonal blocks of size s, in chunks
 * of L steps (uniforms: 0 = B, 1 = T, 2 = L, 3 = Q chunks):
 *   1. summaries: each chunk's composed map (M_q, v_q), one invocation per (b, q, block, column
 *      of [M | v]);
 *   2. boundaries: y at the start of every chunk, sequentially over chunks, per (b, block);
 *   3. fix-up: every step of every chunk from its boundary, per (b, q, block).
 * Reverse runs time backwards with transposed blocks. Work is linear in T; depth is O(L + Q).
 */
export interface ScanKernels {
  readonly summarize: string;
  readonly boundaries: string;
  readonly fixup: string;
}

const head = (s: number, reverse: boolean) => `
fn a_at(base: u32, i: u32, j: u32) -> f32 { return A[base + ${reverse ? `j * ${s}u + i` : `i * ${s}u + j`}]; }
fn time_of(step: u32, T: u32) -> u32 { return ${reverse ? 'T - 1u - step' : 'step'}; }`;

export function scanKernels(n: number, s: number, reverse: boolean): ScanKernels {
  const nb = n / s;
  const dims = `  let B = ${uni(0)}; let T = ${uni(1)}; let L = ${uni(2)}; let Q = ${uni(3)};`;
  const step = (vec: string, withC: string) => `
      let t = time_of(st, T);
      let e = b * T + t;
      let base = (e * ${nb}u + k) * ${s * s}u;
      for (var i = 0u; i < ${s}u + z; i++) {
        var acc = ${withC};
        for (var j = 0u; j < ${s}u + z; j++) { acc += a_at(base, i, j) * ${vec}[j]; }
        nxt[i] = acc;
      }
      ${vec} = nxt;`;
  const summarize = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'M', true),
    storage(4, 'V', true),
    head(s, reverse),
    `${MAIN_HEAD}
${dims}
  if (idx >= B * Q * ${nb * (s + 1)}u) { return; }
  let col = idx % ${s + 1}u;
  let r1 = idx / ${s + 1}u;
  let k = r1 % ${nb}u;
  let r2 = r1 / ${nb}u;
  let q = r2 % Q;
  let b = r2 / Q;
  var x: array<f32, ${s}>;
  var nxt: array<f32, ${s}>;
  for (var i = 0u; i < ${s}u + z; i++) { x[i] = select(0.0, 1.0, i == col); }
  let isV = col == ${s}u;
  for (var st = q * L; st < min(q * L + L, T); st++) {${step('x', `select(0.0, C[e * ${n}u + k * ${s}u + i], isV)`)}
  }
  let mq = ((b * Q + q) * ${nb}u + k) * ${s * s}u;
  for (var i = 0u; i < ${s}u + z; i++) {
    if (isV) { V[(b * Q + q) * ${n}u + k * ${s}u + i] = x[i]; } else { M[mq + i * ${s}u + col] = x[i]; }
  }
}`,
  ].join('\n');
  const boundaries = [
    UNIFORM_DECL,
    storage(1, 'Y0', false),
    storage(2, 'M', false),
    storage(3, 'V', false),
    storage(4, 'Yb', true),
    `${MAIN_HEAD}
${dims}
  if (idx >= B * ${nb}u) { return; }
  let k = idx % ${nb}u;
  let b = idx / ${nb}u;
  var y: array<f32, ${s}>;
  var nxt: array<f32, ${s}>;
  for (var i = 0u; i < ${s}u + z; i++) { y[i] = Y0[b * ${n}u + k * ${s}u + i]; }
  for (var q = 0u; q < Q; q++) {
    let o = (b * Q + q) * ${n}u + k * ${s}u;
    let mq = ((b * Q + q) * ${nb}u + k) * ${s * s}u;
    for (var i = 0u; i < ${s}u + z; i++) { Yb[o + i] = y[i]; }
    for (var i = 0u; i < ${s}u + z; i++) {
      var acc = V[o + i];
      for (var j = 0u; j < ${s}u + z; j++) { acc += M[mq + i * ${s}u + j] * y[j]; }
      nxt[i] = acc;
    }
    y = nxt;
  }
}`,
  ].join('\n');
  const fixup = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'Yb', false),
    storage(4, 'Y', true),
    head(s, reverse),
    `${MAIN_HEAD}
${dims}
  if (idx >= B * Q * ${nb}u) { return; }
  let k = idx % ${nb}u;
  let r1 = idx / ${nb}u;
  let q = r1 % Q;
  let b = r1 / Q;
  var y: array<f32, ${s}>;
  var nxt: array<f32, ${s}>;
  for (var i = 0u; i < ${s}u + z; i++) { y[i] = Yb[(b * Q + q) * ${n}u + k * ${s}u + i]; }
  for (var st = q * L; st < min(q * L + L, T); st++) {${step('y', `C[e * ${n}u + k * ${s}u + i]`)}
    for (var i = 0u; i < ${s}u + z; i++) { Y[e * ${n}u + k * ${s}u + i] = y[i]; }
  }
}`,
  ].join('\n');
  return { summarize, boundaries, fixup };
}

/**
 * Chunks of the scan. The summaries cost B·T·s³ work however T is cut, so chunks only pay when
 * the device has lanes left over after the B·(n/s)·(s+1) independent rows: aim for about
 * `lanes` invocations in the summary pass, and never more than √T chunks.
 */
export function chunking(
  T: number,
  B: number,
  n: number,
  s: number,
  lanes: number,
): { L: number; Q: number } {
  const rows = B * (n / s) * (s + 1);
  const want = Math.min(Math.ceil(Math.sqrt(T)), Math.max(1, Math.ceil(lanes / rows)));
  const L = Math.ceil(T / want);
  return { L, Q: Math.ceil(T / L) };
}
