import { describeValue, InvalidArgumentError, type Rng, ShapeError } from '@deerjs/core';

/** y = W x + b on the host, W [out, in] row-major, over a batch of rows. */
export interface LinearGrads {
  readonly W: Float64Array;
  readonly b: Float64Array;
  /** ∂L/∂x, [B, in]. */
  readonly x: Float64Array;
}

export class Linear {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    if (
      !Number.isInteger(inFeatures) ||
      inFeatures < 1 ||
      !Number.isInteger(outFeatures) ||
      outFeatures < 1
    ) {
      throw new InvalidArgumentError('Linear sizes', 'positive integers', `${inFeatures} → ${outFeatures}`);
    }
  }

  get parameterCount(): number {
    return this.outFeatures * (this.inFeatures + 1);
  }

  /** Uniform in ±1/√in for both W and b (PyTorch's default bound). */
  init(rng: Rng): { W: Float64Array; b: Float64Array } {
    const bound = 1 / Math.sqrt(this.inFeatures);
    return {
      W: rng.uniformArray(this.outFeatures * this.inFeatures, -bound, bound),
      b: rng.uniformArray(this.outFeatures, -bound, bound),
    };
  }

  /** x [B, in] → [B, out]. */
  forward(W: Float64Array, b: Float64Array, x: ArrayLike<number>, batch: number): Float64Array {
    const { inFeatures: m, outFeatures: k } = this;
    checkLinearArgs(W, x, batch, m, k);
    checkArray('Linear b', b);
    if (b.length !== k) throw new ShapeError('Linear b', `${k} values`, `${b.length}`);
    const y = new Float64Array(batch * k);
    for (let r = 0; r < batch; r++) {
      for (let o = 0; o < k; o++) {
        let s = b[o]!;
        for (let i = 0; i < m; i++) s += W[o * m + i]! * x[r * m + i]!;
        y[r * k + o] = s;
      }
    }
    return y;
  }

  /** Gradients given ∂L/∂y [B, out]; W, x and dy are checked as `forward` checks its arguments. */
  backward(W: Float64Array, x: ArrayLike<number>, dy: Float64Array, batch: number): LinearGrads {
    const { inFeatures: m, outFeatures: k } = this;
    checkLinearArgs(W, x, batch, m, k);
    checkArray('Linear dy', dy);
    // A short dy had read undefined as NaN, a long one had been cut to its prefix, without a word.
    if (dy.length !== batch * k) throw new ShapeError('Linear dy', `${batch * k} values ([${batch}, ${k}])`, `${dy.length}`);
    const dW = new Float64Array(k * m);
    const db = new Float64Array(k);
    const dx = new Float64Array(batch * m);
    for (let r = 0; r < batch; r++) {
      for (let o = 0; o < k; o++) {
        const g = dy[r * k + o]!;
        db[o]! += g;
        for (let i = 0; i < m; i++) {
          dW[o * m + i]! += g * x[r * m + i]!;
          dx[r * m + i]! += g * W[o * m + i]!;
        }
      }
    }
    return { W: dW, b: db, x: dx };
  }
}

/** An array or typed array (what the loops index): anything else is an InvalidArgumentError. */
function checkArray(what: string, v: unknown): void {
  if (!Array.isArray(v) && !(ArrayBuffer.isView(v) && !(v instanceof DataView)))
    throw new InvalidArgumentError(what, 'an array or typed array of numbers', describeValue(v));
}

/** W [out, in] and x [batch, in]: a short array would read undefined as NaN. */
function checkLinearArgs(W: Float64Array, x: ArrayLike<number>, batch: number, m: number, k: number): void {
  if (!Number.isSafeInteger(batch) || batch < 0) throw new InvalidArgumentError('Linear batch', 'an integer ≥ 0', String(batch));
  checkArray('Linear W', W);
  checkArray('Linear x', x);
  if (W.length !== k * m) throw new ShapeError('Linear W', `${k * m} values ([${k}, ${m}])`, `${W.length}`);
  if (x.length !== batch * m) throw new ShapeError('Linear x', `${batch * m} values ([${batch}, ${m}])`, `${x.length}`);
}
