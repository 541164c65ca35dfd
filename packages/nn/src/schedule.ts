import { checkOptionNames, InvalidArgumentError, UnsupportedOptionError } from '@deerjs/core';
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
    if (step < warmup) return (peak * (step + 1)) / warmup;
    const span = Math.max(1, total - warmup);
    const progress = Math.min(1, (step - warmup) / span);
    return min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * progress));
  };
}
