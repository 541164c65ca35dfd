import { ShapeError } from '../errors.js';

/**
 * Argument checks of the op contracts (op-contracts.ts) that take more than a shape comparison;
 * exported for backends written outside this repository that do not use `guardOpArgs`.
 */

/** A reshape keeps the number of entries; every extent a non-negative integer. */
export function checkReshape(from: readonly number[], to: readonly number[]): void {
  const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  if (!to.every((d) => Number.isInteger(d) && d >= 0) || size(to) !== size(from)) {
    throw new ShapeError('reshape', `a shape of ${size(from)} entries ([${from.join(', ')}])`, `[${to.join(', ')}]`);
  }
}

/**
 * Shapes and λ of a damped scan, checked the same way by every backend. Returns the block size s
 * of its transitions ([B, T, n/s, s, s]).
 */
export function checkDampedScan(
  args: { readonly lambda: ArrayLike<number> },
  aShape: readonly number[],
  cShape: readonly number[],
): number {
  const [B, T, n] = cShape as [number, number, number];
  const s = aShape[3] ?? 0;
  const want = `[${B}, ${T}, ${n} / s, s, s] (s × s blocks, s dividing ${n})`;
  if (
    aShape.length !== 5 ||
    aShape[0] !== B ||
    aShape[1] !== T ||
    !(s >= 1) ||
    aShape[4] !== s ||
    aShape[2]! * s !== n
  ) {
    throw new ShapeError('dampedScan A', want, `[${aShape.join(', ')}]`);
  }
  if (args.lambda.length !== B) throw new ShapeError('dampedScan lambda', `${B} values`, `${args.lambda.length}`);
  for (let b = 0; b < B; b++) {
    const l = args.lambda[b]!;
    if (!(l >= 0) || !Number.isFinite(l)) throw new ShapeError(`dampedScan lambda[${b}]`, 'a finite λ ≥ 0', String(l));
  }
  return s;
}

/**
 * Batch-row indices for `gatherRows` / `scatterRows`: integers in [0, B). A scatter's rows are also
 * distinct — two source rows written to one destination row would leave it to whichever write lands
 * last, which differs between backends (and between runs on a GPU).
 */
export function checkRows(op: 'gatherRows' | 'scatterRows', rows: readonly number[], B: number): void {
  const seen = op === 'scatterRows' ? new Uint8Array(B) : undefined;
  for (const r of rows) {
    if (!Number.isInteger(r) || r < 0 || r >= B) throw new ShapeError(op, `rows in [0, ${B})`, String(r));
    if (seen) {
      if (seen[r]) throw new ShapeError(op, 'distinct rows', `row ${r} listed twice`);
      seen[r] = 1;
    }
  }
}
