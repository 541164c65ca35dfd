import { type Params, zerosLike } from './params.js';

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
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.decays = options.decays ?? ((name) => !isBias(name));
    this.state = { step: 0, m: zerosLike(params), v: zerosLike(params) };
  }

  /** One update of `params` in place with learning rate lr. */
  step(params: Params, grads: Readonly<Params>, lr: number): void {
    const s = this.state;
    s.step++;
    const { beta1: b1, beta2: b2, eps } = this;
    const c1 = 1 - b1 ** s.step;
    const c2 = 1 - b2 ** s.step;
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name];
      const m = s.m[name];
      const v = s.v[name];
      if (!g || !m || !v || g.length !== p.length)
        throw new Error(`AdamW: no gradient or state of the right size for ${name}`);
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
