import type { Backend, DType } from '../backend/types.js';
import { DTYPE_BYTES } from '../backend/types.js';
import { OutOfMemoryError } from '../errors.js';

/** What one window of a solve holds at its peak, in Jacobian-sized buffers. */
export interface WindowBudget {
  readonly B: number;
  /** Time steps (or grid intervals) of the whole problem. */
  readonly T: number;
  readonly n: number;
  /** Jacobian block size. */
  readonly s: number;
  readonly dtype: DType;
  /**
   * Grid points a window of W steps evaluates Jacobians at, beyond W: 1 when a window needs the
   * next window's first Jacobian (gradients) or both interval endpoints (ODEs), else 0.
   */
  readonly extra: 0 | 1;
  /** Jacobian-sized buffers alive at once at the peak of an iteration (≥ 1). */
  readonly jacobians: number;
  /** The largest single buffer of an iteration, in Jacobians (default 1). */
  readonly largest?: number;
  /** Whether the last (or only) window also evaluates the extra point (ODE grids: yes). */
  readonly lastHasExtra: boolean;
}

/**
 * Time steps per window: all of T when everything fits, else the most steps for which one
 * Jacobian fits the backend's largest buffer and all `jacobians` of them fit the memory a solve
 * may hold (`capabilities.memoryBytes`, default the largest buffer). The one place windows are sized.
 */
export function chooseWindow(backend: Backend, b: WindowBudget): number {
  const perPoint = b.B * b.n * Math.max(b.s, 1) * DTYPE_BYTES[b.dtype];
  const caps = backend.capabilities;
  const memory = caps.memoryBytes ?? caps.maxBufferBytes;
  const points = Math.floor(
    Math.min(caps.maxBufferBytes / (perPoint * Math.max(1, b.largest ?? 1)), memory / (perPoint * Math.max(1, b.jacobians))),
  );
  const whole = b.T + (b.lastHasExtra ? b.extra : 0);
  if (points >= whole) return b.T;
  const W = points - b.extra;
  if (!(W >= 1)) {
    // Not even one step of the batch fits: the problem is too big for this backend's memory, not
    // malformed (a smaller batch, or a backend with more memory, would take it).
    throw new OutOfMemoryError(
      backend.name,
      perPoint * Math.max(1, b.jacobians) * (1 + b.extra),
      `batch ${b.B} with state ${b.n}: its per-step Jacobians (${b.jacobians} × ${perPoint} bytes, ${1 + b.extra} steps) do not fit the memory a solve may hold (${memory} bytes, largest buffer ${caps.maxBufferBytes}); split the batch`,
    );
  }
  return W;
}

/** The whole trajectory y [B, T, n] is one buffer: OutOfMemoryError where it cannot be one. */
export function checkTrajectoryFits(backend: Backend, B: number, T: number, n: number, dtype: DType, advice: string): void {
  const yBytes = B * T * n * DTYPE_BYTES[dtype];
  if (yBytes > backend.capabilities.maxBufferBytes) {
    throw new OutOfMemoryError(
      backend.name,
      yBytes,
      `y [${B}, ${T}, ${n}] does not fit the largest buffer (${backend.capabilities.maxBufferBytes} bytes): ${advice}`,
    );
  }
}
