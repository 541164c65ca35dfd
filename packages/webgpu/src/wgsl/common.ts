/** Threads per workgroup of every 1-D kernel. */
export const WG = 64;

/** The uniform block every kernel reads its runtime sizes from: 8 u32 (or f32 bit patterns). */
export const UNIFORM_DECL = '@group(0) @binding(0) var<uniform> u: array<vec4<u32>, 2>;';

/** WGSL name of uniform slot k (0..7). */
export function uni(k: number): string {
  return `u[${k >> 2}].${'xyzw'[k & 3]}`;
}

/**
 * The entry point header for workgroups of `wg` invocations: `idx` is the flat thread index over a
 * 2-D grid of workgroups. `z` is uniform slot 7, always 0: loop bounds written `N + z` are opaque
 * to the driver's compiler, which otherwise unrolls every constant loop over the private arrays and
 * takes seconds per kernel (llvmpipe: 19 s for a GRU n = 32 step kernel).
 */
export function mainHead(wg: number): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * ${wg}u;
  let z = ${uni(7)};`;
}

export const MAIN_HEAD = mainHead(WG);

/**
 * Workgroup size of kernels with one long serial loop per invocation (sequential evaluation, the
 * scan's serial passes), which often have only B invocations: small groups spread them over all
 * compute units (on a software adapter, a workgroup runs on one core).
 */
export const SERIAL_WG = 8;

/** Loops with at most this many iterations (nested: in all) are left for the driver to unroll. */
export const UNROLL_MAX = 256;

/**
 * The bound of a loop of `trips` iterations over private arrays: a constant where unrolling is
 * cheap (the arrays then live in registers, which on a software adapter is several times faster),
 * else `trips + z`, which the compiler cannot see through (see MAIN_HEAD). `work` is the total
 * iterations of the nest the loop belongs to.
 */
export function bound(trips: number, work = trips, signed = false): string {
  if (work <= UNROLL_MAX) return signed ? `${trips}` : `${trips}u`;
  return signed ? `${trips} + i32(z)` : `${trips}u + z`;
}

/**
 * The bound of a loop of `trips` stores to a storage buffer. On a software adapter each store is a
 * bounds-checked scatter over the SIMD lanes, and unrolled ones dominate llvmpipe's compile (a GRU
 * n = 32 step kernel, two paired rounds: 6.7 s → 3.0 s and 12.5 s → 1.8 s with its five 32-entry
 * output loops kept as loops), so there they stay loops; elsewhere as `bound`.
 */
export function storeBound(trips: number, software: boolean): string {
  return software ? `${trips}u + z` : bound(trips);
}

/**
 * On a software adapter, unrolled Jacobian blocks of more entries than this are stored from a
 * private array by one loop (see storeBound): 256 stores unrolled (GRU n = 16, dense) took llvmpipe
 * 8.1 s to compile, as a loop 2.3 s, and the solve ran 1.07–1.14× faster. Kept unrolled on a GPU,
 * where the array would sit in local memory (not measured there).
 */
export const STORE_LOOP_FROM = 64;

/**
 * Packed parameters of up to this many floats are bound as a uniform buffer (32 KiB, well inside
 * WebGPU's guaranteed 64 KiB even after the pool rounds the buffer up): every invocation reads the
 * same entries, which a uniform serves once for all lanes where storage reads are per lane.
 */
export const UNIFORM_PARAMS_MAX_FLOATS = 8192;

/**
 * The parameter binding `prm` and its reader `prm_(i)` for a program with `floats` parameters;
 * `divergent`: the lanes of a kernel read different entries at once, which a uniform serves one
 * address at a time (NVIDIA's constant cache serialises them), so it binds as storage.
 */
export function paramsDecl(binding: number, floats: number, divergent = false): string {
  if (divergent || floats > UNIFORM_PARAMS_MAX_FLOATS)
    return `${storage(binding, 'prm', false)}\nfn prm_(i: u32) -> f32 { return prm[i]; }`;
  const vecs = Math.max(1, Math.ceil(floats / 4));
  return `@group(0) @binding(${binding}) var<uniform> prm: array<vec4<f32>, ${vecs}>;
fn prm_(i: u32) -> f32 { return prm[i >> 2u][i & 3u]; }`;
}

/** Storage binding declaration. */
export function storage(binding: number, name: string, write: boolean): string {
  return `@group(0) @binding(${binding}) var<storage, ${write ? 'read_write' : 'read'}> ${name}: array<f32>;`;
}

/**
 * A float as a WGSL f32 value: the float32 the other backends hold for it. Past f32's range that is
 * ±Infinity, which no WGSL literal may be (1e39 failed the whole shader): made at run time.
 */
export function lit(v: number): string {
  if (Number.isNaN(v)) throw new Error(`webgpu: constant ${v} has no WGSL literal`);
  const f = Math.fround(v);
  // A call (runtime, see inf_ in graph.ts): WGSL refuses ±Infinity even as a folded bitcast.
  if (f === Number.POSITIVE_INFINITY) return 'inf_(false)';
  if (f === Number.NEGATIVE_INFINITY) return 'inf_(true)';
  return `f32(${f.toExponential()})`;
}

/** Non-finite test on the bit pattern (immune to fast-math folding of x != x). */
export const IS_FINITE_FN = `fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }`;
