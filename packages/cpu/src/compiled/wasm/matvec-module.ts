import { Body, I32, moduleBytes, SIMD, V128 } from './encode.js';

/** Shape of the packed layouts the module reads; the JS side (matvec-site.ts) writes them. */
export interface MatvecLayout {
  /** float32 (f32x4 lanes, f32 sums) or float64 (f64x2). */
  readonly f32: boolean;
  /** Rows per block of packed W (a multiple of the lane count). */
  readonly rowBlock: number;
  /** Elements per pass (the X layout interleaves this many elements). */
  readonly elemBlock: number;
}

export const layoutFor = (f32: boolean): MatvecLayout =>
  f32 ? { f32, rowBlock: 8, elemBlock: 4 } : { f32, rowBlock: 4, elemBlock: 4 };

/**
 * `mv(w, x, o, rp, cols, ep)`: O[e] = W·X[e] for ep elements (a multiple of elemBlock), all
 * offsets in bytes. W is packed by blocks of rowBlock rows, column-major inside a block
 * (w[(blk·cols + j)·rowBlock + r]); X by groups of elemBlock elements, interleaved
 * (x[(g·cols + j)·elemBlock + k]); O is float64, element-major with rp (padded rows) per element.
 * Each output row's sum runs over j in order, in the lane type.
 */
export function matvecModule(layout: MatvecLayout): Uint8Array {
  const { f32, rowBlock: RB, elemBlock: NE } = layout;
  const size = f32 ? 4 : 8;
  const L = 16 / size;
  const VB = RB / L;
  const [mul, add] = f32 ? [SIMD.f32x4Mul, SIMD.f32x4Add] : [SIMD.f64x2Mul, SIMD.f64x2Add];
  const splat = f32 ? SIMD.load32Splat : SIMD.load64Splat;

  const f = new Body(6);
  const [w, x, o, rp, cols, ep] = [0, 1, 2, 3, 4, 5];
  const i32 = () => f.local(I32);
  const [wb, wEnd, xe, xEnd, oe, oblk, pw, px, pxEnd, oa] = [i32(), i32(), i32(), i32(), i32(), i32(), i32(), i32(), i32(), i32()];
  const [bStride, eStride, oStride, eRow] = [i32(), i32(), i32(), i32()];
  const acc = Array.from({ length: NE }, () => Array.from({ length: VB }, () => f.local(V128)));
  const wv = Array.from({ length: VB }, () => f.local(V128));
  const s = f.local(V128);

  f.get(cols).i32(RB * size).mul().set(bStride);
  f.get(rp).get(cols).mul().i32(size).mul().get(w).add().set(wEnd);
  f.get(cols).i32(NE * size).mul().set(eStride);
  f.get(ep).get(cols).mul().i32(size).mul().get(x).add().set(xEnd);
  f.get(rp).i32(8).mul().tee(eRow).i32(NE).mul().set(oStride);
  f.get(w).set(wb).get(o).set(oblk);

  f.loop(() => {
    f.get(x).set(xe).get(oblk).set(oe);
    f.loop(() => {
      for (const row of acc) for (const a of row) f.zero().set(a);
      f.get(wb).set(pw).get(xe).tee(px).get(eStride).add().set(pxEnd);
      f.loop(() => {
        wv.forEach((v, i) => {
          f.get(pw).mem(SIMD.load, i * 16).set(v);
        });
        for (let k = 0; k < NE; k++) {
          f.get(px).mem(splat, k * size).set(s);
          for (let i = 0; i < VB; i++) {
            f.get(acc[k]![i]!).get(wv[i]!).get(s).simd(mul).simd(add).set(acc[k]![i]!);
          }
        }
        f.get(pw).i32(RB * size).add().set(pw);
        f.get(px).i32(NE * size).add().tee(px).get(pxEnd).ltU().brIf(0);
      });
      f.get(oe).set(oa);
      for (let k = 0; k < NE; k++) {
        for (let i = 0; i < VB; i++) {
          const a = acc[k]![i]!;
          if (f32) {
            f.get(oa).get(a).simd(SIMD.f64x2PromoteLow).mem(SIMD.store, i * 32);
            f.get(oa)
              .get(a)
              .get(a)
              .shuffle([8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15])
              .simd(SIMD.f64x2PromoteLow)
              .mem(SIMD.store, i * 32 + 16);
          } else f.get(oa).get(a).mem(SIMD.store, i * 16);
        }
        if (k + 1 < NE) f.get(oa).get(eRow).add().set(oa);
      }
      f.get(oe).get(oStride).add().set(oe);
      f.get(xe).get(eStride).add().tee(xe).get(xEnd).ltU().brIf(0);
    });
    f.get(oblk).i32(RB * 8).add().set(oblk);
    f.get(wb).get(bStride).add().tee(wb).get(wEnd).ltU().brIf(0);
  });
  return moduleBytes([{ name: 'mv', body: f }]);
}
