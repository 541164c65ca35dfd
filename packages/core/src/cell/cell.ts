import type { StepProgram } from '../backend/program.js';
import { CellDefinitionError, describeValue, UnsupportedOptionError } from '../errors.js';
import { Rng } from '../util/random.js';
import { GraphBuilder } from './builder.js';
import type { Graph, NodeId, ParamSpec } from './graph.js';
import { jacobianExpr } from './jacobian.js';
import { Param, Vec, withBuilder } from './lang.js';
import type { MatExpr } from './matexpr.js';
import { smallestExactBlock, sparsityPattern } from './structure.js';
import { type VjpProgram, vjpProgram } from './vjp.js';

/** How to initialise a parameter. */
export type ParamInit =
  | { readonly uniform: number }
  | { readonly normal: number }
  | { readonly constant: number }
  | ((rng: Rng, shape: readonly number[]) => Float64Array);

export interface CellDefinition {
  /** A name for messages and benchmarks. */
  readonly name?: string;
  /** State size n. */
  readonly state: number;
  /** Input size m (0 for autonomous cells). */
  readonly input: number;
  /** Parameter shapes: [k] vectors, [rows, cols] dense or [blocks, rows, cols] block-diagonal matrices. */
  readonly params: Readonly<Record<string, readonly number[]>>;
  /**
   * Per-parameter init; default uniform in ±1/√n (PyTorch's RNN default). Checked by `defineCell`:
   * each name a parameter of the cell, each entry a function or one of { uniform: b ≥ 0 },
   * { normal: std ≥ 0 }, { constant: c } with a finite number (else a CellDefinitionError).
   */
  readonly init?: Readonly<Record<string, ParamInit>>;
}

/** The body of a cell: the step function, written with the cell language over h, x and the params. */
export type CellBody<P extends string = string> = (h: Vec, x: Vec, p: { readonly [K in P]: Param }) => Vec;

/** Host-side parameter values, one flat row-major array per parameter. */
export type ParamValues = Record<string, Float64Array>;

/**
 * A recurrent step y_t = f(y_{t−1}, x_t; θ), traced once to a graph. Everything a solver needs —
 * Jacobian expression, VJP program, the cheapest exact Jacobian structure — is derived from it.
 */
export class Cell {
  readonly name: string;
  readonly stateSize: number;
  readonly inputSize: number;
  readonly params: readonly ParamSpec[];
  readonly graph: Graph;
  readonly output: NodeId;
  private readonly inits: Readonly<Record<string, ParamInit>>;
  private jac: { graph: Graph; expr: MatExpr } | undefined;
  private exact: number | undefined;
  private readonly programs = new Map<string, StepProgram>();
  private vjpCache: VjpProgram | undefined;

  constructor(def: CellDefinition, body: CellBody<string>) {
    if (def === null || typeof def !== 'object') {
      throw new CellDefinitionError(
        'defineCell(def, body): def',
        'an object { state, input, params }',
        describe(def),
      );
    }
    if (typeof body !== 'function') {
      throw new CellDefinitionError(
        'defineCell(def, body): body',
        'a function (h, x, p) => Vec',
        describe(body),
      );
    }
    const cellName = def.name ?? 'cell';
    if (!Number.isInteger(def.state) || def.state < 1) {
      throw new CellDefinitionError(
        `cell ${cellName}: state`,
        'a positive integer (the state size)',
        describe(def.state),
      );
    }
    if (!Number.isInteger(def.input) || def.input < 0) {
      throw new CellDefinitionError(
        `cell ${cellName}: input`,
        'an integer ≥ 0 (the input size)',
        describe(def.input),
      );
    }
    // An array had been read as parameters named '0', '1', …
    if (def.params === null || typeof def.params !== 'object' || Array.isArray(def.params)) {
      throw new CellDefinitionError(
        `cell ${cellName}: params`,
        'an object of parameter shapes ({ name: shape })',
        describe(def.params),
      );
    }
    this.name = cellName;
    this.stateSize = def.state;
    this.inputSize = def.input;
    this.params = Object.entries(def.params).map(([name, shape]) => {
      // Params travel in plain records (values, tensors, gradients), where such a name reads the
      // inherited member: a gradient of 'toString' was summed onto Object.prototype.toString.
      if (name in Object.prototype)
        throw new CellDefinitionError(`cell ${cellName}: params.${name}`, 'a name that is not a member of Object.prototype', name);
      if (
        !Array.isArray(shape) ||
        shape.length < 1 ||
        shape.length > 3 ||
        !shape.every((d) => Number.isInteger(d) && d > 0)
      ) {
        throw new CellDefinitionError(
          `cell ${cellName}: params.${name}`,
          'a shape of 1–3 positive integer dims ([k], [rows, cols] or [blocks, rows, cols])',
          Array.isArray(shape) ? `[${shape.join(', ')}]` : describe(shape),
        );
      }
      return { name, shape: [...shape], size: shape.reduce((a, b) => a * b, 1) };
    });
    this.inits = checkInits(cellName, def.init, this.params);
    const b = new GraphBuilder(def.state, def.input, this.params);
    const out = withBuilder(b, () => {
      const h = new Vec(b, b.state());
      const x = def.input > 0 ? new Vec(b, b.input()) : new Vec(b, b.constant([0]));
      const p: Record<string, Param> = {};
      for (const spec of this.params) p[spec.name] = new Param(b, b.param(spec.name), spec.name, spec.shape);
      return body(h, x, p);
    });
    if (!(out instanceof Vec)) {
      throw new CellDefinitionError(
        `cell ${this.name}: the body's return value`,
        'a vector (Vec) of the state size',
        describe(out),
      );
    }
    if (out.size !== def.state) {
      throw new CellDefinitionError(
        `cell ${this.name}: the body's return value`,
        `a vector of the state size ${def.state}`,
        `a vector of size ${out.size}`,
      );
    }
    this.graph = b.graph();
    this.output = out.id;
  }

  /** ∂f/∂y as a matrix expression over an extended graph. */
  get jacobian(): { readonly graph: Graph; readonly expr: MatExpr } {
    this.jac ??= jacobianExpr(this.graph, this.output);
    return this.jac;
  }

  /**
   * The smallest block size whose block-diagonal Jacobian is exact for this cell: 1 for elementwise
   * cells, the head size for multi-head cells, n for dense ones.
   */
  get exactBlockSize(): number {
    this.exact ??= smallestExactBlock(
      sparsityPattern(this.jacobian.graph, this.jacobian.expr),
      this.stateSize,
    );
    return this.exact;
  }

  /** f alone: outputs [f]. */
  stepProgram(): StepProgram {
    return this.cached('step', () => ({ graph: this.graph, outputs: [this.output] }));
  }

  /** f and ∂f/∂y in block structure of size s: outputs [f], jacobian. */
  linearizeProgram(blockSize: number): StepProgram {
    return this.cached(`lin:${blockSize}`, () => ({
      graph: this.jacobian.graph,
      outputs: [this.output],
      jacobian: { expr: this.jacobian.expr, blockSize },
    }));
  }

  /**
   * The one-step residual r = f(y_{t−1}, x_t) − y_t as a step program: state y_{t−1}, input x_t,
   * cotangent y_t (the iterate, unshifted), one output r; with `blockSize`, also the Jacobian of f
   * in that structure. Newton needs r rather than f, and fusing the subtraction saves a pass.
   */
  residualProgram(blockSize?: number): StepProgram {
    return this.cached(`res:${blockSize ?? 'none'}`, () => {
      const base = blockSize === undefined ? this.graph : this.jacobian.graph;
      const b = GraphBuilder.extend(base);
      const r = b.sub(this.output, b.cotangent(this.stateSize));
      const program: StepProgram = { graph: b.graph(), outputs: [r] };
      return blockSize === undefined ? program : { ...program, jacobian: { expr: this.jacobian.expr, blockSize } };
    });
  }

  /** The reverse-mode program of one step. */
  get vjp(): VjpProgram {
    this.vjpCache ??= vjpProgram(this.graph, this.output);
    return this.vjpCache;
  }

  /** Seeded parameter values. */
  init(options: { seed?: number } = {}): ParamValues {
    // A misspelt { sead: 1 } or a bare init(5) had run with seed 0 in silence.
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      throw new UnsupportedOptionError('cell.init options', options, '{ seed } (or nothing): init({ seed: 5 })');
    for (const key of Object.keys(options))
      if (key !== 'seed') throw new UnsupportedOptionError(key, (options as Record<string, unknown>)[key], 'the one option of cell.init: seed');
    const rng = new Rng(options.seed ?? 0);
    const bound = 1 / Math.sqrt(this.stateSize);
    const out: ParamValues = {};
    for (const spec of this.params) {
      const init = this.inits[spec.name] ?? { uniform: bound };
      let values: Float64Array;
      if (typeof init === 'function') values = initFromFunction(this.name, spec, init(rng, spec.shape));
      else if ('uniform' in init) values = rng.uniformArray(spec.size, -init.uniform, init.uniform);
      else if ('normal' in init) values = rng.normalArray(spec.size, init.normal);
      else values = new Float64Array(spec.size).fill(init.constant);
      if (values.length !== spec.size) {
        throw new CellDefinitionError(
          `cell ${this.name}: init.${spec.name}`,
          `${spec.size} values`,
          `${values.length}`,
        );
      }
      out[spec.name] = values;
    }
    return out;
  }

  /** Total number of scalar parameters. */
  get parameterCount(): number {
    return this.params.reduce((s, p) => s + p.size, 0);
  }

  private cached(key: string, make: () => StepProgram): StepProgram {
    let p = this.programs.get(key);
    if (!p) {
      p = make();
      this.programs.set(key, p);
    }
    return p;
  }
}

/** The kinds of ParamInit given as an object, each with a number. */
const INIT_KINDS = ['uniform', 'normal', 'constant'] as const;
const INIT_FORMS = '{ uniform: bound }, { normal: std }, { constant: value } or a function (rng, shape) => Float64Array';

/**
 * `init`, checked when the cell is defined: an object whose names are parameters of the cell (an
 * entry for another name had been ignored in silence, a misspelt one leaving the default), each a
 * function or exactly one of { uniform: b }, { normal: s } with b, s finite and ≥ 0, or
 * { constant: c } with c finite (`{ foo: 1 }`, `{ constant: 'x' }` and `{ normal: NaN }` had made
 * NaN parameters).
 */
function checkInits(cell: string, init: unknown, params: readonly ParamSpec[]): Readonly<Record<string, ParamInit>> {
  if (init === undefined) return {};
  if (init === null || typeof init !== 'object' || Array.isArray(init)) {
    throw new CellDefinitionError(`cell ${cell}: init`, 'an object of per-parameter inits ({ name: init })', describeValue(init));
  }
  for (const [name, spec] of Object.entries(init)) {
    const where = `cell ${cell}: init.${name}`;
    if (!params.some((p) => p.name === name)) {
      const names = params.map((p) => `'${p.name}'`).join(', ') || 'none';
      throw new CellDefinitionError(where, `the name of a parameter of the cell (${names})`, 'a parameter the cell does not have');
    }
    if (typeof spec === 'function') continue;
    const keys = spec !== null && typeof spec === 'object' && !Array.isArray(spec) ? Object.keys(spec) : [];
    const kind = keys.length === 1 ? INIT_KINDS.find((k) => k === keys[0]) : undefined;
    if (kind === undefined) throw new CellDefinitionError(where, INIT_FORMS, describeValue(spec));
    const v: unknown = (spec as Record<string, unknown>)[kind];
    const scale = kind !== 'constant';
    if (typeof v !== 'number' || !Number.isFinite(v) || (scale && v < 0)) {
      throw new CellDefinitionError(`${where}.${kind}`, scale ? `a finite number ≥ 0 (the ${kind === 'uniform' ? 'bound' : 'standard deviation'})` : 'a finite number', describeValue(v));
    }
  }
  return init as Readonly<Record<string, ParamInit>>;
}

/** What an init function returned: `spec.size` finite numbers, as a Float64Array. */
function initFromFunction(cell: string, spec: ParamSpec, values: unknown): Float64Array {
  const where = `cell ${cell}: init.${spec.name}`;
  const want = `a function returning ${spec.size} finite numbers (a Float64Array)`;
  const length = (values as { length?: unknown } | null)?.length;
  if (values === null || typeof values !== 'object' || typeof length !== 'number') {
    throw new CellDefinitionError(where, want, describeValue(values));
  }
  const a = values as ArrayLike<unknown>;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new CellDefinitionError(`${where}[${i}]`, want, describeValue(v));
  }
  return values instanceof Float64Array ? values : Float64Array.from(a as ArrayLike<number>);
}

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'Object'})`;
  return typeof v;
}

/** Define a cell in the cell language; see `Cell`. */
export function defineCell<P extends string>(
  def: CellDefinition & { readonly params: Readonly<Record<P, readonly number[]>> },
  body: CellBody<P>,
): Cell {
  return new Cell(def, body as CellBody<string>);
}
