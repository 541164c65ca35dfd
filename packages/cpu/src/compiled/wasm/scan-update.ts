import { Body, I32, OP, SIMD, V128 } from './encode.js';

/**
 * The fused DEER step's scan and Newton update (wasm-deer-step.ts) for four batch rows at once, one
 * per f32x4 lane, serial over time: δ_t = J_t δ_{t−1} + r_t (block-diagonal J, blocks of s), then
 * core's update rule (hostNewtonUpdate with `delta`) on y_t + δ_t, in registers.
 *
 * Exported as `su(ng, t0, R, J, Y, yls, S)`, for steps t = 0 .. ng − 1 of a chunk starting at time
 * t0: r_t at R + 16·(t·n + i) and J_t at J + 16·(t·n·s + r·s + c − cb) (interleaved, the lanes the
 * rows); the iterate of lane l at step t at Y + l·yls + 4·((t + 1)·n + i) (rows), overwritten by the
 * sanitised new iterate. S holds the lanes' running state across calls (STATE below): δ, then
 * max |Δ| (f64, lanes 0–1 then 2–3), whether a NaN Δ was met (i32 masks), the max scaled Δ (f64), replaced
 * and clipped counts, the first unsettled step (−1: none yet), and the options.
 *
 * The measures are those of hostNewtonUpdate per row, bit for bit given the stored values: the
 * difference and its scaled form in f64 (f64x2, two lanes at a time), the running maxima with its
 * NaN rule (`!(d <= m)` takes d). The raw iterate y + δ is one float32 add (the host adds in double
 * and rounds once: the same value); clip compares against the least float32 ≥ clip (the same
 * decisions as the double comparison).
 */
export const STATE = {
  /** Bytes after δ (16·n bytes). */
  maxAbs: 0,
  nan: 32,
  scaled: 64,
  replaced: 96,
  clipped: 112,
  firstBad: 128,
  atol: 144,
  rtol: 160,
  clipHi: 176,
  clipStore: 192,
  bytes: 208,
} as const;

/** Most multiply-adds of δ's recurrence per step (n·s) written out; beyond it, the composition. */
export const SCAN_UPDATE_MAX = 1024;
/** Largest state whose δ `su` keeps in locals. */
const DELTA_LOCALS = 16;

export function scanUpdateBody(n: number, s: number): Body {
  const f = new Body(7);
  const NG = 0;
  const T0 = 1;
  const R = 2;
  const J = 3;
  const Y = 4;
  const YLS = 5;
  const S = 6;
  const D = 16 * n;
  const t = f.local(I32);
  const rt = f.local(I32);
  const jt = f.local(I32);
  const L = [0, 1, 2, 3].map(() => f.local(I32));
  const v128 = () => f.local(V128);
  const m0 = v128();
  const m1 = v128();
  const nan = v128();
  const sc0 = v128();
  const sc1 = v128();
  const rep = v128();
  const clp = v128();
  const bad1st = v128();
  const atol = v128();
  const rtol = v128();
  const clipHi = v128();
  const clipS = v128();
  const negHi = v128();
  const negS = v128();
  const old = v128();
  const v = v128();
  const fin = v128();
  const hi = v128();
  const lo = v128();
  const stored = v128();
  const badAny = v128();
  const tmp = v128();
  const so = v128();
  const d = v128();
  const sc = v128();
  const pos = v128();
  const bs = [v128(), v128()];
  const nw = Array.from({ length: s }, v128);
  const m = [m0, m1];
  const scl = [sc0, sc1];

  // Running state and options in.
  const stateIn: [number, number][] = [
    [m0, STATE.maxAbs],
    [m1, STATE.maxAbs + 16],
    [nan, STATE.nan],
    [sc0, STATE.scaled],
    [sc1, STATE.scaled + 16],
    [rep, STATE.replaced],
    [clp, STATE.clipped],
    [bad1st, STATE.firstBad],
  ];
  // δ in locals for small states (V8 keeps them in registers), else in S.
  const dl = n <= DELTA_LOCALS ? Array.from({ length: n }, v128) : undefined;
  if (dl) for (let i = 0; i < n; i++) f.get(S).mem(SIMD.load, 16 * i, 4).set(dl[i]!);
  for (const [local, off] of stateIn) f.get(S).mem(SIMD.load, D + off, 4).set(local);
  f.get(S).mem(SIMD.load, D + STATE.atol, 4).set(atol);
  f.get(S).mem(SIMD.load, D + STATE.rtol, 4).set(rtol);
  f.get(S).mem(SIMD.load, D + STATE.clipHi, 4).set(clipHi);
  f.get(S).mem(SIMD.load, D + STATE.clipStore, 4).set(clipS);
  f.get(clipHi).simd(SIMD.f32x4Neg).set(negHi);
  f.get(clipS).simd(SIMD.f32x4Neg).set(negS);

  /** The update of entry i, its δ in local `dl`; lane pointers L at the step's iterate. */
  const entry = (i: number, dl: number) => {
    f.get(L[0]!).mem(SIMD.load32Splat, 4 * i, 2).set(old);
    for (let l = 1; l < 4; l++) f.get(L[l]!).get(old).lane(SIMD.load32Lane, 4 * i, l).set(old);
    // Stored values are finite: Δ is NaN exactly where the old iterate is (remembered for the fold of
    // max |Δ| over rows).
    f.get(nan).get(old).get(old).simd(SIMD.f32x4Ne).simd(SIMD.or).set(nan);
    f.get(old).get(dl).simd(SIMD.f32x4Add).set(v);
    // Finite: v − v is 0 (NaN for NaN and ±∞).
    f.get(v).get(v).simd(SIMD.f32x4Sub).zero().simd(SIMD.f32x4Eq).set(fin);
    f.get(v).get(clipHi).simd(SIMD.f32x4Ge).get(fin).simd(SIMD.and).set(hi);
    f.get(v).get(negHi).simd(SIMD.f32x4Le).get(fin).simd(SIMD.and).set(lo);
    // stored = fin ? (hi ? clip : lo ? −clip : v) : 0
    f.get(clipS).get(negS).get(v).get(lo).simd(SIMD.bitselect).get(hi).simd(SIMD.bitselect);
    f.get(fin).simd(SIMD.and).set(stored);
    // Counts (masks are −1 per lane) and the entry's own badness.
    f.get(rep).get(fin).simd(SIMD.not).simd(SIMD.i32x4Sub).set(rep);
    f.get(hi).get(lo).simd(SIMD.or).set(tmp);
    f.get(clp).get(tmp).simd(SIMD.i32x4Sub).set(clp);
    f.get(badAny).get(tmp).simd(SIMD.or).get(fin).simd(SIMD.not).simd(SIMD.or).set(badAny);
    for (let l = 0; l < 4; l++) f.get(L[l]!).get(stored).lane(SIMD.store32Lane, 4 * i, l);
    // The measures in f64, lanes 0–1 then 2–3.
    for (let h = 0; h < 2; h++) {
      const half = (x: number) => {
        f.get(x);
        if (h === 1) f.get(x).shuffle([8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
        f.simd(SIMD.f64x2PromoteLow);
      };
      half(stored);
      f.set(so);
      f.get(so);
      half(old);
      f.simd(SIMD.f64x2Sub).simd(SIMD.f64x2Abs).set(d);
      // if (!(d <= m)) m = d.
      f.get(m[h]!).get(d).get(d).get(m[h]!).simd(SIMD.f64x2Le).simd(SIMD.bitselect).set(m[h]!);
      // d > 0: sc = d / (atol + rtol·|stored|); if (!(sc <= scaled)) scaled = sc; bad when !(sc <= 1).
      f.get(d).zero().simd(SIMD.f64x2Gt).set(pos);
      f.get(d).get(atol).get(rtol).get(so).simd(SIMD.f64x2Abs).simd(SIMD.f64x2Mul).simd(SIMD.f64x2Add);
      f.simd(SIMD.f64x2Div).set(sc);
      f.get(sc).get(scl[h]!).get(pos).get(sc).get(scl[h]!).simd(SIMD.f64x2Le).simd(SIMD.andnot);
      f.simd(SIMD.bitselect).set(scl[h]!);
      f.get(pos).get(sc).f64x2(1).simd(SIMD.f64x2Le).simd(SIMD.andnot).set(bs[h]!);
    }
    // The two halves' 64-bit masks as four 32-bit lanes.
    f.get(badAny).get(bs[0]!).get(bs[1]!);
    f.shuffle([0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]);
    f.simd(SIMD.or).set(badAny);
  };

  f.block(() => {
    f.get(NG).i32(1).op(OP.i32LtS).brIf(0);
    f.i32(0).set(t);
    f.loop(() => {
      f.get(Y)
        .get(t)
        .i32(1)
        .add()
        .i32(4 * n)
        .mul()
        .add()
        .set(L[0]!);
      for (let l = 1; l < 4; l++) f.get(L[l - 1]!).get(YLS).add().set(L[l]!);
      f.get(R)
        .get(t)
        .i32(16 * n)
        .mul()
        .add()
        .set(rt);
      f.get(J)
        .get(t)
        .i32(16 * n * s)
        .mul()
        .add()
        .set(jt);
      f.zero().set(badAny);
      for (let cb = 0; cb < n; cb += s) {
        for (let i = cb; i < cb + s; i++) {
          f.get(rt).mem(SIMD.load, 16 * i, 4);
          for (let c = cb; c < cb + s; c++) {
            f.get(jt).mem(SIMD.load, 16 * (i * s + c - cb), 4);
            if (dl) f.get(dl[c]!);
            else f.get(S).mem(SIMD.load, 16 * c, 4);
            f.simd(SIMD.f32x4Mul).simd(SIMD.f32x4Add);
          }
          f.set(nw[i - cb]!);
        }
        for (let i = cb; i < cb + s; i++) {
          if (dl) f.get(nw[i - cb]!).set(dl[i]!);
          else
            f.get(S)
              .get(nw[i - cb]!)
              .mem(SIMD.store, 16 * i, 4);
          entry(i, nw[i - cb]!);
        }
      }
      // The first step with a bad entry, per lane.
      f.get(T0).get(t).add().simd(SIMD.i32x4Splat).get(bad1st);
      f.get(badAny).get(bad1st).i32x4(-1).simd(SIMD.i32x4Eq).simd(SIMD.and);
      f.simd(SIMD.bitselect).set(bad1st);
      f.get(t).i32(1).add().tee(t).get(NG).op(OP.i32LtS).brIf(0);
    });
  });

  if (dl) for (let i = 0; i < n; i++) f.get(S).get(dl[i]!).mem(SIMD.store, 16 * i, 4);
  for (const [local, off] of stateIn) f.get(S).get(local).mem(SIMD.store, D + off, 4);
  return f;
}
