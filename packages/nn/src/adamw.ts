import { checkOptionNames, describeValue, InvalidArgumentError, NonFiniteError, ShapeError, UnsupportedOptionError } from '@deerjs/core';
import { checkFiniteValues, type Params, zerosLike } from './params.js';

export interface AdamWOptions {
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Decoupled weight decay (Loshchilov & Hutter), multiplied by the learning rate. */
  readonly weightDecay?: number;
  /**
   * Which parameters decay. Default (`decaysByDefault`): all but biases and normalisation
   * parameters — names whose last dot-separated part is `b`, `Wb`, `Rb` or `bias` (biases), or
   * `gamma` or `beta` (a layer norm's scale and shift, `norm.<l>.gamma` / `norm.<l>.beta`), as is
   * common practice: decaying a norm's scale towards 0 shrinks the layer's output, not its
   * complexity. Pass `() => true` to decay every parameter.
   */
  readonly decays?: (name: string) => boolean;
}

/** Everything AdamW needs to continue exactly: moments and the step count. */
export interface AdamWState {
  step: number;
  readonly m: Params;
  readonly v: Params;
}

const isBias = (name: string) => /(^|\.)(b|Wb|Rb|bias)$/.test(name);
const isNormParam = (name: string) => /(^|\.)(gamma|beta)$/.test(name);

/**
 * AdamW's default `decays`: true for every parameter but biases (`…b`, `…Wb`, `…Rb`, `…bias`) and
 * normalisation parameters (`…gamma`, `…beta`), by the last dot-separated part of the name.
 */
export const decaysByDefault = (name: string): boolean => !isBias(name) && !isNormParam(name);

/** The names and arrays of `params`, checked: each a Float64Array (AdamW updates them in place). */
function checkParamArrays(what: string, params: unknown): void {
  if (params === null || typeof params !== 'object' || Array.isArray(params))
    throw new InvalidArgumentError(what, 'an object of Float64Arrays by name', describeValue(params));
  for (const [name, v] of Object.entries(params)) {
    if (!(v instanceof Float64Array)) throw new InvalidArgumentError(`${what} ${name}`, 'a Float64Array', describeValue(v));
  }
}

/** AdamW on host arrays, in float64. */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly decays: (name: string) => boolean;
  state: AdamWState;

  constructor(params: Readonly<Params>, options: AdamWOptions = {}) {
    checkParamArrays('AdamW params', params);
    checkOptionNames(options, ['beta1', 'beta2', 'eps', 'weightDecay', 'decays'], 'AdamW');
    const inRange = (name: string, v: number | undefined, fallback: number, ok: (x: number) => boolean, want: string) => {
      if (v === undefined) return fallback;
      if (typeof v !== 'number' || !ok(v)) throw new UnsupportedOptionError(name, v, want);
      return v;
    };
    this.beta1 = inRange('beta1', options.beta1, 0.9, (b) => b >= 0 && b < 1, 'a number in [0, 1)');
    this.beta2 = inRange('beta2', options.beta2, 0.999, (b) => b >= 0 && b < 1, 'a number in [0, 1)');
    this.eps = inRange('eps', options.eps, 1e-8, (e) => Number.isFinite(e) && e > 0, 'a finite number > 0');
    this.weightDecay = inRange('weightDecay', options.weightDecay, 0.01, (w) => Number.isFinite(w) && w >= 0, 'a finite number ≥ 0');
    if (options.decays !== undefined && typeof options.decays !== 'function')
      throw new UnsupportedOptionError('decays', options.decays, 'a function of the parameter name');
    this.decays = options.decays ?? decaysByDefault;
    this.state = { step: 0, m: zerosLike(params), v: zerosLike(params) };
  }

  /**
   * One update of `params` in place with learning rate lr. All or nothing: a bad gradient, or an
   * update that would leave a parameter or a moment non-finite (an overflow), throws before
   * anything changes.
   */
  step(params: Params, grads: Readonly<Params>, lr: number): void {
    checkLearningRate(lr);
    checkParamArrays('AdamW params', params);
    if (grads === null || typeof grads !== 'object' || Array.isArray(grads))
      throw new InvalidArgumentError('AdamW gradients', 'an object of arrays by parameter name', describeValue(grads));
    // Decoupled decay multiplies a parameter by 1 − lr·weightDecay: past 1 it flips its sign every step.
    if (lr * this.weightDecay > 1)
      throw new InvalidArgumentError('lr', `at most 1 / weightDecay (${1 / this.weightDecay}): lr × weightDecay > 1 flips the parameters' sign every step`, String(lr));
    for (const name of Object.keys(grads)) {
      if (!(name in params)) throw new ShapeError(`gradient ${name}`, 'a gradient of a parameter', 'no such parameter');
    }
    const s = this.state;
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name];
      if (!g) throw new ShapeError(`AdamW gradient ${name}`, `${p.length} values`, 'no gradient');
      if (!ArrayBuffer.isView(g) && !Array.isArray(g)) throw new InvalidArgumentError(`AdamW gradient ${name}`, `an array of ${p.length} numbers`, describeValue(g));
      if (g.length !== p.length) throw new ShapeError(`AdamW gradient ${name}`, `${p.length} values`, `${g.length} values`);
      for (const [which, st] of [
        ['first moment', s.m[name]],
        ['second moment', s.v[name]],
      ] as const) {
        if (st?.length !== p.length) throw new ShapeError(`AdamW state: ${which} of ${name}`, `${p.length} values`, st ? `${st.length} values` : 'none');
      }
      checkFiniteValues(`gradient ${name}`, g);
    }
    const step = s.step + 1;
    const { beta1: b1, beta2: b2, eps } = this;
    const c1 = 1 - b1 ** step;
    const c2 = 1 - b2 ** step;
    const next = new Map<string, { m: Float64Array; v: Float64Array; p: Float64Array }>();
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name]!;
      const m = s.m[name]!;
      const v = s.v[name]!;
      const decay = this.decays(name) ? lr * this.weightDecay : 0;
      const out = { m: new Float64Array(p.length), v: new Float64Array(p.length), p: new Float64Array(p.length) };
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        out.m[i] = b1 * m[i]! + (1 - b1) * gi;
        out.v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        const mHat = out.m[i]! / c1;
        const vHat = out.v[i]! / c2;
        out.p[i] = p[i]! - decay * p[i]! - (lr * mHat) / (Math.sqrt(vHat) + eps);
      }
      // A gradient of 1e160 squares to +Inf, which would freeze the parameter for good.
      for (const [what, arr] of [
        ['second moment', out.v],
        ['parameter', out.p],
      ] as const) {
        for (let i = 0; i < arr.length; i++)
          if (!Number.isFinite(arr[i]!)) throw new NonFiniteError(`AdamW step ${step}: the ${what} of ${name} overflows (nothing was updated)`, i, arr[i]!);
      }
      next.set(name, out);
    }
    for (const [name, out] of next) {
      s.m[name]!.set(out.m);
      s.v[name]!.set(out.v);
      params[name]!.set(out.p);
    }
    s.step = step;
  }
}

/** A learning rate: a finite number ≥ 0 (InvalidArgumentError otherwise). */
export function checkLearningRate(lr: unknown): void {
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) throw new InvalidArgumentError('lr', 'a finite number ≥ 0', String(lr));
}
