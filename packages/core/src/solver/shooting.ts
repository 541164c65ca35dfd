import type { StepProgram } from '../backend/program.js';
import type { Backend, Tensor } from '../backend/types.js';
import { readUpdate, type Solve } from './solve.js';

/**
 * The fraction of the tolerance to which chunk starts must agree with their predecessors' ends: a
 * chunk carries a jump at its start on, amplified by its Jacobians' transients (deer-study, Elman
 * 6×, float64: starts within the tolerance left the trajectory 9e-10 from the sequential one, 4.5×
 * the tolerance of its entries).
 */
const START_TOLERANCE = 0.1;

/** The time axis cut into `chunks` pieces of `length` steps (chunks · length ≥ T; the last padded). */
export interface Chunking {
  readonly chunks: number;
  readonly length: number;
}

export interface ShootingResult {
  /** [R, T, n]: the last sweep's trajectory (exact in the rows that converged). */
  readonly y: Tensor;
  /** Per row: 1 where the chunks' starts met the tolerance. */
  readonly converged: Uint8Array;
  /**
   * Per row: 1 where the last sweep's chunk ends held NaN/Inf. Such a row never converges: its
   * trajectory overflows (after as many sweeps as chunks, every chunk up to the first non-finite
   * end runs from its exact start), or, after fewer, a wrong start made it overflow.
   */
  readonly nonFinite: Uint8Array;
  readonly sweeps: number;
}

/**
 * Parallel shooting for y_t = f(y_{t−1}, x_t): the time axis cut into K chunks that run
 * step by step side by side (one `runSequential` over R·K rows of L steps, time folded into the
 * batch by `reshape`), each from a guess of its start; a sweep then takes each chunk's start from
 * the end its predecessor just reached, until no start changes beyond the tolerance — then every
 * chunk continues its predecessor and the trajectory is the sequential one. After s sweeps the
 * first s chunks are exact (chunk 0 starts at y0), so K sweeps always finish; on a contractive
 * recurrence a chunk forgets a wrong start within its memory, so about memory / L + 2 sweeps do,
 * with L steps of depth each. First guess: y0 at every chunk.
 */
export function* shoot(
  backend: Backend,
  program: StepProgram,
  inputs: { readonly input: Tensor; readonly y0: Tensor; readonly params: Readonly<Record<string, Tensor>> },
  chunking: Chunking,
  tol: { readonly atol: number; readonly rtol: number },
  maxSweeps: number,
  lengths?: ArrayLike<number>,
): Solve<ShootingResult> {
  const { input: x, y0, params } = inputs;
  const [R, T] = [x.shape[0]!, x.shape[1]!];
  const n = y0.shape[1]!;
  const rest = x.shape.slice(2);
  const { chunks: K, length: L } = chunking;
  const pad = K * L - T;
  let padded = x;
  if (pad > 0) {
    const zeros = backend.zeros([R, pad, ...rest], x.dtype);
    try {
      padded = backend.concatTime([x, zeros]);
    } finally {
      backend.dispose(zeros);
    }
  }
  let folded: Tensor;
  try {
    folded = backend.reshape(padded, [R * K, L, ...rest]);
  } finally {
    if (padded !== x) backend.dispose(padded);
  }
  // With padded rows (lengths), only the starts of chunks that begin inside a row are judged: the
  // rest run on padding (NaN there, say) that nothing reads, and had made a row 'nonFinite'.
  const used = lengths ? Array.from(lengths, (len) => Math.ceil(len / L)) : undefined;
  const judged = (t: Tensor) => {
    if (!used) return t;
    const masked = backend.maskTime(t, used);
    backend.dispose(t);
    return masked;
  };
  let starts: Tensor | undefined;
  let ys: Tensor | undefined;
  try {
    starts = judged(backend.broadcastTime(y0, K));
    for (let sweep = 1; ; sweep++) {
      const flat = backend.reshape(starts, [R * K, n]);
      try {
        ys = backend.runSequential(program, { input: folded, y0: flat, params });
      } finally {
        backend.dispose(flat);
      }
      const last = backend.timeStep(ys, L - 1);
      let ends: Tensor;
      try {
        ends = backend.reshape(last, [R, K, n]);
      } finally {
        backend.dispose(last);
      }
      let next: Tensor;
      try {
        next = judged(backend.shiftTime(ends, y0, 1));
      } finally {
        backend.dispose(ends);
      }
      let update: Awaited<ReturnType<Backend['newtonUpdate']>>;
      try {
        // The starts as a Newton iterate, clip off (the trajectory is what it is), NaN counted,
        // to START_TOLERANCE of the tolerance.
        update = yield* readUpdate(next, starts, {
          atol: START_TOLERANCE * tol.atol,
          rtol: START_TOLERANCE * tol.rtol,
          clip: Number.POSITIVE_INFINITY,
        });
      } finally {
        backend.dispose(next);
      }
      backend.dispose(starts);
      starts = update.y;
      const converged = Uint8Array.from(update.rows.maxScaledDiff, (d, r) =>
        d <= 1 && update.rows.replaced[r] === 0 ? 1 : 0,
      );
      if (converged.every((c) => c === 1) || sweep >= maxSweeps) {
        const nonFinite = Uint8Array.from(update.rows.replaced, (c) => (c > 0 ? 1 : 0));
        const whole = backend.reshape(ys, [R, K * L, n]);
        backend.dispose(ys);
        ys = undefined;
        if (pad === 0) return { y: whole, converged, nonFinite, sweeps: sweep };
        try {
          return { y: backend.sliceTime(whole, 0, T), converged, nonFinite, sweeps: sweep };
        } finally {
          backend.dispose(whole);
        }
      }
      backend.dispose(ys);
      ys = undefined;
    }
  } finally {
    if (starts) backend.dispose(starts);
    backend.dispose(folded);
    if (ys) backend.dispose(ys);
  }
}
