import { type DType, type Tensor, UNIT_ROUNDOFF } from '../backend/types.js';
import { readTensor, type Solve } from './solve.js';

/**
 * A residual measured in a dtype resolves nothing finer than about two units of its roundoff of
 * |y| (a float32 step evaluated at a float32 fixed point gives exactly 0): where the tolerance
 * atol + rtol·|y| falls below that, a row met it only as rounded.
 */
export function resolutionOf(dtype: DType): number {
  return 4 * UNIT_ROUNDOFF[dtype];
}

/** Whether any |y| can put the tolerance below the dtype's resolution (never for the defaults). */
export function toleranceCanBeUnresolved(dtype: DType, tol: { readonly rtol: number }): boolean {
  return tol.rtol < resolutionOf(dtype);
}

export function unresolvedAdvice(dtype: DType): string {
  const r = resolutionOf(dtype).toExponential(1);
  return `below ${r}·|y| the tolerance is finer than a ${dtype} residual resolves (use rtol ≥ ${r}, or float64)`;
}

/**
 * Of `rows` of y [B, T, n] (row b's first lengths[b] steps), those where atol + rtol·|y| falls
 * below the dtype's resolution: one read of y.
 */
export function* unresolvedRows(
  y: Tensor,
  rows: readonly number[],
  tol: { readonly atol: number; readonly rtol: number },
  lengths?: ArrayLike<number>,
): Solve<number[]> {
  if (!toleranceCanBeUnresolved(y.dtype, tol)) return [];
  const [T, n] = [y.shape[1]!, y.shape[2]!];
  // atol + rtol·|y| < resolution·|y| exactly where |y| > atol / (resolution − rtol).
  const largest = tol.atol / (resolutionOf(y.dtype) - tol.rtol);
  const yh = yield* readTensor(y);
  return rows.filter((b) => {
    const end = (b * T + (lengths ? lengths[b]! : T)) * n;
    for (let i = b * T * n; i < end; i++) if (Math.abs(yh[i]!) > largest) return true;
    return false;
  });
}
