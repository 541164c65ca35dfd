export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the end of warm-up. */
  readonly peak: number;
  /** Warm-up steps (linear from peak/warmup up to peak); 0 for none. */
  readonly warmup: number;
  /** Total steps; after warm-up the rate follows a half cosine down to `min` at this step. */
  readonly total: number;
  /** Final learning rate (default 0). */
  readonly min?: number;
}

/** Learning rate at a 0-based step: linear warm-up, then cosine decay; constant `min` past the end. */
export function warmupCosine({
  peak,
  warmup,
  total,
  min = 0,
}: WarmupCosineOptions): (step: number) => number {
  if (
    !(peak >= 0) ||
    !(min >= 0) ||
    !Number.isInteger(warmup) ||
    warmup < 0 ||
    !Number.isInteger(total) ||
    total < 1
  ) {
    throw new Error(`warmupCosine: bad options peak=${peak} warmup=${warmup} total=${total} min=${min}`);
  }
  return (step: number) => {
    if (step < warmup) return (peak * (step + 1)) / warmup;
    const span = Math.max(1, total - warmup);
    const progress = Math.min(1, (step - warmup) / span);
    return min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * progress));
  };
}
