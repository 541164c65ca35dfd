import { type Body, SIMD, V128 } from './encode.js';

/**
 * e^x, the logistic sigmoid and tanh in f32x4 arithmetic, emitted inline (WebAssembly has no
 * transcendental instructions). Each reads the v128 local `x` and leaves its result on the stack;
 * none branches, and NaN stays NaN.
 *
 * e^x (Cephes' expf): x is clamped to [−104, 89] (e^x rounds to 0 below, to ∞ above, in float32),
 * n = round(x·log₂e), r = x − n·ln2 in two parts (exact first product), e^r by a degree-7
 * polynomial, then scaled by 2^⌊n/2⌋ · 2^(n − ⌊n/2⌋) so that each factor is a normal float32 for
 * every n in range (over- and underflow happen in the last product, rounded as float32 rounds).
 */
export function emitExp(f: Body, x: number): void {
  const n = f.local(V128);
  const r = f.local(V128);
  const k = f.local(V128);
  f.get(x).f32x4(-104).simd(SIMD.f32x4Max).f32x4(89).simd(SIMD.f32x4Min).tee(r);
  f.f32x4(Math.LOG2E).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Nearest).set(n);
  // r = x − n·C1 − n·C2, C1 + C2 = ln 2 (C1 has 9 significant bits: n·C1 is exact).
  f.get(r).get(n).f32x4(0.693359375).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Sub);
  f.get(n).f32x4(-2.1219444e-4).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Sub).set(r);
  // p = 1 + r + r²·(c0 + r·(c1 + …)).
  const c = [
    5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3, 1.3981999507e-3, 1.98756915e-4,
  ];
  f.f32x4(c[5]!);
  for (let i = 4; i >= 0; i--) f.get(r).simd(SIMD.f32x4Mul).f32x4(c[i]!).simd(SIMD.f32x4Add);
  f.get(r)
    .simd(SIMD.f32x4Mul)
    .get(r)
    .simd(SIMD.f32x4Mul)
    .get(r)
    .simd(SIMD.f32x4Add)
    .f32x4(1)
    .simd(SIMD.f32x4Add);
  // 2^n as two normal factors: k = ⌊n/2⌋, n − k.
  f.get(n).simd(SIMD.i32x4TruncSatF32x4S).set(k);
  f.get(k).op(0x41, 1).simd(SIMD.i32x4ShrS).tee(n); // n now holds ⌊n/2⌋ (as i32 lanes)
  f.i32x4(127).simd(SIMD.i32x4Add).op(0x41, 23).simd(SIMD.i32x4Shl).simd(SIMD.f32x4Mul);
  f.get(k).get(n).simd(SIMD.i32x4Sub).i32x4(127).simd(SIMD.i32x4Add).op(0x41, 23).simd(SIMD.i32x4Shl);
  f.simd(SIMD.f32x4Mul);
}

/** σ(x) = 1 / (1 + e^−x): 0 for x ≤ −89 (e^−x = ∞), 1 for large x. */
export function emitSigmoid(f: Body, x: number): void {
  const t = f.local(V128);
  f.get(x).simd(SIMD.f32x4Neg).set(t);
  f.f32x4(1);
  f.f32x4(1);
  emitExp(f, t);
  f.simd(SIMD.f32x4Add).simd(SIMD.f32x4Div);
}

/**
 * tanh(x) as a rational function (Eigen's fast tanh: an odd degree-13 numerator over an even
 * degree-6 denominator) of x clamped to ±7.9053 (where it reaches 1 in float32); x itself for
 * |x| < 0.0004. No cancellation near 0; exactly ±1 for large |x|; NaN stays NaN.
 */
const TANH_CLAMP = 7.905311107635498;

export function emitTanh(f: Body, x: number): void {
  const c = f.local(V128);
  const z = f.local(V128);
  const p = f.local(V128);
  f.get(x).f32x4(-TANH_CLAMP).simd(SIMD.f32x4Max).f32x4(TANH_CLAMP).simd(SIMD.f32x4Min).tee(c);
  f.get(c).simd(SIMD.f32x4Mul).set(z);
  const alpha = [
    4.89352455891786e-3, 6.37261928875436e-4, 1.48572235717979e-5, 5.12229709037114e-8, -8.60467152213735e-11,
    2.00018790482477e-13, -2.76076847742355e-16,
  ];
  const beta = [4.89352518554385e-3, 2.268434632439e-3, 1.18534705686654e-4, 1.19825839466702e-6];
  f.f32x4(alpha[6]!);
  for (let i = 5; i >= 0; i--) f.get(z).simd(SIMD.f32x4Mul).f32x4(alpha[i]!).simd(SIMD.f32x4Add);
  f.get(c).simd(SIMD.f32x4Mul).set(p);
  f.get(p).f32x4(beta[3]!);
  for (let i = 2; i >= 0; i--) f.get(z).simd(SIMD.f32x4Mul).f32x4(beta[i]!).simd(SIMD.f32x4Add);
  f.simd(SIMD.f32x4Div).set(p);
  // |x| < 0.0004 ? x : p/q
  f.get(x).get(p).get(x).simd(SIMD.f32x4Abs).f32x4(0.0004).simd(SIMD.f32x4Lt).simd(SIMD.bitselect);
}
