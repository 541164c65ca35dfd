/** Threads per workgroup of every 1-D kernel. */
export const WG = 64;

/** The uniform block every kernel reads its runtime sizes from: 8 u32 (or f32 bit patterns). */
export const UNIFORM_DECL = '@group(0) @binding(0) var<uniform> u: array<vec4<u32>, 2>;';

/** WGSL name of uniform slot k (0..7). */
export function uni(k: number): string {
  return `u[${k >> 2}].${'xyzw'[k & 3]}`;
}

/**
 * The entry point header: `idx` is the flat thread index over a 2-D grid of workgroups. `z` is
 * uniform slot 7, always 0: loop bounds written `N + z` are opaque to the driver's compiler, which
 * otherwise unrolls every constant loop over the private arrays and takes seconds per kernel
 * (llvmpipe: 19 s for a GRU n = 32 step kernel).
 */
export const MAIN_HEAD = `@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * ${WG}u;
  let z = ${uni(7)};`;

/** Storage binding declaration. */
export function storage(binding: number, name: string, write: boolean): string {
  return `@group(0) @binding(${binding}) var<storage, ${write ? 'read_write' : 'read'}> ${name}: array<f32>;`;
}

/** A float as a WGSL literal (finite values only). */
export function lit(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`webgpu: constant ${v} has no WGSL literal`);
  const s = v.toExponential();
  return `f32(${s})`;
}

/** Non-finite test on the bit pattern (immune to fast-math folding of x != x). */
export const IS_FINITE_FN = `fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }`;
