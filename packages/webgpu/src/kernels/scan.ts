import { bound, IS_FINITE_FN, mainHead, SERIAL_WG, storage, UNIFORM_DECL, uni } from '../wgsl/common.js';
import { updateParts, updateReduction } from './reduce.js';

/**
 * The linear recurrence y_t = A_t y_{t−1} + c_t with [n/s] diagonal blocks of size s, in chunks
 * of L steps (uniforms: 0 = B, 1 = T, 2 = L, 3 = Q chunks):
 *   1. summaries: each chunk's composed map (M_q, v_q), one invocation per (b, q, block, column
 *      of [M | v]);
 *   2. boundaries: y at the start of every chunk, sequentially over chunks, per (b, block). Where
 *      a chunk's map gives a non-finite state (its product overflows where the recurrence expands
 *      over the chunk, and Inf·0 is NaN), that chunk is walked step by step from the state before
 *      it instead, so every boundary is what a serial pass computes;
 *   3. fix-up: every step of every chunk from its boundary, per (b, q, block).
 * Reverse runs time backwards with transposed blocks. Work is linear in T; depth is O(L + Q).
 * Every pass is a serial loop per invocation: workgroups of SERIAL_WG.
 */
export interface ScanKernels {
  readonly summarize: string;
  readonly boundaries: string;
  readonly fixup: string;
  /** Workgroup size of the boundary and fix-up passes. */
  readonly serialWg: number;
  /** Invocations of a boundary or fix-up pass over `chains` serial chains (B, or B · Q chunks). */
  serialThreads(chains: number): number;
  /**
   * Forward only: the fix-up fused with the Newton update of its result (uniforms 4–6 = atol,
   * rtol, clip as f32 bits; bindings A, C, Yb, Old, Y, res, Act as NEWTON_UPDATE's).
   */
  readonly fixupUpdate?: string;
}

const headFns = (s: number, reverse: boolean) => `
fn a_at(base: u32, i: u32, j: u32) -> f32 { return A[base + ${reverse ? `j * ${s}u + i` : `i * ${s}u + j`}]; }
fn time_of(step: u32, T: u32) -> u32 { return ${reverse ? 'T - 1u - step' : 'step'}; }`;

/**
 * Diagonal summaries: one invocation per (b, q, k) composes both the product of the a's and the
 * offset, reading each a once (the general kernel's column split would read A twice).
 */
function diagonalSummarize(n: number, reverse: boolean): string {
  return [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'M', true),
    storage(4, 'V', true),
    `${mainHead(SERIAL_WG)}
  let B = ${uni(0)}; let T = ${uni(1)}; let L = ${uni(2)}; let Q = ${uni(3)};
  if (idx >= B * Q * ${n}u) { return; }
  let k = idx % ${n}u;
  let r = idx / ${n}u;
  let q = r % Q;
  let b = r / Q;
  var m = 1.0;
  var v = 0.0;
  for (var st = q * L; st < min(q * L + L, T); st++) {
    let t = ${reverse ? 'T - 1u - st' : 'st'};
    let e = (b * T + t) * ${n}u + k;
    let a = A[e];
    m = a * m;
    v = a * v + C[e];
  }
  M[idx] = m;
  V[idx] = v;
}`,
  ].join('\n');
}

// The serial passes' bindings, the same for both kernel families (the backend binds one buffer list).
// The boundary pass reads A and C only to walk a chunk whose map overflowed.
const BOUNDARY_BINDINGS = [
  UNIFORM_DECL,
  storage(1, 'Y0', false),
  storage(2, 'M', false),
  storage(3, 'V', false),
  storage(4, 'Yb', true),
  storage(5, 'A', false),
  storage(6, 'C', false),
  IS_FINITE_FN,
];
const FIXUP_BINDINGS = [UNIFORM_DECL, storage(1, 'A', false), storage(2, 'C', false), storage(3, 'Yb', false), storage(4, 'Y', true)];
const FIXUP_UPDATE_BINDINGS = [
  UNIFORM_DECL,
  storage(1, 'A', false),
  storage(2, 'C', false),
  storage(3, 'Yb', false),
  storage(4, 'Old', false),
  storage(5, 'Y', true),
  ...updateParts(6),
];

/**
 * `workgroup`: the boundary and fix-up passes of dense blocks (s ≥ 2) as `chainKernels`, a
 * workgroup per chain (where `chainsFit(n, s)`); else one invocation per block.
 */
export function scanKernels(n: number, s: number, reverse: boolean, workgroup = false): ScanKernels {
  const nb = n / s;
  const dims = `  let B = ${uni(0)}; let T = ${uni(1)}; let L = ${uni(2)}; let Q = ${uni(3)};`;
  const step = (vec: string, withC: string) => `
      let t = time_of(st, T);
      let e = b * T + t;
      let base = (e * ${nb}u + k) * ${s * s}u;
      for (var i = 0u; i < ${bound(s, s * s)}; i++) {
        var acc = ${withC};
        for (var j = 0u; j < ${bound(s, s * s)}; j++) { acc += a_at(base, i, j) * ${vec}[j]; }
        nxt[i] = acc;
      }
      ${vec} = nxt;`;
  const summarize = [
    UNIFORM_DECL,
    storage(1, 'A', false),
    storage(2, 'C', false),
    storage(3, 'M', true),
    storage(4, 'V', true),
    headFns(s, reverse),
    `${mainHead(SERIAL_WG)}
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
  for (var i = 0u; i < ${bound(s)}; i++) { x[i] = select(0.0, 1.0, i == col); }
  let isV = col == ${s}u;
  for (var st = q * L; st < min(q * L + L, T); st++) {${step('x', `select(0.0, C[e * ${n}u + k * ${s}u + i], isV)`)}
  }
  let mq = ((b * Q + q) * ${nb}u + k) * ${s * s}u;
  for (var i = 0u; i < ${bound(s)}; i++) {
    if (isV) { V[(b * Q + q) * ${n}u + k * ${s}u + i] = x[i]; } else { M[mq + i * ${s}u + col] = x[i]; }
  }
}`,
  ].join('\n');
  const summary = s === 1 ? diagonalSummarize(n, reverse) : summarize;
  if (workgroup && chainsFit(n, s)) return { summarize: summary, ...chainKernels(n, s, reverse) };
  const boundaries = [
    ...BOUNDARY_BINDINGS,
    headFns(s, reverse),
    `${mainHead(SERIAL_WG)}
${dims}
  if (idx >= B * ${nb}u) { return; }
  let k = idx % ${nb}u;
  let b = idx / ${nb}u;
  var y: array<f32, ${s}>;
  var nxt: array<f32, ${s}>;
  for (var i = 0u; i < ${bound(s)}; i++) { y[i] = Y0[b * ${n}u + k * ${s}u + i]; }
  for (var q = 0u; q < Q; q++) {
    let o = (b * Q + q) * ${n}u + k * ${s}u;
    let mq = ((b * Q + q) * ${nb}u + k) * ${s * s}u;
    for (var i = 0u; i < ${bound(s)}; i++) { Yb[o + i] = y[i]; }
    var finite = true;
    for (var i = 0u; i < ${bound(s, s * s)}; i++) {
      var acc = V[o + i];
      for (var j = 0u; j < ${bound(s, s * s)}; j++) { acc += M[mq + i * ${s}u + j] * y[j]; }
      nxt[i] = acc;
      finite = finite && is_finite(acc);
    }
    if (finite) {
      y = nxt;
    } else {
      for (var st = q * L; st < min(q * L + L, T); st++) {${step('y', `C[e * ${n}u + k * ${s}u + i]`)}
      }
    }
  }
}`,
  ].join('\n');
  const fixup = [
    ...FIXUP_BINDINGS,
    headFns(s, reverse),
    `${mainHead(SERIAL_WG)}
${dims}
  if (idx >= B * Q * ${nb}u) { return; }
  let k = idx % ${nb}u;
  let r1 = idx / ${nb}u;
  let q = r1 % Q;
  let b = r1 / Q;
  var y: array<f32, ${s}>;
  var nxt: array<f32, ${s}>;
  for (var i = 0u; i < ${bound(s)}; i++) { y[i] = Yb[(b * Q + q) * ${n}u + k * ${s}u + i]; }
  for (var st = q * L; st < min(q * L + L, T); st++) {${step('y', `C[e * ${n}u + k * ${s}u + i]`)}
    for (var i = 0u; i < ${bound(s)}; i++) { Y[e * ${n}u + k * ${s}u + i] = y[i]; }
  }
}`,
  ].join('\n');
  // The fix-up that applies the step it computes as the Newton update (Backend.scanUpdate): the
  // update's per-entry work rides along the serial recurrence, and δ never goes to memory.
  const fixupUpdate = [
    ...FIXUP_UPDATE_BINDINGS,
    headFns(s, reverse),
    `${mainHead(SERIAL_WG)}
${dims}
  let atol = bitcast<f32>(${uni(4)});
  let rtol = bitcast<f32>(${uni(5)});
  let clip = bitcast<f32>(${uni(6)});
  if (idx >= B * Q * ${nb}u) { return; }
  let k = idx % ${nb}u;
  let r1 = idx / ${nb}u;
  let q = r1 % Q;
  let b = r1 / Q;
  let live = Act[b] != 0u;
  let rowLen = T * ${n}u;
  var y: array<f32, ${s}>;
  var nxt: array<f32, ${s}>;
  for (var i = 0u; i < ${bound(s)}; i++) { y[i] = Yb[(b * Q + q) * ${n}u + k * ${s}u + i]; }
  for (var st = q * L; st < min(q * L + L, T); st++) {${step('y', `C[e * ${n}u + k * ${s}u + i]`)}
    for (var i = 0u; i < ${bound(s)}; i++) {
      let o = t * ${n}u + k * ${s}u + i;
      let old = Old[b * rowLen + o];
      if (live) { Y[b * rowLen + o] = update_entry(old, old + y[i], o, rowLen, atol, rtol, clip); }
      else { Y[b * rowLen + o] = old; }
    }
  }
  if (live) { update_flush(b, upd_d, upd_sc, upd_rep, upd_clp, upd_key); }
}`,
  ].join('\n');
  return {
    summarize: summary,
    boundaries,
    fixup,
    ...(reverse ? {} : { fixupUpdate }),
    serialWg: SERIAL_WG,
    serialThreads: (chains) => chains * nb,
  };
}

/** A chain kernel's step costs its s FMAs plus about this many for its two barriers (cost model). */
const CHAIN_SYNC = 16;
/** Largest n whose chain state the chain kernels hold in workgroup memory. */
export const CHAIN_MAX_N = 1024;

/** Whether blocks of s in a state of n can take the chain kernels. */
export function chainsFit(n: number, s: number): boolean {
  return s >= 2 && n <= CHAIN_MAX_N;
}

/** The chain kernels' workgroup: a lane per state entry, 32 to 256 lanes. */
export function chainWorkgroup(n: number): number {
  return Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(n))));
}

/**
 * The boundary and fix-up passes for dense blocks with a workgroup per serial chain: the chain's
 * state lives in workgroup memory and lane e computes entry e of each step (s FMAs) where one
 * invocation per block would do all s² alone. Two barriers a step. Same bindings and uniforms as
 * `scanKernels`' serial passes; dispatched with `chainWorkgroup(n)` lanes per chain.
 */
function chainKernels(
  n: number,
  s: number,
  reverse: boolean,
): Pick<ScanKernels, 'boundaries' | 'fixup' | 'fixupUpdate' | 'serialWg' | 'serialThreads'> {
  const nb = n / s;
  const wg = chainWorkgroup(n);
  const per = Math.ceil(n / wg);
  const head = `var<workgroup> wy: array<f32, ${n}>;
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let B = ${uni(0)}; let T = ${uni(1)}; let L = ${uni(2)}; let Q = ${uni(3)};
  let g = wid.x + wid.y * nwg.x;`;
  // One step of the chain: every lane's entries e (k = its block, i = its row) into nv by `entry`
  // (which leaves the value in acc), then into wy and wherever `store` puts nv[m].
  const advance = (entry: string, store: string) => `
    var nv: array<f32, ${per}>;
    for (var m = 0u; m < ${per}u; m++) {
      let e = li + m * ${wg}u;
      if (e < ${n}u) {
        let k = e / ${s}u;
        let i = e % ${s}u;
        ${entry}
        nv[m] = acc;
      }
    }
    workgroupBarrier();
    for (var m = 0u; m < ${per}u; m++) {
      let e = li + m * ${wg}u;
      if (e < ${n}u) {
        wy[e] = nv[m];
${store}
      }
    }
    workgroupBarrier();`;
  const stepEntry = `let base = (el * ${nb}u + k) * ${s * s}u;
        var acc = C[el * ${n}u + e];
        for (var j = 0u; j < ${s}u; j++) { acc += a_at(base, i, j) * wy[k * ${s}u + j]; }`;
  const load = (src: string) => `
  for (var e = li; e < ${n}u; e += ${wg}u) { wy[e] = ${src}; }
  workgroupBarrier();`;
  // Workgroup g walks chunk q of row b; `extra` declares what the step needs besides.
  const chunkHead = (extra = '') => `
  if (g >= B * Q) { return; }
  let q = g % Q;
  let b = g / Q;${extra}${load(`Yb[(b * Q + q) * ${n}u + e]`)}
  for (var st = q * L; st < min(q * L + L, T); st++) {
    let t = time_of(st, T);
    let el = b * T + t;`;
  // A chunk whose map gives a non-finite state is walked step by step (see scanKernels): the lanes
  // flag it by raising wbadA to q + 1, and all of them read the flag as one uniform value.
  const boundaries = [
    ...BOUNDARY_BINDINGS,
    headFns(s, reverse),
    `var<workgroup> wbadA: atomic<u32>;
var<workgroup> wbad: u32;
${head}
  if (g >= B) { return; }
  let b = g;${load(`Y0[b * ${n}u + e]`)}
  for (var q = 0u; q < Q; q++) {
    let o = (b * Q + q) * ${n}u;
    for (var e = li; e < ${n}u; e += ${wg}u) { Yb[o + e] = wy[e]; }
    let mq = (b * Q + q) * ${nb}u;
    var nv: array<f32, ${per}>;
    for (var m = 0u; m < ${per}u; m++) {
      let e = li + m * ${wg}u;
      if (e < ${n}u) {
        let k = e / ${s}u;
        let i = e % ${s}u;
        let base = (mq + k) * ${s * s}u;
        var acc = V[o + e];
        for (var j = 0u; j < ${s}u; j++) { acc += M[base + i * ${s}u + j] * wy[k * ${s}u + j]; }
        nv[m] = acc;
        if (!is_finite(acc)) { atomicMax(&wbadA, q + 1u); }
      }
    }
    workgroupBarrier();
    if (li == 0u) { wbad = atomicLoad(&wbadA); }
    if (workgroupUniformLoad(&wbad) == q + 1u) {
      for (var st = q * L; st < min(q * L + L, T); st++) {
        let t = time_of(st, T);
        let el = b * T + t;${advance(stepEntry, '')}
      }
    } else {
      for (var m = 0u; m < ${per}u; m++) {
        let e = li + m * ${wg}u;
        if (e < ${n}u) { wy[e] = nv[m]; }
      }
      workgroupBarrier();
    }
  }
}`,
  ].join('\n');
  const fixup = [
    ...FIXUP_BINDINGS,
    headFns(s, reverse),
    `${head}${chunkHead()}${advance(stepEntry, `        Y[el * ${n}u + e] = nv[m];`)}
  }
}`,
  ].join('\n');
  const reduction = updateReduction(wg);
  const fixupUpdate = [
    ...FIXUP_UPDATE_BINDINGS,
    reduction.decls,
    headFns(s, reverse),
    `${head}
  let atol = bitcast<f32>(${uni(4)});
  let rtol = bitcast<f32>(${uni(5)});
  let clip = bitcast<f32>(${uni(6)});
  let rowLen = T * ${n}u;${chunkHead('\n  let live = Act[b] != 0u;')}${advance(
      stepEntry,
      `        let o = t * ${n}u + e;
        let old = Old[b * rowLen + o];
        if (live) { Y[b * rowLen + o] = update_entry(old, old + nv[m], o, rowLen, atol, rtol, clip); }
        else { Y[b * rowLen + o] = old; }`,
    )}
  }
${reduction.reduce('li', 'b', 'live')}
}`,
  ].join('\n');
  return {
    boundaries,
    fixup,
    ...(reverse ? {} : { fixupUpdate }),
    serialWg: wg,
    serialThreads: (chains) => chains * wg,
  };
}

/**
 * The diagonal recurrence (blocks of 1) in one serial pass per chain, four lanes of a vec4 at a
 * time: with n = 1, four consecutive steps of a row per load (needs T % 4 = 0, so rows start on a
 * vec4); with n % 4 = 0, four adjacent states per invocation. Reads A and c once and writes y once,
 * in 16-byte accesses: for devices whose lanes the chains already fill, where chunking would only
 * add passes. Undefined for other n. Uniforms: 0 = B, 1 = T.
 */
export function vectorScanKernel(n: number, reverse: boolean): { code: string; threads: (B: number) => number } | undefined {
  const decls = [
    UNIFORM_DECL,
    '@group(0) @binding(1) var<storage, read> A4: array<vec4<f32>>;',
    '@group(0) @binding(2) var<storage, read> C4: array<vec4<f32>>;',
    storage(3, 'Y0', false),
    '@group(0) @binding(4) var<storage, read_write> Y4: array<vec4<f32>>;',
  ].join('\n');
  if (n === 1) {
    const lanes = reverse ? ['w', 'z', 'y', 'x'] : ['x', 'y', 'z', 'w'];
    const steps = lanes.map((l) => `    y = a.${l} * y + c.${l}; o.${l} = y;`).join('\n');
    return {
      threads: (B) => B,
      code: `${decls}
${mainHead(SERIAL_WG)}
  let B = ${uni(0)};
  let T4 = ${uni(1)} / 4u;
  if (idx >= B) { return; }
  var y = Y0[idx];
  for (var q = 0u; q < T4; q++) {
    let i = idx * T4 + ${reverse ? 'T4 - 1u - q' : 'q'};
    let a = A4[i];
    let c = C4[i];
    var o: vec4<f32>;
${steps}
    Y4[i] = o;
  }
}`,
    };
  }
  if (n % 4 !== 0) return undefined;
  const n4 = n / 4;
  return {
    threads: (B) => B * n4,
    code: `${decls}
${mainHead(SERIAL_WG)}
  let B = ${uni(0)};
  let T = ${uni(1)};
  if (idx >= B * ${n4}u) { return; }
  let k = idx % ${n4}u;
  let b = idx / ${n4}u;
  let j = b * ${n}u + 4u * k;
  var y = vec4<f32>(Y0[j], Y0[j + 1u], Y0[j + 2u], Y0[j + 3u]);
  for (var st = 0u; st < T; st++) {
    let i = (b * T + ${reverse ? 'T - 1u - st' : 'st'}) * ${n4}u + k;
    y = A4[i] * y + C4[i];
    Y4[i] = y;
  }
}`,
  };
}

/** Invocations of the summary pass: one per (b, q, block, column of [M | v]), or per (b, q, k) when diagonal. */
export function summaryThreads(B: number, Q: number, n: number, s: number): number {
  return s === 1 ? B * Q * n : B * Q * (n / s) * (s + 1);
}

/**
 * Chunks of the scan: the Q minimising a simple cost model, Q = 1 (a single serial pass) when
 * chunking does not pay. Each pass costs its serial steps times its per-step work times the
 * number of waves it needs (invocations / `lanes`, at least 1): summaries (T/Q steps; s² work per
 * invocation, s + 1 invocations per block; diagonal: 2 work, one invocation), boundaries (Q steps)
 * and the fix-up (T/Q steps). Dense summaries cost s + 1 times the fix-up's work, so on a device
 * with few lanes (a software adapter) they only pay for small blocks. With `workgroup` (the chain
 * kernels) a serial pass's step is s FMAs and two barriers on a lane per entry instead of s² on a
 * lane per block, so chunking pays only for long rows.
 */
export function chunking(
  T: number,
  B: number,
  n: number,
  s: number,
  lanes: number,
  workgroup = false,
): { L: number; Q: number } {
  const nb = n / s;
  const waves = (threads: number) => Math.max(1, threads / lanes);
  const work = s * s;
  // A step of a serial pass over `chains` chains: s² on one lane per block, or s and the two
  // barriers on a lane per entry (the chain kernels).
  const serial = (chains: number) =>
    workgroup && chainsFit(n, s) ? (s + CHAIN_SYNC) * waves(chains * chainWorkgroup(n)) : work * waves(chains * nb);
  const cost = (Q: number) => {
    const L = Math.ceil(T / Q);
    if (Q === 1) return L * serial(B);
    const summary = s === 1 ? 2 * waves(B * Q * n) : work * waves(summaryThreads(B, Q, n, s));
    return L * summary + Q * serial(B) + L * serial(B * Q);
  };
  let best = 1;
  const most = Math.ceil(Math.sqrt(T));
  for (let Q = 2; Q <= most; Q *= 2) if (cost(Q) < cost(best)) best = Q;
  const L = Math.ceil(T / best);
  return { L, Q: Math.ceil(T / L) };
}
