import {
  type Backend,
  type Cell,
  checkDeerOptions,
  checkOptionNames,
  describeValue,
  type DeerOptions,
  InvalidArgumentError,
  isTensor,
  NonFiniteError,
  Rng,
  ShapeError,
  type Tensor,
  UnsupportedOptionError,
} from '@deerjs/core';
import { type CellKind, layerCell, stateSize } from './cells.js';
import { layerNormCell, type NormRun, runLayerNorm } from './layer-norm.js';
import { Linear } from './linear.js';
import { softmaxCrossEntropy } from './loss.js';
import { checkFiniteValues, type ParamShape, type Params } from './params.js';
import { type Pooling, poolBackward, poolForward } from './pooling.js';
import { type LayerRun, runLayer, type Solver } from './recurrent.js';

/** The forward pass of the layer stack, kept for the backward pass. */
interface Stack {
  readonly runs: LayerRun[];
  readonly norms: NormRun[];
  /** The last layer's output (after its norm). */
  readonly top: Tensor;
  dispose(): void;
}

/** A sequence classifier: a stack of recurrent layers, pooling over time, a linear head. */
export interface ClassifierConfig {
  readonly inputSize: number;
  readonly classes: number;
  readonly cell: CellKind;
  readonly hiddenSize: number;
  readonly layers: number;
  /** Heads of the multi-head GRU ('mhgru'). */
  readonly heads?: number;
  /** Add each layer's input to its output where the shapes agree (every layer but the first). */
  readonly residual: boolean;
  readonly pooling: Pooling;
  /** Layer-normalise each layer's output (after the residual add); parameters `norm.<l>.gamma/beta`. */
  readonly layerNorm?: boolean;
}

export interface RunOptions {
  readonly solver: Solver;
  readonly deer?: DeerOptions;
}

export interface StepResult {
  readonly loss: number;
  readonly correct: number;
  /** ∂loss/∂θ for every parameter. */
  readonly grads: Params;
  /** Newton iterations per layer (zeros for the sequential solver). */
  readonly iterations: readonly number[];
  /** Whether any layer fell back to sequential evaluation. */
  readonly fellBack: boolean;
  /**
   * Whether every layer's solve vouches for its trajectory (`LayerRun.converged`). False where a
   * layer returned rows Newton did not finish (`deer.fallback: 'none'`) or a trajectory that
   * overflowed — the loss and gradients are then not those of the model — and where core stopped
   * with `stopReason` 'rounding': the tolerance is finer than the dtype resolves (say rtol 1e-9 in
   * float32), and the answer, kept, is as good as the dtype allows (loosen the tolerance to see
   * true). Always true for the sequential solver.
   */
  readonly converged: boolean;
}

/**
 * Parameters are named `rnn.<layer>.<cell param>` and `head.W`, `head.b`. The recurrent stack runs
 * on the backend; pooled features [B, hidden] come back to the host for the head and the loss.
 */
export class SequenceClassifier {
  readonly cells: readonly Cell[];
  /** One layer norm per layer when `config.layerNorm` is set. */
  readonly norms: readonly Cell[];
  readonly head: Linear;

  constructor(readonly config: ClassifierConfig) {
    checkConfig(config);
    const { inputSize, cell, hiddenSize, layers, heads, classes } = config;
    const list: Cell[] = [];
    let m = inputSize;
    let used = inputSize;
    for (let l = 0; l < layers; l++) {
      list.push(layerCell({ kind: cell, inputSize: m, inputUsed: used, hiddenSize, heads }));
      m = stateSize(cell, hiddenSize);
      used = hiddenSize;
    }
    this.cells = list;
    this.norms = config.layerNorm ? list.map((c) => layerNormCell(c.stateSize)) : [];
    this.head = new Linear(hiddenSize, classes);
  }

  /** Every parameter's name and shape, in a fixed order. */
  get shapes(): ParamShape[] {
    const out: ParamShape[] = [];
    this.cells.forEach((c, l) => {
      for (const p of c.params) out.push({ name: `rnn.${l}.${p.name}`, shape: p.shape });
    });
    this.norms.forEach((c, l) => {
      for (const p of c.params) out.push({ name: `norm.${l}.${p.name}`, shape: p.shape });
    });
    out.push({ name: 'head.W', shape: [this.head.outFeatures, this.head.inFeatures] });
    out.push({ name: 'head.b', shape: [this.head.outFeatures] });
    return out;
  }

  get parameterCount(): number {
    const layers = [...this.cells, ...this.norms];
    return layers.reduce((s, c) => s + c.parameterCount, 0) + this.head.parameterCount;
  }

  /** Seeded initial parameters: each layer from its own stream, so adding a layer keeps the others. */
  init(seed: number): Params {
    // The streams below take seed · 7919 modulo 2³² (7919 is odd: distinct for distinct seeds in
    // range). NaN, Infinity and strings had all given seed 0's parameters, 2³² too.
    if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32))
      throw new InvalidArgumentError('seed', 'an integer in [0, 2**32)', String(seed));
    const out: Params = {};
    this.cells.forEach((c, l) => {
      const values = c.init({ seed: (seed * 7919 + l * 104729 + 1) >>> 0 });
      for (const [k, v] of Object.entries(values)) out[`rnn.${l}.${k}`] = v;
    });
    this.norms.forEach((c, l) => {
      for (const [k, v] of Object.entries(c.init())) out[`norm.${l}.${k}`] = v;
    });
    const head = this.head.init(new Rng((seed * 7919 + 15485863) >>> 0));
    out['head.W'] = head.W;
    out['head.b'] = head.b;
    return out;
  }

  private layerParams(params: Readonly<Params>, cell: Cell, prefix: string): Record<string, Float64Array> {
    const out: Record<string, Float64Array> = {};
    for (const p of cell.params) {
      const v = params[`${prefix}.${p.name}`];
      if (!v || v.length !== p.size)
        throw new ShapeError(`${prefix}.${p.name}`, `${p.size} values`, v ? `${v.length} values` : 'nothing (missing)');
      out[p.name] = v;
    }
    return out;
  }

  private headParams(params: Readonly<Params>): { W: Float64Array; b: Float64Array } {
    const W = params['head.W'];
    const b = params['head.b'];
    const [k, f] = [this.head.outFeatures, this.head.inFeatures];
    if (!W || W.length !== k * f) throw new ShapeError('head.W', `${k * f} values ([${k}, ${f}])`, W ? `${W.length} values` : 'nothing (missing)');
    if (!b || b.length !== k) throw new ShapeError('head.b', `${k} values`, b ? `${b.length} values` : 'nothing (missing)');
    return { W, b };
  }

  /**
   * Exactly the model's parameters, each an array of its size: a missing or mistyped one is a
   * ShapeError (an undefined entry had been a TypeError), and an unknown name is refused here
   * rather than by the optimizer after the step.
   */
  private checkParams(params: Readonly<Params>): void {
    if (typeof params !== 'object' || params === null) throw new InvalidArgumentError('params', 'an object of Float64Arrays by name', describeValue(params));
    const shapes = this.shapes;
    for (const name of Object.keys(params)) {
      if (!shapes.some((p) => p.name === name))
        throw new ShapeError(name, `one of the model's parameters (${shapes.map((p) => p.name).join(', ')})`, 'an unknown name');
    }
    for (const { name, shape } of shapes) {
      const size = shape.reduce((a, b) => a * b, 1);
      const v: unknown = params[name];
      if (v === undefined) throw new ShapeError(name, `${size} values`, 'nothing (missing)');
      if (!ArrayBuffer.isView(v) && !Array.isArray(v)) throw new InvalidArgumentError(name, `an array of ${size} numbers`, describeValue(v));
      if ((v as ArrayLike<number>).length !== size) throw new ShapeError(name, `${size} values`, `${(v as ArrayLike<number>).length} values`);
    }
  }

  /** x must be a backend tensor [B, T, inputSize] (a Float64Array had been a raw TypeError). */
  private checkInput(x: Tensor): void {
    const m = this.config.inputSize;
    if (!isTensor(x)) throw new InvalidArgumentError('x', `a backend tensor [B, T, ${m}] (backend.tensor(…))`, describeValue(x));
    if (x.shape.length !== 3 || x.shape[2] !== m) throw new ShapeError('x', `[B, T, ${m}]`, `[${x.shape.join(', ')}]`);
  }

  private async forwardStack(
    backend: Backend,
    params: Readonly<Params>,
    x: Tensor,
    opts: RunOptions,
  ): Promise<Stack> {
    checkRunOptions(opts, this.cells);
    this.checkParams(params);
    // The layers skip deer's own checks (each would read its input again); one check here covers
    // what a user hands in, so NaN data or weights are an error rather than a NaN loss.
    if (opts.deer?.checkFinite !== false) {
      for (const [name, v] of Object.entries(params)) {
        checkFiniteValues(name, v);
        // Finite in float64 but past float32's range: the backend would hold ±Infinity.
        if (x.dtype === 'float32')
          for (let i = 0; i < v.length; i++)
            if (!Number.isFinite(Math.fround(v[i]!))) throw new NonFiniteError(`${name} (as float32)`, i, Math.fround(v[i]!));
      }
      const bad = await backend.findNonFinite(x);
      if (bad) throw new NonFiniteError('x', bad.index, bad.value);
    }
    const runs: LayerRun[] = [];
    const norms: NormRun[] = [];
    const dispose = () => {
      for (const r of norms) r.dispose();
      for (const r of runs) r.dispose();
    };
    try {
      let inp = x;
      for (let l = 0; l < this.cells.length; l++) {
        const cell = this.cells[l]!;
        const run = await runLayer(backend, cell, this.layerParams(params, cell, `rnn.${l}`), inp, {
          solver: opts.solver,
          deer: opts.deer,
          residual: this.config.residual && l > 0,
        });
        runs.push(run);
        inp = run.out;
        const norm = this.norms[l];
        if (norm) {
          const nr = runLayerNorm(backend, norm, this.layerParams(params, norm, `norm.${l}`), run.out);
          norms.push(nr);
          inp = nr.out;
        }
      }
      return { runs, norms, top: inp, dispose };
    } catch (err) {
      dispose();
      throw err;
    }
  }

  /** Logits [B, classes] for x [B, T, inputSize]. */
  async logits(
    backend: Backend,
    params: Readonly<Params>,
    x: Tensor,
    opts: RunOptions,
  ): Promise<Float64Array> {
    this.checkInput(x);
    const stack = await this.forwardStack(backend, params, x, opts);
    try {
      const pooled = await poolForward(backend, stack.top, this.config.hiddenSize, this.config.pooling);
      const { W, b } = this.headParams(params);
      return this.head.forward(W, b, pooled, x.shape[0]!);
    } finally {
      stack.dispose();
    }
  }

  /** Loss, accuracy count and the gradient of the mean cross-entropy with respect to every parameter. */
  async lossAndGrad(
    backend: Backend,
    params: Readonly<Params>,
    x: Tensor,
    labels: ArrayLike<number>,
    opts: RunOptions,
  ): Promise<StepResult> {
    this.checkInput(x);
    const B = x.shape[0]!;
    if (typeof labels !== 'object' || labels === null || typeof labels.length !== 'number')
      throw new InvalidArgumentError('labels', `an array of ${B} class indices`, describeValue(labels));
    if (labels.length !== B) throw new ShapeError('labels', `${B} labels (the batch)`, `${labels.length}`);
    const stack = await this.forwardStack(backend, params, x, opts);
    const runs = stack.runs;
    try {
      const top = stack.top;
      const F = this.config.hiddenSize;
      const pooled = await poolForward(backend, top, F, this.config.pooling);
      const { W, b } = this.headParams(params);
      const logits = this.head.forward(W, b, pooled, B);
      const ce = softmaxCrossEntropy(logits, labels, this.config.classes);
      const hg = this.head.backward(W, pooled, ce.dLogits, B);
      const grads: Params = { 'head.W': hg.W, 'head.b': hg.b };
      let dOut: Tensor | null = poolBackward(backend, hg.x, top, F, this.config.pooling);
      try {
        for (let l = runs.length - 1; l >= 0; l--) {
          const run = runs[l]!;
          const norm = stack.norms[l];
          if (norm) {
            const back = await norm.backward(dOut!);
            backend.dispose(dOut!);
            dOut = back.dy;
            for (const [name, g] of Object.entries(back.grads)) grads[`norm.${l}.${name}`] = g;
          }
          const dy: Tensor = dOut!;
          const g = await run.vjp(dy);
          const temps = [g.h0, ...Object.values(g.params)];
          try {
            for (const [name, t] of Object.entries(g.params))
              grads[`rnn.${l}.${name}`] = Float64Array.from(await backend.read(t));
          } finally {
            for (const t of temps) backend.dispose(t);
          }
          // The input gradient of layer l is the output gradient of layer l − 1 (plus the skip path).
          let dIn: Tensor | null = null;
          if (l > 0) dIn = run.residual ? backend.add(g.x, dy) : g.x;
          if (dIn !== g.x) backend.dispose(g.x);
          backend.dispose(dy);
          dOut = dIn;
        }
      } finally {
        if (dOut) backend.dispose(dOut);
      }
      return {
        loss: ce.loss,
        correct: ce.correct,
        grads,
        iterations: runs.map((r) => r.iterations),
        fellBack: runs.some((r) => r.fellBack),
        converged: runs.every((r) => r.converged),
      };
    } finally {
      stack.dispose();
    }
  }
}

const CONFIG_NAMES = ['inputSize', 'classes', 'cell', 'hiddenSize', 'layers', 'heads', 'residual', 'pooling', 'layerNorm'];

/** The configuration, checked: an unknown cell or pooling would otherwise fall through to another. */
function checkConfig(config: ClassifierConfig): void {
  if (config === null || typeof config !== 'object' || Array.isArray(config))
    throw new InvalidArgumentError(
      'SequenceClassifier config',
      '{ inputSize, classes, cell, hiddenSize, layers, residual, pooling, heads?, layerNorm? }',
      describeValue(config),
    );
  checkOptionNames(config, CONFIG_NAMES, 'SequenceClassifier');
  const { inputSize, classes, cell, hiddenSize, layers, heads, pooling } = config;
  const positive = (name: string, v: unknown, least = 1) => {
    if (!Number.isSafeInteger(v) || (v as number) < least)
      throw new UnsupportedOptionError(name, v, `an integer ≥ ${least}`);
  };
  positive('inputSize', inputSize);
  positive('hiddenSize', hiddenSize);
  positive('layers', layers);
  positive('classes', classes, 2);
  if (!['gru', 'mhgru', 'lstm'].includes(cell)) throw new UnsupportedOptionError('cell', cell, "'gru', 'mhgru' or 'lstm'");
  if (heads !== undefined) {
    positive('heads', heads);
    // One head is any GRU; more are the multi-head GRU's.
    if (cell !== 'mhgru' && heads !== 1) throw new UnsupportedOptionError('heads', heads, "1: more heads are for cell 'mhgru'");
  }
  if (!['mean', 'last'].includes(pooling)) throw new UnsupportedOptionError('pooling', pooling, "'mean' or 'last'");
  for (const k of ['residual', 'layerNorm'] as const) {
    const v = config[k];
    if (v !== undefined && typeof v !== 'boolean') throw new UnsupportedOptionError(k, v, 'true or false');
  }
  // Normalising one value gives its bias whatever comes in: the layers below would get no gradient.
  if (config.layerNorm && stateSize(cell, hiddenSize) === 1)
    throw new UnsupportedOptionError('layerNorm', true, 'false with hiddenSize 1 (a norm over one unit is constant)');
}

/**
 * Run options, checked. Padded batches are refused: pooling, residual adds and layer norms do not
 * mask padding, and the sequential solver would run the padding as steps. The deer options are
 * checked for every layer whatever the solver (the sequential solver had taken `{ atol: 'abc' }`).
 */
function checkRunOptions(opts: RunOptions, cells: readonly Cell[]): void {
  if (opts === null || typeof opts !== 'object')
    throw new InvalidArgumentError('SequenceClassifier options', "an object { solver: 'deer' | 'sequential', deer? }", String(opts));
  checkOptionNames(opts, ['solver', 'deer'], 'SequenceClassifier');
  if (opts.solver !== 'deer' && opts.solver !== 'sequential')
    throw new UnsupportedOptionError('solver', opts.solver, "'deer' or 'sequential'");
  const deer = opts.deer as Record<string, unknown> | undefined;
  if (deer === undefined) return;
  if (typeof deer !== 'object' || deer === null) throw new InvalidArgumentError('deer', 'an object of deer options', String(deer));
  for (const k of ['lengths', 'h0', 'initialGuess']) {
    if (k in deer) throw new UnsupportedOptionError(`deer.${k}`, deer[k], 'nothing: SequenceClassifier runs whole, equal-length sequences from zero states');
  }
  for (const cell of cells) checkDeerOptions(cell, opts.deer as DeerOptions, 'SequenceClassifier');
}
