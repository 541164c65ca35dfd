import { checkOptionNames, InvalidArgumentError, ShapeError, UnsupportedOptionError } from '@deerjs/core';
import { checkFiniteValues, type Params, zerosLike } from './params.js';

export interface AdamWOptions {
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Decoupled weight decay (Loshchilov & Hutter), multiplied by the learning rate. */
  readonly weightDecay?: number;
  /** Which parameters decay; default those whose name does not end in a bias name. */
  readonly decays?: (name: string) => boolean;
}

/** Everything AdamW needs to continue exactly: moments and the step count. */
export interface AdamWState {
  step: number;
  readonly m: Params;
  readonly v: Params;
}

const isBias = (name: string) => /(^|\.)(b|Wb|Rb|bias)$/.test(name);

/** AdamW on host arrays, in float64. */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly decays: (name: string) => boolean;
  state: AdamWState;

  constructor(params: Readonly<Params>, options: AdamWOptions = {}) {
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
    this.decays = options.decays ?? ((name) => !isBias(name));
    this.state = { step: 0, m: zerosLike(params), v: zerosLike(params) };
  }

  /** One update of `params` in place with learning rate lr. */
  step(params: Params, grads: Readonly<Params>, lr: number): void {
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) throw new InvalidArgumentError('lr', 'a finite number ≥ 0', String(lr));
    for (const name of Object.keys(grads)) {
      if (!(name in params)) throw new ShapeError(`gradient ${name}`, 'a gradient of a parameter', 'no such parameter');
    }
    // Checked before any update, so that a bad gradient does not leave half the parameters stepped.
    const s = this.state;
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name];
      if (!g || g.length !== p.length || s.m[name]?.length !== p.length || s.v[name]?.length !== p.length)
        throw new ShapeError(`AdamW ${name}`, `a gradient and state of ${p.length} values`, g ? `${g.length} values` : 'no gradient');
      checkFiniteValues(`gradient ${name}`, g);
    }
    s.step++;
    const { beta1: b1, beta2: b2, eps } = this;
    const c1 = 1 - b1 ** s.step;
    const c2 = 1 - b2 ** s.step;
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name]!;
      const m = s.m[name]!;
      const v = s.v[name]!;
      const decay = this.decays(name) ? lr * this.weightDecay : 0;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        m[i] = b1 * m[i]! + (1 - b1) * gi;
        v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        const mHat = m[i]! / c1;
        const vHat = v[i]! / c2;
        p[i] = p[i]! - decay * p[i]! - (lr * mHat) / (Math.sqrt(vHat) + eps);
      }
    }
  }
}
