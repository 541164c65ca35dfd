import { checkOptionNames, InvalidArgumentError, UnsupportedOptionError } from '@deerjs/core';
export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the end of warm-up. */
  readonly peak: number;
  /**
   * Warm-up steps (linear from peak/warmup at step 0 up to peak at step warmup − 1, then peak until
   * the decay starts at step warmup); 0 for none.
   */
  readonly warmup: number;
  /**
   * Total steps; after warm-up the rate follows a half cosine down to `min` at this step (at
   * warmup + 1 when total = warmup, so that the rate never jumps).
   */
  readonly total: number;
  /** Final learning rate (default 0). */
  readonly min?: number;
}

/**
 * Learning rate at a 0-based step: linear warm-up, then cosine decay; constant `min` past the end.
 * Fractional steps (a position within an epoch, say) lie on the same curve: it is continuous, never
 * above `peak`, non-decreasing through warm-up and non-increasing after.
 */
export function warmupCosine(options: WarmupCosineOptions): (step: number) => number {
  if (options === null || typeof options !== 'object')
    throw new InvalidArgumentError('warmupCosine options', 'an object { peak, warmup, total, min? }', String(options));
  checkOptionNames(options, ['peak', 'warmup', 'total', 'min'], 'warmupCosine');
  const { peak, warmup, total, min = 0 } = options;
  const check = (name: string, v: number, ok: boolean, want: string) => {
    if (!ok) throw new UnsupportedOptionError(name, v, want);
  };
  check('peak', peak, Number.isFinite(peak) && peak >= 0, 'a finite number ≥ 0');
  check('min', min, Number.isFinite(min) && min >= 0 && min <= peak, 'a finite number in [0, peak]');
  check('warmup', warmup, Number.isSafeInteger(warmup) && warmup >= 0, 'an integer ≥ 0');
  check('total', total, Number.isSafeInteger(total) && total >= Math.max(1, warmup), 'an integer ≥ max(1, warmup)');
  return (step: number) => {
    if (typeof step !== 'number' || !Number.isFinite(step) || step < 0) throw new InvalidArgumentError('step', 'a finite number ≥ 0', String(step));
    // Capped at peak: a fractional step past warmup − 1 had gone above it (2.9 of 3: 1.3 × peak);
    // the min with peak also keeps the rounding of peak · w / w (0.1 · 3 / 3) from passing it.
    if (step < warmup) return Math.min(peak, (peak * (step + 1)) / warmup);
    const span = Math.max(1, total - warmup);
    const progress = Math.min(1, (step - warmup) / span);
    return Math.min(peak, min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * progress)));
  };
}
