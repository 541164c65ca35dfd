import { describeValue, InvalidArgumentError } from '../errors.js';

/**
 * An Rng's complete state (`Rng.state`): four 32-bit words and, when `normal()` has a second
 * normal of its Box–Muller pair cached, that value as a fifth entry.
 */
export type RngState = [s0: number, s1: number, s2: number, s3: number, spare?: number];

const STATE_EXPECTED =
  '4 32-bit integers (the xoshiro128** words), optionally followed by the cached normal (a finite number)';

/** Why `s` is not a state `Rng.state` accepts, or undefined if it is one. */
function rngStateProblem(s: unknown): { expected: string; got: string } | undefined {
  if (!Array.isArray(s) || (s.length !== 4 && s.length !== 5)) return { expected: STATE_EXPECTED, got: describeValue(s) };
  for (let i = 0; i < 4; i++) {
    const w: unknown = s[i];
    if (typeof w !== 'number' || !Number.isInteger(w) || w < -(2 ** 31) || w > 0xffffffff)
      return { expected: STATE_EXPECTED, got: `${describeValue(s)} (word ${i} is ${describeValue(w)})` };
  }
  const spare: unknown = s[4];
  if (spare !== undefined && (typeof spare !== 'number' || !Number.isFinite(spare)))
    return { expected: STATE_EXPECTED, got: `${describeValue(s)} (the cached normal is ${describeValue(spare)})` };
  if (s.slice(0, 4).every((w) => (w as number) >>> 0 === 0))
    return {
      expected: 'a state with a nonzero word (all zeros is the fixed point of xoshiro128**: uniform() would return 0 forever)',
      got: describeValue(s),
    };
  return undefined;
}

/**
 * A small seeded generator (xoshiro128**, seeded by splitmix32) so that every init, test and
 * benchmark input is reproducible across runs and machines. `state` saves and restores it exactly
 * (the normal `normal()` keeps for its next call included).
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  constructor(seed: number) {
    // NaN, Infinity, fractions and strings had all become seed 0 (x >>> 0), and 2**32 too.
    if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError('seed', 'an integer (a safe integer: |seed| < 2**53)', describeValue(seed));
    // The low 32 bits as before (seeds 0 … 2³² − 1 keep their streams); the high bits mixed in.
    let x = ((seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32) >>> 0, 0x9e3779b1)) >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /**
   * The generator's complete state, for checkpoints: the four xoshiro128** words (unsigned 32-bit)
   * and, after an odd number of `normal()` calls, a fifth entry — the second normal of Box–Muller's
   * pair, which the next `normal()` returns. A generator given this state continues exactly as this
   * one does (uniforms and normals, bit for bit).
   */
  get state(): RngState {
    // The words are kept as the bit operations leave them (some signed); given back unsigned.
    const [s0, s1, s2, s3] = [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
    return this.spare === undefined ? [s0, s1, s2, s3] : [s0, s1, s2, s3, this.spare];
  }

  /**
   * Restore a state `state` gave. The 4-entry form (what `state` gave before it carried the spare,
   * and still gives when no normal is cached) means "no cached normal"; a fifth entry of undefined
   * does too. Words may also be given as signed 32-bit integers. Anything else — another length,
   * a word that is not a 32-bit integer, a spare that is not a finite number, or four zero words
   * (xoshiro's fixed point: `uniform()` would return 0 forever) — is an InvalidArgumentError and
   * leaves the generator as it was.
   */
  set state(s: Readonly<RngState>) {
    const problem = rngStateProblem(s);
    if (problem !== undefined) throw new InvalidArgumentError('Rng state', problem.expected, problem.got);
    [this.s0, this.s1, this.s2, this.s3] = [s[0] >>> 0, s[1] >>> 0, s[2] >>> 0, s[3] >>> 0];
    this.spare = s[4];
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** An array of `size` uniforms in [lo, hi). */
  uniformArray(size: number, lo = -1, hi = 1): Float64Array {
    const out = new Float64Array(size);
    for (let i = 0; i < size; i++) out[i] = this.range(lo, hi);
    return out;
  }

  normalArray(size: number, std = 1): Float64Array {
    const out = new Float64Array(size);
    for (let i = 0; i < size; i++) out[i] = std * this.normal();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
