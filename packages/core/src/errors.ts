/**
 * Typed errors. Every message says what was expected and what came, so a caller can act on it
 * without reading a stack trace.
 */
export class DeerError extends Error {
  override name = 'DeerError';
}

/** A tensor or array has the wrong shape or length. */
export class ShapeError extends DeerError {
  override name = 'ShapeError';
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly got: string,
  ) {
    // "shape" reads right before a shape ("[B, T, 3]"), not before a count ("6 values") or a
    // value's description ("an integer in [0, 50]").
    const one = (s: string) => s.replace(/(?<![\d.])1 values\b/g, '1 value');
    super(`${what}: expected ${expected.startsWith('[') ? 'shape ' : ''}${one(expected)}, got ${one(got)}`);
  }
}

/** A tensor has a dtype the operation or backend does not accept. */
export class DTypeError extends DeerError {
  override name = 'DTypeError';
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`${what}: expected dtype ${expected}, got ${got}`);
  }
}

/** Input data (x, h0 or a parameter) holds NaN or ±Infinity. */
export class NonFiniteError extends DeerError {
  override name = 'NonFiniteError';
  constructor(
    readonly what: string,
    readonly index: number,
    readonly value: number,
  ) {
    super(`${what}: expected finite values, got ${value} at flat index ${index}`);
  }
}

/** Newton did not converge within maxIter and the caller asked for `fallback: 'throw'`. */
export class ConvergenceError extends DeerError {
  override name = 'ConvergenceError';
  constructor(
    message: string,
    readonly stats: unknown,
  ) {
    super(message);
  }
}

/** An adaptive ODE solver's step size underflowed (no longer moves t) or overflowed. */
export class StepSizeError extends DeerError {
  override name = 'StepSizeError';
  constructor(
    readonly solver: string,
    readonly t: number,
    readonly step: number,
    readonly steps: number,
    readonly rejected: number,
  ) {
    super(
      `${solver}: the step size ${step} at t = ${t} ${Number.isFinite(step) && step >= 0 ? 'underflowed (it no longer advances t)' : 'is not a finite positive number'} after ${steps} accepted and ${rejected} rejected steps: the field is too stiff or not finite here`,
    );
  }
}

/**
 * The ODE adjoint's ∂L/∂θ and ∂L/∂x would not be accurate: they integrate λᵀ∂f/∂θ over each interval
 * by the trapezoid rule, which fails where the field is stiff on the interval's scale (J̄·Δt ≫ 1:
 * λ and y change by e^{−rate·Δt} inside it), although the exponential forward step stays accurate.
 */
export class StiffAdjointError extends DeerError {
  override name = 'StiffAdjointError';
  constructor(
    readonly stiffness: number,
    readonly limit: number,
    readonly from: number,
    readonly to: number,
    fn = 'solveIvpWithGrad',
  ) {
    super(
      `${fn}: an entry of J̄·Δt (a rate times a step) reaches ${stiffness.toPrecision(3)} on an interval between grid points ${from} and ${to} (limit ${limit}); there the trapezoid rule that gives ∂L/∂θ and ∂L/∂x is off by 8% (at 1) to orders of magnitude. Refine the grid where the field is stiff (0.3 keeps it within about 1%), or pass stiffAdjoint: 'allow' to take the rough gradients (the result's stiffness says how rough)`,
    );
  }
}

/** An option value is not supported (by deerjs, or by the chosen backend). */
export class UnsupportedOptionError extends DeerError {
  override name = 'UnsupportedOptionError';
  constructor(
    readonly option: string,
    readonly got: unknown,
    readonly expected: string,
  ) {
    super(`option ${option}: expected ${expected}, got ${describeValue(got)}`);
  }
}

/** An argument is of the wrong kind (not a tensor, not an object, …). */
export class InvalidArgumentError extends DeerError {
  override name = 'InvalidArgumentError';
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`${what}: expected ${expected}, got ${got}`);
  }
}

/** A value as a message shows it: NaN, Infinity, functions and tensors by name, not as JSON null. */
export function describeValue(v: unknown): string {
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n (a BigInt)`;
  if (v === undefined || v === null || typeof v === 'boolean') return String(v);
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return v.toString();
  if (Array.isArray(v))
    return v.length > 8 ? `an array of ${v.length} values` : `[${v.map(describeValue).join(', ')}]`;
  if (typeof v === 'object' && 'shape' in v && 'dtype' in v) {
    const t = v as { shape: readonly number[]; dtype: string };
    return `a ${t.dtype} tensor [${t.shape.join(', ')}]`;
  }
  if (typeof v === 'object' && 'capabilities' in v && 'name' in v && typeof v.name === 'string') return `the '${v.name}' backend`;
  try {
    const json = JSON.stringify(v);
    return json && json.length <= 80 ? json : 'an object';
  } catch {
    return 'an object';
  }
}

/** One candidate backend and why it could not be loaded. */
export interface BackendFailure {
  readonly name: string;
  readonly reason: string;
  /** The npm package to install, when the failure is a missing package. */
  readonly install?: string;
}

/** No backend could be loaded; lists why each candidate failed. */
export class BackendUnavailableError extends DeerError {
  override name = 'BackendUnavailableError';
  constructor(
    readonly requested: string | undefined,
    readonly failures: readonly BackendFailure[],
  ) {
    const lines = failures.map(
      (f) => `  - ${f.name}: ${f.reason}${f.install ? ` (install it with: npm install ${f.install})` : ''}`,
    );
    const head =
      requested === undefined
        ? 'no deerjs backend could be loaded'
        : `deerjs backend '${requested}' could not be loaded`;
    super(lines.length > 0 ? `${head}:\n${lines.join('\n')}` : `${head}: no backend is registered`);
  }
}

/** The device running a backend was lost; pending work was rejected. */
export class DeviceLostError extends DeerError {
  override name = 'DeviceLostError';
  constructor(
    readonly backend: string,
    readonly reason: string,
  ) {
    super(`${backend}: the device was lost (${reason})`);
  }
}

/** A backend could not allocate memory for a tensor. */
export class OutOfMemoryError extends DeerError {
  override name = 'OutOfMemoryError';
  constructor(
    readonly backend: string,
    readonly bytes: number,
    readonly detail = '',
  ) {
    // bytes 0: an allocation inside an operation, of a size the engine did not say.
    super(`${backend}: out of memory${bytes > 0 ? ` allocating ${bytes} bytes` : ''}${detail ? ` (${detail})` : ''}`);
  }
}

/**
 * How V8 words memory it refuses inside an operation (a RangeError): an array, a WebAssembly
 * instance or its memory.grow. Backends turn such errors into OutOfMemoryError.
 */
export const REFUSED_MEMORY = /out of memory|cannot allocate|allocation failed|could not allocate|unable to grow|maximum memory size/i;

/** `alloc()`, with an allocation the JavaScript engine refuses (a RangeError) as `backend`'s OutOfMemoryError. */
export function allocating<T>(backend: string, bytes: number, alloc: () => T): T {
  try {
    return alloc();
  } catch (err) {
    if (err instanceof RangeError) throw new OutOfMemoryError(backend, bytes, err.message);
    throw err;
  }
}

/** A tensor was used after it was disposed, or with a backend that did not make it. */
export class TensorStateError extends DeerError {
  override name = 'TensorStateError';
}

/**
 * A cell definition is malformed: a size, shape or option of `defineCell`, a built-in cell or a
 * cell-language function is not what it must be. `argument` names what was wrong.
 */
export class CellDefinitionError extends DeerError {
  override name = 'CellDefinitionError';
  constructor(
    readonly argument: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`${argument}: expected ${expected}, got ${got}`);
  }
}
