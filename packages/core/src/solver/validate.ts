import type { Backend, DType, Tensor } from '../backend/types.js';
import { isTensor } from '../backend/arg-checks.js';
import type { Cell } from '../cell/cell.js';
import { operands } from '../cell/graph.js';
import {
  DTypeError,
  describeValue,
  InvalidArgumentError,
  NonFiniteError,
  ShapeError,
  TensorStateError,
} from '../errors.js';

/**
 * A parameter set: host arrays (flat, uploaded for the call) or tensors already on the backend, each
 * of the parameter's shape or flat.
 */
export type ParamsInput = Readonly<Record<string, ArrayLike<number> | Tensor>>;

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export function checkTensor(backend: Backend, what: string, t: unknown): Tensor {
  if (!isTensor(t))
    throw new InvalidArgumentError(what, 'a Tensor made by backend.tensor()', describeValue(t));
  if (t.backendName !== backend.name) {
    throw new TensorStateError(
      `${what}: tensor belongs to backend '${t.backendName}', not '${backend.name}'`,
    );
  }
  return t;
}

/** A backend tensor of shape exactly [B, T, n] (a trajectory, its gradient, a warm start). */
export function checkTrajectory(
  backend: Backend,
  what: string,
  t: unknown,
  B: number,
  T: number,
  n: number,
): Tensor {
  const v = checkTensor(backend, what, t);
  if (v.shape.length !== 3 || v.shape[0] !== B || v.shape[1] !== T || v.shape[2] !== n) {
    throw new ShapeError(what, `[${B}, ${T}, ${n}]`, fmt(v.shape));
  }
  return v;
}

/** The backend argument: a deerjs Backend (checked by shape, as cells are). */
export function checkBackend(backend: unknown): asserts backend is Backend {
  const b = backend as Partial<Backend> | null;
  const ok =
    typeof b === 'object' &&
    b !== null &&
    typeof b.name === 'string' &&
    typeof b.runStep === 'function' &&
    typeof b.tensor === 'function' &&
    typeof b.capabilities === 'object' &&
    b.capabilities !== null;
  if (!ok) throw new InvalidArgumentError('backend', 'a deerjs Backend (createCpuBackend(), loadBackend(), …)', describeValue(backend));
}

/** The cell argument: a Cell from `defineCell` or `cells.*` (checked by shape, not by class, so a second copy of core still works). */
export function checkCell(what: string, cell: unknown): asserts cell is Cell {
  const c = cell as Partial<Cell> | null;
  const ok =
    typeof c === 'object' &&
    c !== null &&
    Number.isInteger(c.stateSize) &&
    Number.isInteger(c.inputSize) &&
    typeof c.stepProgram === 'function';
  if (!ok) throw new InvalidArgumentError(what, "a Cell (cells.gru(…), defineCell(…), …)", describeValue(cell));
}

export function checkSequenceInput(
  backend: Backend,
  cell: Cell,
  x: unknown,
): { B: number; T: number; dtype: DType } {
  checkBackend(backend);
  checkCell('cell', cell);
  const t = checkTensor(backend, 'x', x);
  const m = cell.inputSize;
  if (t.shape.length !== 3 || t.shape[2] !== m || t.shape[0]! < 1 || t.shape[1]! < 1) {
    throw new ShapeError('x', `[B ≥ 1, T ≥ 1, ${m}] (batch, time, input size of ${cell.name})`, fmt(t.shape));
  }
  if (!backend.capabilities.dtypes.includes(t.dtype)) {
    throw new DTypeError('x', backend.capabilities.dtypes.join(' or '), t.dtype);
  }
  checkCellConstants(cell, t.dtype);
  return { B: t.shape[0]!, T: t.shape[1]!, dtype: t.dtype };
}

/** Cells whose constants a float32 solve takes (checked once per cell). */
const float32Cells = new WeakSet<Cell>();

/**
 * The cell's constants as a float32 solve stores them: one past float32's range (|c| > 3.4e38,
 * finite in float64) is ±Infinity there. As a bound of `minimum`/`maximum` (so `clip`) that changes
 * nothing — no float32 value lies between 3.4e38 and the constant, and every backend holds to it
 * (conformance `graph/constant-past-float32`) — but in arithmetic it does: `mul(v, 1e40)` would be a
 * multiplication by Infinity, in silence, where a parameter of that size is refused
 * (NonFiniteError, "as float32"). Such a use is a DTypeError naming the constant and the op;
 * float64 takes every constant (the language itself refuses NaN and ±Inf).
 */
export function checkCellConstants(cell: Cell, dtype: DType): void {
  if (dtype !== 'float32' || float32Cells.has(cell)) return;
  const nodes = cell.graph.nodes;
  const users: number[][] = nodes.map(() => []);
  nodes.forEach((node, id) => {
    for (const o of operands(node)) users[o]!.push(id);
  });
  /** The first use of node `id`'s values that is not a bound of min/max (through slices and concats), or undefined. */
  const arithmetic = (id: number): string | undefined => {
    if (id === cell.output) return 'the output';
    for (const u of users[id]!) {
      const node = nodes[u]!;
      if (node.op === 'binary' && (node.fn === 'min' || node.fn === 'max')) continue;
      const through = node.op === 'slice' || node.op === 'concat' ? arithmetic(u) : node.op === 'unary' || node.op === 'binary' ? node.fn : node.op;
      if (through !== undefined) return through;
    }
    return undefined;
  };
  nodes.forEach((node, id) => {
    if (node.op !== 'const') return;
    const bad = node.values.find((v) => !Number.isFinite(Math.fround(v)));
    if (bad === undefined) return;
    const use = arithmetic(id);
    if (use === undefined) return;
    throw new DTypeError(
      `cell ${cell.name}: the constant ${bad}, used in ${use}`,
      `float64 (in float32 it is ${bad > 0 ? '' : '-'}Infinity, past float32's largest finite value 3.4028235e38; only minimum, maximum and clip take such a constant there, as a bound)`,
      'float32',
    );
  });
  float32Cells.add(cell);
}

/**
 * A host array's entries, before it is uploaded: each a number — else an InvalidArgumentError naming
 * the first that is not (a string '1' had passed in float32, where Math.fround reads it as 1, and
 * been called non-finite, "got 1", in float64) — and finite once stored in `dtype`: the first NaN or
 * ±Inf is a NonFiniteError (finite in float64 but past float32's range, it would be ±Inf on the
 * backend).
 */
function checkHostFinite(what: string, a: ArrayLike<number>, dtype: DType): void {
  const round = dtype === 'float32' ? Math.fround : (v: number) => v;
  for (let i = 0; i < a.length; i++) {
    const v: unknown = a[i];
    if (typeof v !== 'number') throw new InvalidArgumentError(`${what}[${i}]`, 'a number', describeValue(v));
    if (Number.isFinite(round(v))) continue;
    if (Number.isFinite(v)) throw new NonFiniteError(`${what} (as ${dtype})`, i, round(v));
    throw new NonFiniteError(what, i, v);
  }
}

/** Tensors uploaded for one call, disposed together when it ends. */
export class Owned {
  private readonly list: Tensor[] = [];
  constructor(private readonly backend: Backend) {}
  add<T extends Tensor>(t: T): T {
    this.list.push(t);
    return t;
  }
  dispose(): void {
    for (const t of this.list.splice(0)) this.backend.dispose(t);
  }
}

export async function checkFiniteTensor(backend: Backend, what: string, t: Tensor): Promise<void> {
  const bad = await backend.findNonFinite(t);
  if (bad) throw new NonFiniteError(what, bad.index, bad.value);
}

/** Upload and check parameters; every name the cell declares must be given, and no other. */
export async function prepareParams(
  backend: Backend,
  cell: Cell,
  params: ParamsInput,
  dtype: DType,
  owned: Owned,
  checkFinite: boolean,
): Promise<Record<string, Tensor>> {
  checkParamNames(cell, params);
  const out: Record<string, Tensor> = {};
  for (const spec of cell.params) {
    const v = params[spec.name];
    if (v === undefined) throw new ShapeError(`params.${spec.name}`, fmt(spec.shape), 'nothing (missing)');
    if (isTensor(v)) {
      checkParamTensor(backend, spec, v, dtype);
      if (checkFinite) await checkFiniteTensor(backend, `params.${spec.name}`, v);
      out[spec.name] = v;
    } else {
      if (typeof v !== 'object' || v === null || typeof (v as ArrayLike<number>).length !== 'number') {
        throw new InvalidArgumentError(
          `params.${spec.name}`,
          `an array of ${spec.size} numbers or a tensor`,
          describeValue(v),
        );
      }
      if (v.length !== spec.size) {
        throw new ShapeError(
          `params.${spec.name}`,
          `${fmt(spec.shape)} (${spec.size} values)`,
          `${v.length} values`,
        );
      }
      checkHostFinite(`params.${spec.name}`, v, dtype);
      out[spec.name] = owned.add(backend.tensor(v, [spec.size], dtype));
    }
  }
  return out;
}

/** params is an object whose names are exactly the cell's (none unknown; missing ones are caught per parameter). */
export function checkParamNames(cell: Cell, params: unknown): asserts params is Readonly<Record<string, unknown>> {
  if (typeof params !== 'object' || params === null || Array.isArray(params) || isTensor(params)) {
    throw new InvalidArgumentError(
      'params',
      `an object of arrays or tensors named ${cell.params.map((p) => p.name).join(', ')}`,
      describeValue(params),
    );
  }
  for (const name of Object.keys(params)) {
    if (!cell.params.some((p) => p.name === name)) {
      throw new ShapeError(
        `params.${name}`,
        `one of ${cell.params.map((p) => p.name).join(', ')}`,
        'an unknown name',
      );
    }
  }
}

/** A parameter given as a tensor: of this backend, its own shape (or flat) and the solve's dtype. */
function checkParamTensor(backend: Backend, spec: Cell['params'][number], v: Tensor, dtype: DType): void {
  checkTensor(backend, `params.${spec.name}`, v);
  // The parameter's own shape or flat; a tensor of another shape with the same size (a
  // transposed matrix, say) is a mistake that would otherwise run silently.
  const same = v.shape.length === spec.shape.length && v.shape.every((d, i) => d === spec.shape[i]);
  const flat = v.shape.length === 1 && v.size === spec.size;
  if (!same && !flat) throw new ShapeError(`params.${spec.name}`, `${fmt(spec.shape)} or [${spec.size}]`, fmt(v.shape));
  if (v.dtype !== dtype)
    throw new DTypeError(`params.${spec.name}`, `${dtype} (the dtype of x)`, v.dtype);
}

/** Parameters for the synchronous entry points: every one a tensor (they read nothing to upload arrays). */
export function checkParamTensors(backend: Backend, cell: Cell, params: unknown, dtype: DType, caller: string): void {
  checkParamNames(cell, params);
  for (const spec of cell.params) {
    const v = params[spec.name];
    if (v === undefined) throw new ShapeError(`params.${spec.name}`, fmt(spec.shape), 'nothing (missing)');
    if (!isTensor(v)) throw new InvalidArgumentError(`params.${spec.name}`, `a tensor (${caller} takes no arrays)`, describeValue(v));
    checkParamTensor(backend, spec, v, dtype);
  }
}

/** h0: [B, n] or [n] (broadcast over the batch), a tensor or an array; default zeros. */
export async function prepareInitialState(
  backend: Backend,
  cell: Cell,
  h0: ArrayLike<number> | Tensor | undefined,
  B: number,
  dtype: DType,
  owned: Owned,
  checkFinite: boolean,
  name = 'h0',
): Promise<Tensor> {
  const n = cell.stateSize;
  if (h0 === undefined) return owned.add(backend.zeros([B, n], dtype));
  if (isTensor(h0)) {
    checkTensor(backend, name, h0);
    const s = h0.shape;
    const ok = (s.length === 2 && s[0] === B && s[1] === n) || (s.length === 1 && s[0] === n);
    if (!ok) throw new ShapeError(name, `[${B}, ${n}] or [${n}]`, fmt(s));
    if (h0.dtype !== dtype) throw new DTypeError(name, `${dtype} (the dtype of x)`, h0.dtype);
    if (checkFinite) await checkFiniteTensor(backend, name, h0);
    if (s.length === 2) return h0;
    const host = await backend.read(h0);
    return owned.add(backend.tensor(tile(host, B), [B, n], dtype));
  }
  if (typeof h0 !== 'object' || h0 === null || typeof h0.length !== 'number') {
    throw new InvalidArgumentError(
      name,
      `an array of ${n} or ${B * n} numbers, or a tensor`,
      describeValue(h0),
    );
  }
  if (h0.length !== B * n && h0.length !== n) {
    throw new ShapeError(name, `[${B}, ${n}] or [${n}] (${B * n} or ${n} values)`, `${h0.length} values`);
  }
  // Always checked: host arrays cost nothing to scan, and NaN here can only give a NaN answer.
  checkHostFinite(name, h0, dtype);
  return owned.add(backend.tensor(h0.length === n ? tile(h0, B) : h0, [B, n], dtype));
}

function tile(v: ArrayLike<number>, times: number): Float64Array {
  const out = new Float64Array(v.length * times);
  for (let k = 0; k < times; k++) for (let i = 0; i < v.length; i++) out[k * v.length + i] = v[i]!;
  return out;
}

export async function checkInputFinite(backend: Backend, x: Tensor, name = 'x'): Promise<void> {
  await checkFiniteTensor(backend, name, x);
}

/** A tensor initial guess must be a finite [B, T, n] trajectory of the solve's dtype. */
export async function checkInitialGuess(
  backend: Backend,
  guess: unknown,
  want: { B: number; T: number; n: number; dtype: DType },
  checkFinite: boolean,
): Promise<void> {
  if (typeof guess !== 'object' || guess === null) return;
  const g = checkTrajectory(backend, 'initialGuess', guess, want.B, want.T, want.n);
  if (g.dtype !== want.dtype) throw new DTypeError('initialGuess', `${want.dtype} (the dtype of the solve)`, g.dtype);
  if (checkFinite) await checkFiniteTensor(backend, 'initialGuess', g);
}

/** dy for a gradient: [B, T, n] of the solve's dtype. */
export function checkCotangent(
  backend: Backend,
  dy: unknown,
  B: number,
  T: number,
  n: number,
  dtype: DType,
): Tensor {
  const t = checkTrajectory(backend, 'dy', dy, B, T, n);
  if (t.dtype !== dtype) throw new DTypeError('dy', `${dtype} (the dtype of the solve)`, t.dtype);
  return t;
}

/**
 * Per-row sequence lengths (padded batches): B integers in [0, T]. Returns them, or undefined when
 * every row is T long (nothing to mask).
 */
export function checkLengths(lengths: unknown, B: number, T: number): Uint32Array | undefined {
  if (lengths === undefined) return undefined;
  if (typeof lengths !== 'object' || lengths === null || typeof (lengths as ArrayLike<number>).length !== 'number') {
    throw new InvalidArgumentError('lengths', `an array of ${B} sequence lengths`, describeValue(lengths));
  }
  const a = lengths as ArrayLike<number>;
  if (a.length !== B) throw new ShapeError('lengths', `[${B}] (one length per batch row)`, `${a.length} values`);
  const out = new Uint32Array(B);
  for (let b = 0; b < B; b++) {
    const v = a[b]!;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > T) {
      throw new ShapeError(`lengths[${b}]`, `an integer in [0, ${T}]`, describeValue(v));
    }
    out[b] = v;
  }
  return out.every((v) => v === T) ? undefined : out;
}

/** Lengths relative to the window of steps t0 .. t0 + len − 1 (undefined: nothing to mask). */
export function windowLengths(lengths: Uint32Array | undefined, t0: number, len: number): Uint32Array | undefined {
  if (!lengths) return undefined;
  const rel = lengths.map((v) => Math.max(0, Math.min(len, v - t0)));
  return rel.every((v) => v === len) ? undefined : rel;
}
